"""The double-entry journal: balanced, immutable, idempotent entries and the balances derived from them.

Every write goes through :func:`post_many` (``post`` is a batch of one). Everything is checked
before anything is written: account codes against the chart, amounts (finite, non-negative,
exactly one side per leg), and the balance per currency (the sum of debits equals the sum of
credits in each currency separately: there is no implicit exchange rate). An entry carries an
idempotency key; posting the same key with the same content again returns the existing entry id
and writes nothing, so a poster that crashed can simply replay. The same key with different
content is a :class:`IdempotencyConflict`: something upstream changed history, and guessing which
version is right is not the ledger's job.

Entries are never updated or deleted (database triggers refuse it); :func:`reverse` posts the
mirror image. Running totals per (account, currency) are updated in the same transaction, so the
current balance is one row; balances at a past time are summed from the postings.

Functions take the caller's session and flush; only the request or worker boundary commits.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.errors import Conflict, InvalidInput, NotFound
from brokerlink.kit.ids import new_id
from brokerlink.ledger.chart import AccountType, InvalidAccountCode, is_debit_normal, validate_code
from brokerlink.store.models_ledger import JournalEntryRow, PostingRow
from brokerlink.store.repositories.ledger import AccountState, BalanceKey, LedgerRepository

_ZERO = Decimal(0)
MAX_LEGS = 64

EXACT = Context(prec=1000, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
"""The context of every sum the ledger makes. Python's default context rounds to 28 digits, and a
cost share can carry 40: a sum that rounded could call an unbalanced entry balanced. Nothing here
rounds; a sum that would (over 1000 digits) raises instead."""


class InvalidEntry(InvalidInput):
    """An entry that cannot be posted: no legs, a negative or two-sided leg, a naive time (422)."""

    code = "invalid_entry"
    title = "Invalid journal entry"


class UnbalancedEntry(InvalidEntry):
    """Debits and credits differ in at least one currency (422)."""

    code = "unbalanced_entry"
    title = "Unbalanced journal entry"


class IdempotencyConflict(Conflict):
    """The idempotency key was already used for an entry with different content (409)."""

    code = "idempotency_conflict"
    title = "Idempotency key reused with different content"


class Leg(msgspec.Struct, frozen=True, kw_only=True):
    """One side of an entry: a debit or a credit (never both) of ``account`` in ``currency``."""

    account: str
    currency: str
    debit: Decimal = _ZERO
    credit: Decimal = _ZERO
    owner_id: str | None = None  # the user the account belongs to (None: the platform)


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """A journal entry to post. ``idempotency_key`` names the event it records (``fill:<id>``)."""

    idempotency_key: str
    correlation_id: str
    kind: str
    description: str
    occurred_at: datetime
    legs: tuple[Leg, ...]


class AccountBalance(msgspec.Struct, frozen=True, kw_only=True):
    """An account's balance in one currency, in its natural sign (see :func:`natural`)."""

    account: str
    type: AccountType
    currency: str
    balance: Decimal
    debits: Decimal
    credits: Decimal
    owner_id: str | None = None


class PostingView(msgspec.Struct, frozen=True, kw_only=True):
    """A posting with what its entry says about it."""

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
    owner_id: str | None = None


class EntryView(msgspec.Struct, frozen=True, kw_only=True):
    """A posted entry with its legs."""

    id: str
    idempotency_key: str
    correlation_id: str
    kind: str
    description: str
    occurred_at: datetime
    created_at: datetime
    reverses_entry_id: str | None
    legs: tuple[Leg, ...]


def natural(code: str, debit_sum: Decimal, credit_sum: Decimal) -> Decimal:
    """The balance in the account's natural sign: debit-normal accounts (assets, expenses) are
    debits minus credits, credit-normal ones (liabilities, equity, income) credits minus debits."""
    with localcontext(EXACT):
        return debit_sum - credit_sum if is_debit_normal(code) else credit_sum - debit_sum


def _canonical(amount: Decimal) -> str:
    # 1.50 and 1.5 are the same amount: the content hash must not tell them apart.
    return format(amount.normalize(), "f") if amount else "0"


def content_hash(entry: Entry, reverses_entry_id: str | None = None) -> str:
    """SHA-256 of everything an entry says (except its key), for telling a replay from a conflict.

    Amounts are normalized in the exact context: under the default 28 digits, two amounts that
    differ past the 28th digit would normalize (round) to one text and a conflict pass as a replay.
    """
    with localcontext(EXACT):
        legs = [
            (leg.account, leg.currency, _canonical(leg.debit), _canonical(leg.credit), leg.owner_id)
            for leg in entry.legs
        ]
    return _hash(entry, reverses_entry_id, legs)


def _hash(entry: Entry, reverses_entry_id: str | None, legs: list[tuple[str, str, str, str, str | None]]) -> str:
    body = (entry.correlation_id, entry.kind, entry.description, entry.occurred_at.isoformat(), reverses_entry_id, legs)
    return hashlib.sha256(_HASH_ENCODER.encode(body)).hexdigest()


_HASH_ENCODER = msgspec.json.Encoder()


def validate(entry: Entry) -> None:
    """Check an entry without touching the database. Raises InvalidEntry, UnbalancedEntry or InvalidAccountCode."""
    with localcontext(EXACT):
        _checked_hash(entry, None)


def _check_header(entry: Entry) -> None:
    if not entry.idempotency_key or len(entry.idempotency_key) > 200:
        raise InvalidEntry("idempotency_key must be 1-200 characters")
    if not entry.kind or len(entry.kind) > 32:
        raise InvalidEntry("kind must be 1-32 characters")
    if entry.occurred_at.tzinfo is None:
        raise InvalidEntry("occurred_at must be timezone-aware")
    if not entry.legs or len(entry.legs) > MAX_LEGS:
        raise InvalidEntry(f"an entry has 2-{MAX_LEGS} legs", extra={"idempotency_key": entry.idempotency_key})


def _checked_hash(entry: Entry, reverses_entry_id: str | None) -> str:  # noqa: PLR0912 - every check, one pass
    """:func:`validate` and :func:`content_hash` in one pass over the legs (the posting path does
    both for every entry). Runs in EXACT, entered once per batch by the caller: the sums and the
    normalized amounts are exact, never rounded."""
    _check_header(entry)
    sums: dict[str, list[Decimal]] = {}
    legs = []
    for leg in entry.legs:
        account, currency, debit, credit = leg.account, leg.currency, leg.debit, leg.credit
        if type(account) is not str or account not in _VALID_CODES:
            validate_code(account)
            if len(_VALID_CODES) < _VALID_CODES_MAX:
                _VALID_CODES.add(account)
        if not currency or len(currency) > 16:
            raise InvalidEntry(f"invalid currency {currency!r}")
        for amount in (debit, credit):
            if not isinstance(amount, Decimal) or not amount.is_finite() or amount < _ZERO:
                raise InvalidEntry(f"amounts are finite non-negative Decimals: {amount!r} on {account}")
        # Exactly one side is non-zero; its normalized text goes into the hash (as _canonical does).
        if debit:
            if credit:
                raise InvalidEntry(f"a leg is exactly one of debit or credit: {account}")
            debit_text, credit_text = format(debit.normalize(), "f"), "0"
        elif credit:
            debit_text, credit_text = "0", format(credit.normalize(), "f")
        else:
            raise InvalidEntry(f"a leg is exactly one of debit or credit: {account}")
        running = sums.get(currency)
        if running is None:
            sums[currency] = [_ZERO + debit, _ZERO + credit]
        else:
            running[0] += debit
            running[1] += credit
        legs.append((account, currency, debit_text, credit_text, leg.owner_id))
    unbalanced = {currency: str(d - c) for currency, (d, c) in sums.items() if d != c}
    if unbalanced:
        raise UnbalancedEntry(
            f"debits minus credits per currency: {unbalanced}",
            extra={"idempotency_key": entry.idempotency_key, "imbalance": unbalanced},
        )
    return _hash(entry, reverses_entry_id, legs)


# Codes already checked against the grammar (a poster names the same few accounts in every batch):
# a set lookup instead of a call per leg. Bounded; past the bound, codes are checked every time.
_VALID_CODES: set[str] = set()
_VALID_CODES_MAX = 65536


async def post(session: AsyncSession, entry: Entry, *, now: datetime) -> str:
    """Post one entry; returns its id (the existing one when this is a replay). Flushes, never commits."""
    return (await post_many(session, [entry], now=now))[0]


async def post_many(session: AsyncSession, entries: Sequence[Entry], *, now: datetime) -> list[str]:
    """Post a batch of entries in the caller's transaction; returns their ids, in order.

    All entries are validated, and every idempotency key and account owner checked, before the
    first row is written: a bad entry anywhere in the batch writes nothing at all. Four statements
    whatever the batch size: one read (the keys already posted and the accounts, with their running
    totals on SQLite), the entries and the postings (executemany), the running totals (one upsert);
    and the new accounts, when there are any.
    """
    return await _post(session, [(entry, None) for entry in entries], now=now)


async def _post(session: AsyncSession, items: Sequence[tuple[Entry, str | None]], *, now: datetime) -> list[str]:
    if now.tzinfo is None:
        raise InvalidEntry("now must be timezone-aware")
    repo = LedgerRepository(session)
    with localcontext(EXACT):  # one context for the batch: entering one per entry cost more than some checks
        hashes = [_checked_hash(entry, reverses) for entry, reverses in items]

    # One round trip before any write: the keys already posted, and the accounts (with their
    # owners, and on SQLite their running totals) of every leg in the batch.
    codes = list(dict.fromkeys(leg.account for entry, _ in items for leg in entry.legs))
    existing, accounts = await repo.posting_state([entry.idempotency_key for entry, _ in items], codes)
    ids: list[str] = []
    batch: dict[str, tuple[str, str]] = {}  # key -> (id, hash) of entries new in this batch
    new: list[tuple[str, Entry, str, str | None]] = []
    for (entry, reverses), digest in zip(items, hashes, strict=True):
        key = entry.idempotency_key
        known = existing.get(key) or batch.get(key)
        if known is not None:
            if known[1] != digest:
                raise IdempotencyConflict(
                    f"idempotency key {key!r} was posted with different content", extra={"entry_id": known[0]}
                )
            ids.append(known[0])
            continue
        entry_id = new_id("jen")
        batch[key] = (entry_id, digest)
        new.append((entry_id, entry, digest, reverses))
        ids.append(entry_id)
    if not new:
        return ids

    await _open_accounts(repo, [entry for _, entry, _, _ in new], accounts, now=now)

    entry_rows = []
    posting_rows = []
    deltas: dict[BalanceKey, tuple[Decimal, Decimal]] = {}
    with localcontext(EXACT):  # the running sums below are exact, never rounded
        for entry_id, entry, digest, reverses in new:
            entry_rows.append(
                {
                    "id": entry_id,
                    "idempotency_key": entry.idempotency_key,
                    "correlation_id": entry.correlation_id,
                    "kind": entry.kind,
                    "description": entry.description,
                    "occurred_at": entry.occurred_at,
                    "created_at": now,
                    "reverses_entry_id": reverses,
                    "content_hash": digest,
                }
            )
            for leg in entry.legs:
                posting_rows.append(
                    {
                        "id": new_id("pst"),
                        "entry_id": entry_id,
                        "account": leg.account,
                        "currency": leg.currency,
                        "debit": leg.debit,
                        "credit": leg.credit,
                        "owner_id": leg.owner_id,
                        "occurred_at": entry.occurred_at,
                    }
                )
                pair = (leg.account, leg.currency)
                sums = deltas.get(pair)
                if sums is None:
                    deltas[pair] = (leg.debit, leg.credit)
                elif leg.debit:  # a leg is one side: add that one
                    deltas[pair] = (sums[0] + leg.debit, sums[1])
                else:
                    deltas[pair] = (sums[0], sums[1] + leg.credit)

        # The new running totals where they were read (SQLite); PostgreSQL reads none (it adds the
        # deltas in SQL), and a pair without a running total yet starts from its delta.
        totals = deltas
        if any(read for _, read in accounts.values()):
            totals = {}
            for pair, (add_debits, add_credits) in deltas.items():
                base = accounts[pair[0]][1].get(pair[1])
                totals[pair] = (base[0] + add_debits, base[1] + add_credits) if base else (add_debits, add_credits)
    await repo.add_entries(entry_rows, posting_rows)
    await repo.write_balances(deltas=deltas, totals=totals, now=now)
    return ids


async def _open_accounts(
    repo: LedgerRepository, new: Sequence[Entry], accounts: dict[str, AccountState], *, now: datetime
) -> None:
    """Check the owner of every account the new entries name, and create the ones that do not exist
    yet (adding them to ``accounts``). Raises before any write when an existing account has another owner."""
    owners: dict[str, str | None] = {}
    for entry in new:
        for leg in entry.legs:
            if owners.setdefault(leg.account, leg.owner_id) != leg.owner_id:
                raise InvalidEntry(f"account {leg.account} given two owners in one batch")
    for code, owner in owners.items():
        known = accounts.get(code)
        if known is not None and known[0] != owner:
            # A code embeds its owner's account id; a different owner is a bug that would leak money.
            raise Conflict(f"account {code} belongs to another owner")
    fresh = [code for code in owners if code not in accounts]
    if not fresh:
        return
    # New accounts: created (a concurrent poster may create one first), then read like the rest.
    await repo.add_accounts(
        [
            {
                "id": new_id("lac"),
                "code": code,
                "type": validate_code(code),
                "owner_id": owners[code],
                "created_at": now,
            }
            for code in fresh
        ]
    )
    created = await repo.accounts_for_posting(fresh)
    for code, (owner, _) in created.items():
        if owners[code] != owner:
            raise Conflict(f"account {code} belongs to another owner")
    accounts.update(created)


async def reverse(session: AsyncSession, entry_id: str, *, idempotency_key: str, reason: str, now: datetime) -> str:
    """Post the mirror image of ``entry_id`` (every debit a credit and back), dated ``now``.

    An entry is reversed at most once: reversing it again under the same key returns the same
    reversal, under another key is a Conflict. The reversal keeps the original's correlation id.
    """
    repo = LedgerRepository(session)
    original = await repo.entry(entry_id)
    if original is None:
        raise NotFound(f"journal entry {entry_id} not found")
    legs = tuple(
        Leg(account=p.account, currency=p.currency, debit=p.credit, credit=p.debit, owner_id=p.owner_id)
        for p in await repo.entry_postings([entry_id])
    )
    entry = Entry(
        idempotency_key=idempotency_key,
        correlation_id=original.correlation_id,
        kind="reversal",
        description=reason,
        occurred_at=now,
        legs=legs,
    )
    existing = await repo.reversal_of(entry_id)
    if existing is not None:
        known = await repo.entries_by_key([idempotency_key])
        if known.get(idempotency_key, ("", ""))[0] != existing:
            raise Conflict(f"journal entry {entry_id} is already reversed by {existing}", extra={"entry_id": existing})
    return (await _post(session, [(entry, entry_id)], now=now))[0]


async def balance(session: AsyncSession, account: str, currency: str, *, at: datetime | None = None) -> Decimal:
    """The balance of ``account`` in ``currency`` in its natural sign; at ``at`` (inclusive) if given.

    Without ``at``: the running totals, one row. With ``at``: summed from the postings up to then.
    """
    validate_code(account)
    repo = LedgerRepository(session)
    if at is None:
        rows = await repo.running_balances(codes=[account])
        with localcontext(EXACT):
            return sum((natural(account, d, c) for _, _, cur, d, c in rows if cur == currency), _ZERO)
    debit_sum = credit_sum = _ZERO
    for _, cur, debit, credit in await repo.amounts(codes=[account], at=at):
        if cur == currency:
            with localcontext(EXACT):
                debit_sum += debit
                credit_sum += credit
    return natural(account, debit_sum, credit_sum)


async def balances(
    session: AsyncSession, *, owner_id: str | None = None, prefix: str | None = None, at: datetime | None = None
) -> list[AccountBalance]:
    """Balances of every (account, currency), optionally of one owner and/or under a code prefix."""
    if prefix is not None and prefix not in {"assets", "liabilities", "equity", "income", "expenses"}:
        validate_code(prefix)
    repo = LedgerRepository(session)
    if at is None:
        rows = await repo.running_balances(owner_id=owner_id, prefix=prefix)
    else:
        totals: dict[tuple[str, str], list[Decimal]] = {}
        owners: dict[str, str | None] = {}
        for posting, _ in await repo.posting_rows(owner_id=owner_id, prefix=prefix, at=at):
            sums = totals.setdefault((posting.account, posting.currency), [_ZERO, _ZERO])
            with localcontext(EXACT):
                sums[0] += posting.debit
                sums[1] += posting.credit
            owners[posting.account] = posting.owner_id
        rows = [(a, owners[a], c, d, cr) for (a, c), (d, cr) in sorted(totals.items())]
    return [
        AccountBalance(
            account=account,
            type=validate_code(account),
            currency=currency,
            balance=natural(account, debit_sum, credit_sum),
            debits=debit_sum,
            credits=credit_sum,
            owner_id=owner,
        )
        for account, owner, currency, debit_sum, credit_sum in rows
    ]


async def trial_balance(session: AsyncSession, *, at: datetime | None = None) -> dict[str, Decimal]:
    """Per currency, all debits minus all credits: zero in every currency if the books are sound."""
    repo = LedgerRepository(session)
    result: dict[str, Decimal] = {}
    rows = (
        await repo.totals()
        if at is None
        else [(currency, debit, credit) for _, currency, debit, credit in await repo.amounts(at=at)]
    )
    for currency, debit_sum, credit_sum in rows:
        with localcontext(EXACT):
            result[currency] = result.get(currency, _ZERO) + debit_sum - credit_sum
    return dict(sorted(result.items()))


def _view(posting: PostingRow, entry: JournalEntryRow) -> PostingView:
    return PostingView(
        id=posting.id,
        entry_id=posting.entry_id,
        account=posting.account,
        currency=posting.currency,
        debit=posting.debit,
        credit=posting.credit,
        occurred_at=posting.occurred_at,
        kind=entry.kind,
        description=entry.description,
        correlation_id=entry.correlation_id,
        owner_id=posting.owner_id,
    )


async def postings(
    session: AsyncSession,
    *,
    account: str | None = None,
    prefix: str | None = None,
    owner_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: str | None = None,
    limit: int = 1000,
) -> list[PostingView]:
    """Postings in id (creation) order; ``since`` inclusive, ``until`` exclusive, ``after`` a posting id cursor."""
    if account is not None:
        validate_code(account)
    if prefix is not None and ":" in prefix:
        validate_code(prefix)
    repo = LedgerRepository(session)
    rows = await repo.posting_rows(
        codes=[account] if account is not None else None,
        owner_id=owner_id,
        prefix=prefix,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )
    return [_view(posting, entry) for posting, entry in rows]


async def get_entry(session: AsyncSession, entry_id: str, *, owner_id: str | None = None) -> EntryView:
    """One entry with its legs. With ``owner_id``: NotFound unless one of its legs is that owner's."""
    repo = LedgerRepository(session)
    row = await repo.entry(entry_id)
    legs = await repo.entry_postings([entry_id]) if row is not None else []
    if row is None or (owner_id is not None and all(p.owner_id != owner_id for p in legs)):
        raise NotFound(f"journal entry {entry_id} not found")
    return _entry_view(row, legs)


async def entries(
    session: AsyncSession,
    *,
    owner_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[EntryView]:
    """Entries with their legs, oldest first. With ``owner_id``, only the legs that owner may see."""
    repo = LedgerRepository(session)
    rows = await repo.list_entries(owner_id=owner_id, since=since, until=until, after=after, limit=limit)
    by_entry: dict[str, list[PostingRow]] = defaultdict(list)
    for posting in await repo.entry_postings([row.id for row in rows]):
        by_entry[posting.entry_id].append(posting)
    return [_entry_view(row, by_entry[row.id]) for row in rows]


def _entry_view(row: JournalEntryRow, legs: Sequence[PostingRow]) -> EntryView:
    return EntryView(
        id=row.id,
        idempotency_key=row.idempotency_key,
        correlation_id=row.correlation_id,
        kind=row.kind,
        description=row.description,
        occurred_at=row.occurred_at,
        created_at=row.created_at,
        reverses_entry_id=row.reverses_entry_id,
        legs=tuple(
            Leg(account=p.account, currency=p.currency, debit=p.debit, credit=p.credit, owner_id=p.owner_id)
            for p in legs
        ),
    )


__all__ = [
    "EXACT",
    "AccountBalance",
    "Entry",
    "EntryView",
    "IdempotencyConflict",
    "InvalidAccountCode",
    "InvalidEntry",
    "Leg",
    "PostingView",
    "UnbalancedEntry",
    "balance",
    "balances",
    "content_hash",
    "entries",
    "get_entry",
    "natural",
    "post",
    "post_many",
    "reverse",
    "trial_balance",
    "validate",
]
