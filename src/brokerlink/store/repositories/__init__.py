"""One repository per table group. Each takes an ``AsyncSession``, holds every query for its tables,
and calls ``flush()`` but never ``commit()``: the request or worker boundary commits.

Tables with a domain struct come back as domain objects (``Order``, ``Fill``, ``Account``,
``Instrument``, ``Position``, ``Balance``). Users, login sessions and broker connections have none
and come back as their ORM rows (``UserRow``, ``SessionRow``, ``BrokerConnectionRow``): read them,
but change them only through the repository methods. Events come back as frozen ``EventRecord``s.
Times are passed in (``now=``) rather than read from a clock here, so tests can pin them.

Reads of objects that belong to a user take the owner's id and return None for anyone else's,
so the API answers 404 without revealing that the object exists. Methods named ``get_by_id`` are
for internal callers (workers, the engine) that have no user in context.
"""
