"""Reconciliation: what each follower's broker holds against what the copy links expect (DESIGN.md,
"Copy trading").

The links are the engine's memory of what it copied; the broker's positions are the truth. They
drift apart when a copy order fills partially, a close is lost in an outage, the follower trades
by hand, or the engine dies between the venue and the store. Reconciliation compares them and says
so, with a machine-readable kind per finding, and on request repairs what it safely can.

**Comparison** (:func:`compare`, pure). A netting account holds one signed quantity per symbol,
and several subscriptions of one account may copy into the same symbol, so the broker position is
compared with the *sum* over all that account's open links for the symbol (buys positive, sells
negative). When the follower holds less than that in the links' direction, the shortfall is
charged to links one by one: first to links whose provider is flat (their close most likely went
through, or half-way), then to the newest. Each link then stands as:

- ``orphan_link``: the provider is flat in its symbol, or holds the other side (a close or a
  reversal the follower never got): nobody will ever close this copy;
- ``missing_position``: the follower holds nothing of the link (or the other side);
- ``drift``: the follower holds some of the link, but less than it says;

and what the account holds beyond its links (manual trades) is ``untracked``. Symbols with copy
orders in flight (or settled only moments ago) are ``in_flight`` and not judged: a fill on its way
looks exactly like drift. Accounts whose broker connection is down are ``unverified``: their
stored positions may be stale.

**Repair** (off by default). Only what reconciliation can do without guessing:

- an orphan link is closed, and what the follower holds of it is closed through the outbox (an
  intent with a deterministic client order id ``reconcile:<link>:<n>``, ``n`` counting earlier
  attempts that ended, so a second repair while the first is in flight sends nothing);
- a drifted link shrinks to what is held, a link with nothing held is closed (no order).

It never opens or increases anything (no catch-up trades after an outage) and never trades
``untracked`` holdings. One subscription's repairs are one transaction, with a ``reconciled`` copy
event per change; the caller dispatches the intents (``CopyEngine.dispatch``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import observe
from brokerlink.domain.copy import (
    LIVE_SUBSCRIPTION_STATUSES,
    CopyEvent,
    CopyEventKind,
    CopyIntent,
    CopyLink,
    IntentAction,
    IntentStatus,
    Subscription,
)
from brokerlink.domain.enums import Side, TimeInForce
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.settings import Direction, decode_settings
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import InvalidInput, NotFound
from brokerlink.kit.ids import new_id
from brokerlink.logs import get_logger
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.strategies import StrategyPositionRepository, StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

_log = get_logger("brokerlink.engine.copy.reconcile")

_ZERO = Decimal(0)
_IN_FLIGHT = frozenset({IntentStatus.PENDING, IntentStatus.SENT, IntentStatus.ACKNOWLEDGED})
_OUTBOX_SCAN = 500
_RECENT_INTENTS = 50
SETTLE_S = 5.0
"""How long after a copy order's last change its symbol is still left alone: the broker's position
report may trail the order's fill report by that much."""


class FindingKind(StrEnum):
    """What reconciliation found. The first three are actionable; the others are information."""

    DRIFT = "drift"
    """The follower holds part of the link, less than the link says."""
    ORPHAN_LINK = "orphan_link"
    """The link is open but the provider is flat (or on the other side): nobody will close the copy."""
    MISSING_POSITION = "missing_position"
    """The link is open, the follower holds nothing of it (or the other side)."""
    UNTRACKED = "untracked"
    """The follower holds more than the links explain (manual trades): reported, never touched."""
    IN_FLIGHT = "in_flight"
    """Copy orders for the symbol are in flight or just settled: compared again next time."""
    UNVERIFIED = "unverified"
    """The follower's broker connection is down, so its stored positions may be stale: not compared."""


ACTIONABLE: frozenset[FindingKind] = frozenset(
    {FindingKind.DRIFT, FindingKind.ORPHAN_LINK, FindingKind.MISSING_POSITION}
)
"""The kinds that mean a link is wrong (and that a repair acts on)."""


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One discrepancy. ``expected`` and ``actual`` are the account's signed totals in ``symbol`` (all its
    live links, and the broker's position); the link fields are set for the link kinds."""

    kind: FindingKind
    account_id: str
    symbol: str
    """The follower's symbol."""
    expected: Decimal
    actual: Decimal
    subscription_id: str | None = None
    link_id: str | None = None
    provider_symbol: str | None = None
    side: Side | None = None
    """The link's (the follower's) side."""
    link_qty: Decimal | None = None
    held: Decimal | None = None
    """What of the link the follower holds (after charging any shortfall, see the module)."""
    provider_qty: Decimal | None = None
    """The provider's signed position in ``provider_symbol``."""
    excess: Decimal | None = None
    """For ``untracked``: the signed quantity held beyond the links."""
    detail: str = ""


class Expected(msgspec.Struct, frozen=True, kw_only=True):
    """One live subscription as reconciliation sees it: its open links and its provider's positions."""

    subscription_id: str
    account_id: str
    links: tuple[CopyLink, ...]
    provider: Mapping[str, Decimal]
    """The provider's signed position per provider symbol (a symbol not there is flat)."""
    reversed: bool = False
    """Whether the subscription copies in reverse (a long provider means a short follower)."""


class RepairAction(StrEnum):
    """What a repair did to one link."""

    CLOSE_ORDER = "close_order"
    """Closed the link and wrote an order closing what the follower holds of it."""
    LINK_CLOSED = "link_closed"
    """Closed the link, nothing held: no order."""
    LINK_SHRUNK = "link_shrunk"
    """Set the link's quantity to what the follower holds."""
    SKIPPED = "skipped"
    """Left alone: a repair order of it is still in flight, or the link changed since it was read."""


class Repair(msgspec.Struct, frozen=True, kw_only=True):
    """One change a repair made (or declined to make) to a link."""

    subscription_id: str
    link_id: str
    kind: FindingKind
    action: RepairAction
    qty: Decimal
    """The order's quantity, the link's new quantity, or zero."""
    intent_id: str | None = None
    detail: str = ""


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What one reconciliation run found (and repaired); ``intents`` are committed, not yet dispatched."""

    checked_at: datetime
    subscriptions: int
    """How many live subscriptions were compared."""
    findings: tuple[Finding, ...] = ()
    repairs: tuple[Repair, ...] = ()
    intents: tuple[CopyIntent, ...] = ()

    @property
    def remaining(self) -> tuple[Finding, ...]:
        """Actionable findings no repair took care of."""
        done = {r.link_id for r in self.repairs if r.action is not RepairAction.SKIPPED}
        return tuple(f for f in self.findings if f.kind in ACTIONABLE and f.link_id not in done)

    @property
    def clean(self) -> bool:
        """Whether nothing actionable is left (``untracked``, ``in_flight`` and ``unverified`` are information)."""
        return not self.remaining

    def counts(self) -> dict[str, int]:
        """Findings per kind (every kind, zeros included)."""
        counts = dict.fromkeys((k.value for k in FindingKind), 0)
        for finding in self.findings:
            counts[finding.kind.value] += 1
        return counts


# --- the comparison (pure) -------------------------------------------------------------------------


def _signed(link: CopyLink) -> Decimal:
    return link.qty if link.side is Side.BUY else -link.qty


def provider_side_matches(link: CopyLink, provider_qty: Decimal, *, reversed_: bool) -> bool:
    """Whether the provider still holds the position ``link`` copies: not flat, and on the side that the
    link's side mirrors (the opposite one for a reversed subscription)."""
    if provider_qty == 0:
        return False
    provider_side = Side.BUY if provider_qty > 0 else Side.SELL
    return link.side is (provider_side.opposite if reversed_ else provider_side)


def allocate(
    links: Sequence[CopyLink], actual: Decimal, *, orphans: Collection[str] = frozenset()
) -> tuple[dict[str, Decimal], Decimal]:
    """What each link holds of the signed ``actual`` position, and the signed quantity beyond them all.

    Netting: the links on the side of their net total are the ones a shortfall can come from, charged
    to ``orphans`` first, then newest first. Holding more than the net total (or anything, when the
    links cancel out) is the excess.
    """
    held = {link.id: link.qty for link in links}
    expected = sum((_signed(link) for link in links), _ZERO)
    if expected == 0:
        return held, actual
    sign = 1 if expected > 0 else -1
    direction = Side.BUY if sign > 0 else Side.SELL
    in_direction, want = actual * sign, abs(expected)
    if in_direction >= want:
        return held, (in_direction - want) * sign
    shortfall = want - in_direction
    newest_first = sorted(
        (link for link in links if link.side is direction), key=lambda lk: (lk.opened_at, lk.id), reverse=True
    )
    order = [lk for lk in newest_first if lk.id in orphans] + [lk for lk in newest_first if lk.id not in orphans]
    for link in order:
        take = min(link.qty, shortfall)
        held[link.id] = link.qty - take
        shortfall -= take
        if shortfall == 0:
            break
    # Whatever is still short is held on the other side, beyond the links of that side.
    return held, -shortfall * sign


def compare(
    subscriptions: Iterable[Expected],
    positions: Mapping[str, Mapping[str, Decimal]],
    *,
    busy: Collection[tuple[str, str]] = frozenset(),
    offline: Collection[str] = frozenset(),
) -> list[Finding]:
    """Every finding for these subscriptions' accounts (see the module).

    ``positions`` is the broker's signed position per account and symbol. ``subscriptions`` must hold
    *every* live subscription of each account it names, since an account's links are judged together.
    ``busy`` lists the ``(account, symbol)`` pairs with copy orders in flight, ``offline`` the accounts
    whose broker connection is down.
    """
    by_account: dict[str, list[Expected]] = defaultdict(list)
    for expected in subscriptions:
        by_account[expected.account_id].append(expected)
    findings: list[Finding] = []
    for account_id in sorted(by_account):
        held_now = positions.get(account_id, {})
        by_symbol: dict[str, list[tuple[Expected, CopyLink]]] = defaultdict(list)
        for expected in by_account[account_id]:
            for link in expected.links:
                by_symbol[link.follower_symbol].append((expected, link))
        symbols = set(by_symbol) | {symbol for symbol, qty in held_now.items() if qty != 0}
        for symbol in sorted(symbols):
            pairs = by_symbol.get(symbol, [])
            actual = held_now.get(symbol, _ZERO)
            if account_id in offline or (account_id, symbol) in busy:
                total = sum((_signed(link) for _, link in pairs), _ZERO)
                kind = FindingKind.UNVERIFIED if account_id in offline else FindingKind.IN_FLIGHT
                detail = (
                    "the broker connection is down: positions may be stale"
                    if kind is FindingKind.UNVERIFIED
                    else "copy orders in flight: compared again next time"
                )
                findings.append(
                    Finding(
                        kind=kind, account_id=account_id, symbol=symbol, expected=total, actual=actual, detail=detail
                    )
                )
                continue
            findings += _symbol_findings(account_id, symbol, pairs, actual)
    return findings


def _symbol_findings(
    account_id: str, symbol: str, pairs: Sequence[tuple[Expected, CopyLink]], actual: Decimal
) -> list[Finding]:
    provider_of = {link.id: expected.provider.get(link.provider_symbol, _ZERO) for expected, link in pairs}
    orphans = {
        link.id
        for expected, link in pairs
        if not provider_side_matches(link, provider_of[link.id], reversed_=expected.reversed)
    }
    links = [link for _, link in pairs]
    held, excess = allocate(links, actual, orphans=orphans)
    total = sum((_signed(link) for link in links), _ZERO)
    findings: list[Finding] = []
    for expected, link in pairs:
        has = held[link.id]
        provider_qty = provider_of[link.id]
        if link.id in orphans:
            kind = FindingKind.ORPHAN_LINK
            detail = f"the provider holds {provider_qty} {link.provider_symbol}; the follower holds {has} of this copy"
        elif has == 0 and link.qty > 0:
            kind, detail = FindingKind.MISSING_POSITION, f"the follower holds none of {link.side.value} {link.qty}"
        elif has < link.qty:
            kind, detail = FindingKind.DRIFT, f"the follower holds {has} of {link.side.value} {link.qty}"
        else:
            continue
        findings.append(
            Finding(
                kind=kind, account_id=account_id, symbol=symbol, expected=total, actual=actual,
                subscription_id=expected.subscription_id, link_id=link.id, provider_symbol=link.provider_symbol,
                side=link.side, link_qty=link.qty, held=has, provider_qty=provider_qty, detail=detail,
            )
        )  # fmt: skip
    if excess != 0:
        findings.append(
            Finding(
                kind=FindingKind.UNTRACKED, account_id=account_id, symbol=symbol, expected=total, actual=actual,
                excess=excess, detail=f"{excess} held beyond the copies (a manual trade?): left alone",
            )
        )  # fmt: skip
    return findings


# --- the run (reads, and for a repair writes) ------------------------------------------------------


async def reconcile(
    database: Database,
    clock: Clock,
    *,
    subscription_id: str | None = None,
    repair: bool = False,
    is_live: Callable[[str], bool] | None = None,
    settle_s: float = SETTLE_S,
    record: bool = False,
) -> Report:
    """Compare every live subscription (or one) with its follower's broker positions; repair on request.

    ``is_live`` (``BrokerLinks.is_live``) marks accounts whose connection is down as ``unverified``;
    without it every stored position is taken as current. Returns the findings and, for a repair, the
    committed close intents the caller hands to ``CopyEngine.dispatch``. ``record`` (a run a follower
    asked for) adds a ``reconciled`` event per subscription saying what was found; a periodic run leaves
    it off, so the feed only shows changes. Raises
    :class:`~brokerlink.kit.errors.NotFound` for an unknown ``subscription_id``.
    """
    now = clock.now()
    async with database.session() as session:
        subscriptions = SubscriptionRepository(session)
        if subscription_id is None:
            scope = await _all_live(session)
        else:
            one = await subscriptions.get_by_id(subscription_id)
            if one is None:
                raise NotFound("subscription not found")
            # A stopped subscription's links are no longer the engine's: what they hold is the follower's.
            scope = [one] if one.status in LIVE_SUBSCRIPTION_STATUSES else []
        accounts = sorted({s.account_id for s in scope})
        everyone = [s for account in accounts for s in await subscriptions.list_for_account(account)]
        if subscription_id is None:
            scope = everyone
        expected = await _expected(session, everyone)
        positions = {
            account: {p.symbol: p.qty for p in await PositionRepository(session).list_for_account(account)}
            for account in accounts
        }
        busy = await _busy(session, everyone, since=now - timedelta(seconds=settle_s))
    offline = {a for a in accounts if is_live is not None and not is_live(a)}
    findings = compare(expected, positions, busy=busy, offline=offline)
    if subscription_id is not None:
        findings = _of_subscription(findings, subscription_id, expected)
    repairs: list[Repair] = []
    intents: list[CopyIntent] = []
    for subscription in scope:
        observe.reconcile_drift(
            subscription_id=subscription.id,
            drifted=len({f.symbol for f in findings if f.subscription_id == subscription.id and f.kind in ACTIONABLE}),
        )
        mine = [f for f in findings if f.subscription_id == subscription.id and f.kind in ACTIONABLE] if repair else []
        if mine or record:
            summary = _of_subscription(findings, subscription.id, expected) if record else None
            done, made = await _repair(database, clock, subscription, mine, summary=summary)
            repairs += done
            intents += made
    report = Report(
        checked_at=now, subscriptions=len(scope), findings=tuple(findings), repairs=tuple(repairs),
        intents=tuple(intents),
    )  # fmt: skip
    _log.info(
        "copy_reconcile", subscription_id=subscription_id, subscriptions=len(scope), repair=repair,
        repaired=sum(1 for r in repairs if r.action is not RepairAction.SKIPPED), intents=len(intents),
        remaining=len(report.remaining), **report.counts(),
    )  # fmt: skip
    return report


async def _all_live(session: AsyncSession) -> list[Subscription]:
    """The live subscriptions of the active strategies (their accounts' other ones join in :func:`reconcile`)."""
    live: list[Subscription] = []
    strategies = await StrategyRepository(session).list_active()
    for strategy in strategies:
        live += await SubscriptionRepository(session).list_for_strategy(strategy.id)
    return live


async def _expected(session: AsyncSession, subscriptions: Sequence[Subscription]) -> list[Expected]:
    links = CopyLinkRepository(session)
    provider = StrategyPositionRepository(session)
    positions: dict[str, dict[str, Decimal]] = {}
    expected: list[Expected] = []
    for subscription in subscriptions:
        try:
            reversed_ = decode_settings(subscription.settings).direction is Direction.REVERSED
        except InvalidInput as exc:
            # Without its direction a link's provider side cannot be judged; a wrong "orphan" would trade.
            _log.warning("copy_reconcile_bad_settings", subscription_id=subscription.id, error=str(exc))
            continue
        if subscription.strategy_id not in positions:
            positions[subscription.strategy_id] = await provider.all(subscription.strategy_id)
        expected.append(
            Expected(
                subscription_id=subscription.id,
                account_id=subscription.account_id,
                links=tuple(await links.list_open_for_subscription(subscription.id)),
                provider=positions[subscription.strategy_id],
                reversed=reversed_,
            )
        )
    return expected


async def _busy(
    session: AsyncSession, subscriptions: Sequence[Subscription], *, since: datetime
) -> set[tuple[str, str]]:
    """``(account, symbol)`` pairs with copy orders in the outbox, in flight, or settled since ``since``."""
    accounts = {s.account_id for s in subscriptions}
    repo = CopyIntentRepository(session)
    outbox = await repo.list_pending(limit=_OUTBOX_SCAN) + await repo.list_sent(limit=_OUTBOX_SCAN)
    busy = {(i.follower_account_id, i.symbol) for i in outbox if i.follower_account_id in accounts}
    for subscription in subscriptions:
        recent = await repo.list_for_subscription(subscription.id, limit=_RECENT_INTENTS, descending=True)
        busy |= {
            (i.follower_account_id, i.symbol) for i in recent.items if i.status in _IN_FLIGHT or i.updated_at >= since
        }
    return busy


def _of_subscription(findings: Sequence[Finding], subscription_id: str, expected: Sequence[Expected]) -> list[Finding]:
    """One subscription's link findings, and the account-wide ones on the symbols its links hold."""
    symbols = {
        (e.account_id, link.follower_symbol)
        for e in expected
        if e.subscription_id == subscription_id
        for link in e.links
    }
    return [
        f
        for f in findings
        if f.subscription_id == subscription_id or (f.subscription_id is None and (f.account_id, f.symbol) in symbols)
    ]


# --- repair ----------------------------------------------------------------------------------------


async def _repair(
    database: Database,
    clock: Clock,
    subscription: Subscription,
    findings: Sequence[Finding],
    *,
    summary: Sequence[Finding] | None = None,
) -> tuple[list[Repair], list[CopyIntent]]:
    """Repair one subscription's links in one transaction (see the module); with ``summary`` (the run's
    findings for it), also record that the run happened. A concurrent repair that wrote the same close
    first makes this one roll back and report the links as skipped."""
    now = clock.now()
    try:
        async with database.session() as session:
            repairs: list[Repair] = []
            intents: list[CopyIntent] = []
            events: list[CopyEvent] = []
            for finding in findings:
                done, intent = await _repair_link(session, subscription, finding, now=now)
                repairs.append(done)
                if intent is not None:
                    intents.append(intent)
                if done.action is not RepairAction.SKIPPED:
                    events.append(_event(subscription, now, finding.kind.value, done.detail, done.intent_id))
            if summary is not None:
                events.append(_event(subscription, now, None, _summary(summary, repairs)))
            await CopyIntentRepository(session).add_many(intents)
            await CopyEventRepository(session).add_many(events)
            await session.commit()
    except IntegrityError:
        _log.warning("copy_reconcile_conflict", subscription_id=subscription.id)
        return [_skipped(subscription, f, "repaired concurrently by another run") for f in findings], []
    return repairs, intents


def _event(
    subscription: Subscription, now: datetime, reason: str | None, detail: str, intent_id: str | None = None
) -> CopyEvent:
    return CopyEvent(
        id=new_id("cpe"), subscription_id=subscription.id, kind=CopyEventKind.RECONCILED, reason=reason,
        detail=detail, intent_id=intent_id, created_at=now,
    )  # fmt: skip


def _summary(findings: Sequence[Finding], repairs: Sequence[Repair]) -> str:
    """The follower's line for a run on request: what was found, what was repaired."""
    kinds = Counter(finding.kind.value for finding in findings)
    found = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())) or "nothing to report"
    fixed = sum(1 for r in repairs if r.action is not RepairAction.SKIPPED)
    return f"reconciled on request: {found}" + (f"; {fixed} repaired" if fixed else "")


async def _repair_link(
    session: AsyncSession, subscription: Subscription, finding: Finding, *, now: datetime
) -> tuple[Repair, CopyIntent | None]:
    link_id, was, held, side = _link_of(finding)
    if finding.kind is FindingKind.ORPHAN_LINK and held > 0:
        return await _close_orphan(session, subscription, finding, now=now)
    links = CopyLinkRepository(session)
    if finding.kind is FindingKind.DRIFT:
        changed = await links.set_qty_if(link_id, was, held, now=now)
        action, qty = RepairAction.LINK_SHRUNK, held
        detail = f"{side.value} {finding.symbol}: the link shrank from {was} to {held}, what is held"
    else:  # an orphan with nothing held, or a missing position: nothing to trade, the link just ends
        changed = await links.close_if(link_id, was, now=now)
        action, qty = RepairAction.LINK_CLOSED, _ZERO
        detail = f"{side.value} {was} {finding.symbol}: nothing held, the link is closed"
    if not changed:
        return _skipped(subscription, finding, "the link changed since it was read"), None
    return _done(subscription, finding, action=action, qty=qty, detail=detail), None


async def _close_orphan(
    session: AsyncSession, subscription: Subscription, finding: Finding, *, now: datetime
) -> tuple[Repair, CopyIntent | None]:
    """Close an orphan link and write the order that closes what the follower holds of it."""
    link_id, was, held, side = _link_of(finding)
    client_order_id = await _close_id(session, subscription, link_id)
    if client_order_id is None:
        return _skipped(subscription, finding, "a reconciliation close of this link is still in flight"), None
    if not await CopyLinkRepository(session).close_if(link_id, was, now=now):
        return _skipped(subscription, finding, "the link changed since it was read"), None
    intent = CopyIntent(
        id=new_id("cpi"), subscription_id=subscription.id, signal_id=None, link_id=link_id,
        action=IntentAction.CLOSE, follower_account_id=subscription.account_id, client_order_id=client_order_id,
        symbol=finding.symbol, side=side.opposite, qty=held, tif=TimeInForce.GTC, created_at=now, updated_at=now,
    )  # fmt: skip
    detail = (
        f"the provider holds {finding.provider_qty} {finding.provider_symbol}: closing the copy, "
        f"{intent.side.value} {held} {finding.symbol}"
    )
    repair = _done(subscription, finding, action=RepairAction.CLOSE_ORDER, qty=held, detail=detail, intent_id=intent.id)
    return repair, intent


def _link_of(finding: Finding) -> tuple[str, Decimal, Decimal, Side]:
    """The link fields of a link finding: id, quantity, what is held of it, side."""
    if finding.link_id is None or finding.link_qty is None or finding.held is None or finding.side is None:
        raise ValueError(f"a {finding.kind} finding names no link")
    return finding.link_id, finding.link_qty, finding.held, finding.side


async def _close_id(session: AsyncSession, subscription: Subscription, link_id: str) -> str | None:
    """The client order id of the next reconciliation close of a link: attempt ``n`` after the ``n`` that
    ended; None while one is still in flight (a second repair then sends nothing)."""
    intents = CopyIntentRepository(session)
    n = 0
    while True:
        client_order_id = copy_client_order_id(subscription.id, f"reconcile:{link_id}:{n}", IntentAction.CLOSE.value)
        earlier = await intents.get_by_client_order_id(subscription.account_id, client_order_id)
        if earlier is None:
            return client_order_id
        if earlier.status in _IN_FLIGHT:
            return None
        n += 1


def _done(
    subscription: Subscription,
    finding: Finding,
    *,
    action: RepairAction,
    qty: Decimal,
    detail: str,
    intent_id: str | None = None,
) -> Repair:
    return Repair(
        subscription_id=subscription.id, link_id=finding.link_id or "", kind=finding.kind, action=action, qty=qty,
        intent_id=intent_id, detail=detail,
    )  # fmt: skip


def _skipped(subscription: Subscription, finding: Finding, why: str) -> Repair:
    return _done(subscription, finding, action=RepairAction.SKIPPED, qty=_ZERO, detail=why)
