"""``/v1/ledger/...`` and ``/v1/accounts/{id}/ledger/reconciliation``: the caller's books.

Everything is owner-scoped: balances, postings and entries are the signed-in user's (and, for a
principal narrowed to some accounts, only those accounts' codes); another user's account code or
entry answers 404 exactly like a missing one. The trial balance spans every user, so it is for
admins only. Amounts are Decimals serialized as strings. Lists are oldest first and paged by cursor
(``limit``, ``after`` = the previous page's ``next_after``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter

from brokerlink.api.deps import CurrentPrincipal, DbSession
from brokerlink.api.paging import After, Limit, Since, Until, id_cursor, invalid_filter, time_range
from brokerlink.api.schemas import ResponseBody
from brokerlink.api.scopes import first_party, needs
from brokerlink.domain.enums import Role
from brokerlink.kit.errors import NotFound
from brokerlink.ledger import chart, journal
from brokerlink.ledger.reconcile import reconcile_account
from brokerlink.security.principal import Principal
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.ledger import LedgerRepository

AccountCode = Annotated[
    str | None, Parameter(description="Account code, e.g. assets:cash:acc_01j...", max_length=chart.MAX_CODE_LENGTH)
]
At = Annotated[datetime | None, Parameter(description="Balances as of this time (inclusive); default: now")]
AccountId = Annotated[str, Parameter(description="Account id (acc_...)", max_length=40)]
EntryId = Annotated[str, Parameter(description="Journal entry id (jen_...)", max_length=40)]


class BalanceResponse(ResponseBody):
    """An account's balance in one currency, in its natural sign (assets and expenses: debits - credits)."""

    account: str
    type: str
    currency: str
    balance: Decimal
    debits: Decimal
    credits: Decimal


class BalanceList(ResponseBody):
    """The caller's balances."""

    at: datetime | None
    data: list[BalanceResponse]


class PostingResponse(ResponseBody):
    """One posting with its entry's kind and description."""

    id: str
    entry_id: str
    account: str
    currency: str
    debit: Decimal
    credit: Decimal
    occurred_at: datetime
    kind: str
    description: str
    correlation_id: str


class PostingList(ResponseBody):
    """A page of postings."""

    data: list[PostingResponse]
    next_after: str | None


class LegResponse(ResponseBody):
    """One leg of an entry."""

    account: str
    currency: str
    debit: Decimal
    credit: Decimal


class EntryResponse(ResponseBody):
    """A journal entry with the legs the caller may see."""

    id: str
    idempotency_key: str
    correlation_id: str
    kind: str
    description: str
    occurred_at: datetime
    created_at: datetime
    reverses_entry_id: str | None
    legs: list[LegResponse]


class EntryList(ResponseBody):
    """A page of entries."""

    data: list[EntryResponse]
    next_after: str | None


class TrialBalanceResponse(ResponseBody):
    """Per currency, all debits minus all credits: zero everywhere when the books are sound."""

    at: datetime | None
    totals: dict[str, Decimal]
    balanced: bool


class UnpostedFillResponse(ResponseBody):
    """A stored fill not in the journal yet and its effect on cash."""

    fill_id: str
    occurred_at: datetime
    cash_effect: Decimal
    description: str


class ReconciliationItem(ResponseBody):
    """One currency of the account: broker cash, ledger cash, and what explains the difference."""

    currency: str
    status: str
    broker_cash: Decimal
    broker_at: datetime
    ledger_cash: Decimal
    ledger_cash_at_broker_time: Decimal
    difference: Decimal
    unexplained: Decimal
    unposted_fills: list[UnpostedFillResponse]
    later_postings: list[PostingResponse]


class ReconciliationResponse(ResponseBody):
    """Ledger cash against broker-reported cash for one account."""

    account_id: str
    data: list[ReconciliationItem]


def _visible(principal: Principal, code: str) -> bool:
    """A narrowed principal (third-party grant) sees only the codes of its accounts."""
    if principal.account_ids is None:
        return True
    return code.rsplit(":", 1)[-1] in {a.lower() for a in principal.account_ids}


def _naive_refused(at: datetime | None) -> None:
    if at is not None and at.utcoffset() is None:
        raise invalid_filter("at", "give a time with an offset, e.g. 2026-11-21T12:00:00Z")


@get("/balances", summary="My ledger balances", opt=needs("ledger:read"))
async def list_balances(principal: CurrentPrincipal, db: DbSession, at: At = None) -> BalanceList:
    """Every account of the caller's books, per currency; ``at`` gives them as of a past time."""
    _naive_refused(at)
    rows = await journal.balances(db, owner_id=principal.user_id, at=at)
    return BalanceList(at=at, data=[BalanceResponse.of(b) for b in rows if _visible(principal, b.account)])


async def _own_code(db: DbSession, principal: Principal, code: str) -> None:
    chart.validate_code(code)
    owners = await LedgerRepository(db).account_owners([code])
    if owners.get(code, "") != principal.user_id or not _visible(principal, code):
        raise NotFound("ledger account not found")


@get("/postings", summary="My postings", opt=needs("ledger:read"))
async def list_postings(  # noqa: PLR0917 - Litestar injects by name
    principal: CurrentPrincipal,
    db: DbSession,
    account: AccountCode = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    after: After = None,
) -> PostingList:
    """The caller's postings, oldest first; ``account`` narrows to one account code (404 if not the caller's)."""
    cursor, period = id_cursor(after, "pst"), time_range(since, until)
    if account is not None:
        await _own_code(db, principal, account)
    rows = await journal.postings(
        db, account=account, owner_id=principal.user_id, since=period.since, until=period.until, after=cursor,
        limit=limit + 1,
    )  # fmt: skip
    page = rows[:limit]
    data = [PostingResponse.of(p) for p in page if _visible(principal, p.account)]
    return PostingList(data=data, next_after=page[-1].id if len(rows) > limit else None)


def _entry(principal: Principal, entry: journal.EntryView) -> EntryResponse:
    legs = [
        LegResponse.of(leg)
        for leg in entry.legs
        if leg.owner_id == principal.user_id and _visible(principal, leg.account)
    ]
    return EntryResponse(
        id=entry.id,
        idempotency_key=entry.idempotency_key,
        correlation_id=entry.correlation_id,
        kind=entry.kind,
        description=entry.description,
        occurred_at=entry.occurred_at,
        created_at=entry.created_at,
        reverses_entry_id=entry.reverses_entry_id,
        legs=legs,
    )


@get("/entries", summary="My journal entries", opt=needs("ledger:read"))
async def list_entries(  # noqa: PLR0917 - Litestar injects by name
    principal: CurrentPrincipal,
    db: DbSession,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    after: After = None,
) -> EntryList:
    """Entries touching the caller's accounts, oldest first, with the caller's legs (a fee entry's
    other side - the provider's, the platform's - is not shown)."""
    cursor, period = id_cursor(after, "jen"), time_range(since, until)
    rows = await journal.entries(
        db, owner_id=principal.user_id, since=period.since, until=period.until, after=cursor, limit=limit + 1
    )
    page = rows[:limit]
    data = [e for e in (_entry(principal, row) for row in page) if e.legs]
    return EntryList(data=data, next_after=page[-1].id if len(rows) > limit else None)


@get("/entries/{entry_id:str}", summary="One journal entry", opt=needs("ledger:read"))
async def get_entry(entry_id: EntryId, principal: CurrentPrincipal, db: DbSession) -> EntryResponse:
    """One entry with the caller's legs; 404 unless one of its legs is the caller's."""
    shown = _entry(principal, await journal.get_entry(db, entry_id, owner_id=principal.user_id))
    if not shown.legs:
        raise NotFound(f"journal entry {entry_id} not found")
    return shown


@get("/trial-balance", summary="Trial balance (admin)", opt=first_party())
async def trial_balance(principal: CurrentPrincipal, db: DbSession, at: At = None) -> TrialBalanceResponse:
    """Per currency, the sum of all debits minus all credits of the whole journal. Admins only."""
    principal.require_role(Role.ADMIN)
    _naive_refused(at)
    totals = await journal.trial_balance(db, at=at)
    return TrialBalanceResponse(at=at, totals=totals, balanced=all(v == 0 for v in totals.values()))


@get(
    "/{account_id:str}/ledger/reconciliation",
    summary="Reconcile an account's ledger cash with the broker's",
    opt=needs("ledger:read"),
)
async def account_reconciliation(
    account_id: AccountId, principal: CurrentPrincipal, db: DbSession
) -> ReconciliationResponse:
    """Ledger cash against the cash the broker last reported, compared at the broker's time, with the
    unposted fills and later postings that explain a difference. Reads only (no drift alert: the
    scheduled run raises those)."""
    principal.require_account(account_id)
    if await AccountRepository(db).get_for_user(principal.user_id, account_id) is None:
        raise NotFound("account not found")
    results = await reconcile_account(db, account_id)
    return ReconciliationResponse(
        account_id=account_id,
        data=[
            ReconciliationItem(
                currency=r.currency,
                status=r.status,
                broker_cash=r.broker_cash,
                broker_at=r.broker_at,
                ledger_cash=r.ledger_cash,
                ledger_cash_at_broker_time=r.ledger_cash_at_broker_time,
                difference=r.difference,
                unexplained=r.unexplained,
                unposted_fills=[UnpostedFillResponse.of(u) for u in r.unposted_fills],
                later_postings=[PostingResponse.of(p) for p in r.later_postings],
            )
            for r in results
        ],
    )


ledger_router = Router(
    path="/ledger",
    route_handlers=[list_balances, list_postings, list_entries, get_entry, trial_balance],
    tags=["ledger"],
)
account_ledger_router = Router(path="/accounts", route_handlers=[account_reconciliation], tags=["ledger"])

__all__ = ["account_ledger_router", "ledger_router"]
