"""Reconciliation: the pure comparison with hand-checked numbers, then a run over a real store (SQLite and
PostgreSQL) with and without repair."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from brokerlink.domain.copy import (
    CopyEventKind,
    CopyLink,
    IntentAction,
    IntentStatus,
    LinkStatus,
    Subscription,
    SubscriptionStatus,
)
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Position
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.reconcile import (
    Expected,
    Finding,
    FindingKind,
    RepairAction,
    allocate,
    compare,
    reconcile,
)
from brokerlink.engine.copy.settings import CopySettings, SizingMode, encode_settings
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import NotFound
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.strategies import StrategyPositionRepository, StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.store import copy_factories as f
from tests.store.factories import NOW, make_account

D = Decimal
ACC = "acc_follower"


def _link(link_id: str, qty: str, side: Side = Side.BUY, *, provider: str = "EUR/USD", follower: str = "EURUSD",
          minutes: int = 0) -> CopyLink:  # fmt: skip
    at = NOW + timedelta(minutes=minutes)
    return CopyLink(
        id=link_id, subscription_id="sub_x", provider_symbol=provider, follower_symbol=follower, side=side,
        qty=D(qty), opened_at=at, updated_at=at,
    )  # fmt: skip


def _sub(sub_id: str, *links: CopyLink, provider: dict[str, str], reversed_: bool = False) -> Expected:
    return Expected(
        subscription_id=sub_id, account_id=ACC, links=links, provider={k: D(v) for k, v in provider.items()},
        reversed=reversed_,
    )  # fmt: skip


def _kinds(findings: list[Finding]) -> list[tuple[FindingKind, str | None, Decimal | None]]:
    return [(x.kind, x.link_id, x.held if x.kind is not FindingKind.UNTRACKED else x.excess) for x in findings]


# --- the pure comparison --------------------------------------------------------------------------


def test_a_position_matching_its_link_is_clean() -> None:
    subs = [_sub("s1", _link("l1", "0.30"), provider={"EUR/USD": "1"})]
    assert compare(subs, {ACC: {"EURUSD": D("0.30")}}) == []


def test_drift_the_follower_holds_less_than_the_link() -> None:
    subs = [_sub("s1", _link("l1", "0.30"), provider={"EUR/USD": "1"})]
    [finding] = compare(subs, {ACC: {"EURUSD": D("0.20")}})
    assert finding.kind is FindingKind.DRIFT
    assert (finding.expected, finding.actual, finding.link_qty, finding.held) == (
        D("0.30"),
        D("0.20"),
        D("0.30"),
        D("0.20"),
    )
    assert finding.subscription_id == "s1"


def test_drift_across_two_subscriptions_is_charged_to_the_newest_link() -> None:
    # 0.30 + 0.20 expected, 0.40 held: 0.10 short, taken from the newer link (l2).
    subs = [
        _sub("s1", _link("l1", "0.30", minutes=0), provider={"EUR/USD": "1"}),
        _sub("s2", _link("l2", "0.20", minutes=5), provider={"EUR/USD": "2"}),
    ]
    [finding] = compare(subs, {ACC: {"EURUSD": D("0.40")}})
    assert (finding.kind, finding.link_id, finding.held) == (FindingKind.DRIFT, "l2", D("0.10"))
    assert (finding.expected, finding.actual) == (D("0.50"), D("0.40"))


def test_orphan_link_the_provider_is_flat() -> None:
    subs = [_sub("s1", _link("l1", "0.30"), provider={"EUR/USD": "0"})]
    [finding] = compare(subs, {ACC: {"EURUSD": D("0.30")}})
    assert (finding.kind, finding.held, finding.provider_qty) == (FindingKind.ORPHAN_LINK, D("0.30"), D(0))


def test_a_symbol_the_provider_never_held_is_flat() -> None:
    subs = [_sub("s1", _link("l1", "0.30"), provider={})]
    assert _kinds(compare(subs, {ACC: {"EURUSD": D("0.30")}})) == [(FindingKind.ORPHAN_LINK, "l1", D("0.30"))]


def test_an_orphan_absorbs_a_shortfall_before_a_live_link() -> None:
    # l1 (older, provider flat) and l2 (provider long) expect 0.50; 0.20 held: the orphan's close went through.
    subs = [
        _sub("s1", _link("l1", "0.30", minutes=0), provider={"EUR/USD": "0"}),
        _sub("s2", _link("l2", "0.20", minutes=5), provider={"EUR/USD": "1"}),
    ]
    assert _kinds(compare(subs, {ACC: {"EURUSD": D("0.20")}})) == [(FindingKind.ORPHAN_LINK, "l1", D(0))]


def test_the_provider_on_the_other_side_orphans_the_link_unless_the_copy_is_reversed() -> None:
    short_copy = _link("l1", "0.50", Side.SELL)
    held = {ACC: {"EURUSD": D("-0.50")}}
    assert compare([_sub("s1", short_copy, provider={"EUR/USD": "0.5"}, reversed_=True)], held) == []
    [finding] = compare([_sub("s1", short_copy, provider={"EUR/USD": "0.5"})], held)
    assert (finding.kind, finding.held) == (FindingKind.ORPHAN_LINK, D("0.50"))


def test_missing_position_nothing_held() -> None:
    subs = [_sub("s1", _link("l1", "0.10", Side.SELL), provider={"EUR/USD": "-0.10"})]
    [finding] = compare(subs, {ACC: {}})
    assert (finding.kind, finding.held, finding.expected, finding.actual) == (
        FindingKind.MISSING_POSITION, D(0), D("-0.10"), D(0),
    )  # fmt: skip


def test_missing_position_the_other_side_held_is_also_untracked() -> None:
    subs = [_sub("s1", _link("l1", "0.10", Side.SELL), provider={"EUR/USD": "-0.10"})]
    assert _kinds(compare(subs, {ACC: {"EURUSD": D("0.05")}})) == [
        (FindingKind.MISSING_POSITION, "l1", D(0)),
        (FindingKind.UNTRACKED, None, D("0.05")),
    ]


def test_untracked_holdings_beyond_the_links_and_without_any() -> None:
    subs = [_sub("s1", _link("l1", "0.30"), provider={"EUR/USD": "1"})]
    findings = compare(subs, {ACC: {"EURUSD": D("0.50"), "XAUUSD": D("-1"), "GBPUSD": D(0)}})
    assert _kinds(findings) == [(FindingKind.UNTRACKED, None, D("0.20")), (FindingKind.UNTRACKED, None, D("-1"))]
    assert [x.symbol for x in findings] == ["EURUSD", "XAUUSD"]
    assert findings[0].subscription_id is None


def test_netting_opposite_links_charge_the_dominant_side() -> None:
    # long 2 (s1) and short 1 (s2) net +1; -3 held: the long copy is gone, and -2 is beyond the short one.
    links = [_link("l1", "2"), _link("l2", "1", Side.SELL, minutes=1)]
    held, excess = allocate(links, D(-3))
    assert (held, excess) == ({"l1": D(0), "l2": D(1)}, D(-2))
    subs = [
        _sub("s1", links[0], provider={"EUR/USD": "5"}),
        _sub("s2", links[1], provider={"EUR/USD": "-5"}),
    ]
    assert _kinds(compare(subs, {ACC: {"EURUSD": D(-3)}})) == [
        (FindingKind.MISSING_POSITION, "l1", D(0)),
        (FindingKind.UNTRACKED, None, D(-2)),
    ]
    assert compare(subs, {ACC: {"EURUSD": D(1)}}) == []


def test_symbols_with_orders_in_flight_and_offline_accounts_are_not_judged() -> None:
    subs = [_sub("s1", _link("l1", "0.30"), provider={"EUR/USD": "0"})]
    held = {ACC: {"EURUSD": D(0)}}
    [busy] = compare(subs, held, busy={(ACC, "EURUSD")})
    assert (busy.kind, busy.expected, busy.actual) == (FindingKind.IN_FLIGHT, D("0.30"), D(0))
    [offline] = compare(subs, held, offline={ACC})
    assert offline.kind is FindingKind.UNVERIFIED


# --- a run over the store -------------------------------------------------------------------------


SETTINGS = encode_settings(CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D(1))).decode()


class Seeded:
    """Follower account F follows T1 (s1) and T2 (s2):

    - s1: EUR/USD copy l1 buy 0.30 (T1 long 1); GBP/USD copy l2 buy 0.20 (T1 flat: orphan, 0.20 held);
      USD/JPY copy l3 sell 0.50 (T1 short 1, nothing held: missing);
    - s2: EUR/USD copy l4 buy 0.20, newer than l1 (T2 long 2); F holds 0.40 EURUSD: l4 drifts to 0.10;
    - F also holds 1 XAUUSD of its own (untracked).
    """

    def __init__(self, s1: Subscription, s2: Subscription, links: dict[str, CopyLink]) -> None:
        self.s1, self.s2, self.links = s1, s2, links


async def _seed(database: Database) -> Seeded:
    async with database.session() as session:
        follower = await make_account(session)
        subs = []
        for qty in ("1", "2"):
            provider = await make_account(session)
            strategy = f.strategy(provider)
            await StrategyRepository(session).add(strategy)
            sub = f.subscription(strategy, follower, settings=SETTINGS)
            await SubscriptionRepository(session).add(sub)
            subs.append(sub)
            positions = StrategyPositionRepository(session)
            await positions.set(strategy.id, "EUR/USD", D(qty), now=NOW)
            await positions.set(strategy.id, "GBP/USD", D(0), now=NOW)
            await positions.set(strategy.id, "USD/JPY", D(-1), now=NOW)
        s1, s2 = subs
        links = {
            "l1": f.link(s1, "EUR/USD", follower_symbol="EURUSD", qty=D("0.30")),
            "l2": f.link(s1, "GBP/USD", follower_symbol="GBPUSD", qty=D("0.20")),
            "l3": f.link(s1, "USD/JPY", follower_symbol="USDJPY", qty=D("0.50"), side=Side.SELL),
            "l4": f.link(s2, "EUR/USD", follower_symbol="EURUSD", qty=D("0.20"), opened_at=NOW + timedelta(minutes=1)),
        }
        await CopyLinkRepository(session).add_many(list(links.values()))
        held = PositionRepository(session)
        for symbol, qty in (("EURUSD", "0.40"), ("GBPUSD", "0.20"), ("USDJPY", "0"), ("XAUUSD", "1")):
            await held.upsert(Position(account_id=follower.id, symbol=symbol, qty=D(qty), avg_price=D(1)), now=NOW)
        await session.commit()
    return Seeded(s1, s2, links)


async def _open_links(database: Database, *subs: Subscription) -> dict[str, Decimal]:
    async with database.session() as session:
        repo = CopyLinkRepository(session)
        return {link.id: link.qty for sub in subs for link in await repo.list_open_for_subscription(sub.id)}


async def test_a_run_reports_then_repairs_and_a_second_repair_sends_nothing(store: Database) -> None:
    world = await _seed(store)
    lk = world.links
    clock = ManualClock(NOW + timedelta(minutes=10))

    report = await reconcile(store, clock)
    assert report.subscriptions == 2
    got = {(x.kind, x.link_id, x.held if x.link_id else x.excess) for x in report.findings}
    assert got == {
        (FindingKind.ORPHAN_LINK, lk["l2"].id, D("0.20")),
        (FindingKind.MISSING_POSITION, lk["l3"].id, D(0)),
        (FindingKind.DRIFT, lk["l4"].id, D("0.10")),
        (FindingKind.UNTRACKED, None, D(1)),
    }
    assert not report.clean
    assert report.intents == ()
    assert report.repairs == ()
    assert await _open_links(store, world.s1, world.s2) == {
        lk["l1"].id: D("0.30"), lk["l2"].id: D("0.20"), lk["l3"].id: D("0.50"), lk["l4"].id: D("0.20"),
    }  # fmt: skip

    repaired = await reconcile(store, clock, repair=True)
    assert {(r.link_id, r.action, r.qty) for r in repaired.repairs} == {
        (lk["l2"].id, RepairAction.CLOSE_ORDER, D("0.20")),
        (lk["l3"].id, RepairAction.LINK_CLOSED, D(0)),
        (lk["l4"].id, RepairAction.LINK_SHRUNK, D("0.10")),
    }
    assert repaired.clean
    [intent] = repaired.intents
    assert intent.client_order_id == copy_client_order_id(world.s1.id, f"reconcile:{lk['l2'].id}:0", "close")
    assert (intent.action, intent.side, intent.qty, intent.symbol, intent.status, intent.link_id) == (
        IntentAction.CLOSE, Side.SELL, D("0.20"), "GBPUSD", IntentStatus.PENDING, lk["l2"].id,
    )  # fmt: skip
    assert await _open_links(store, world.s1, world.s2) == {lk["l1"].id: D("0.30"), lk["l4"].id: D("0.10")}
    async with store.session() as session:
        stored = await CopyIntentRepository(session).get_by_id(intent.id)
        assert stored is not None
        assert stored.status is IntentStatus.PENDING
        closed = await CopyLinkRepository(session).get_by_id(lk["l2"].id)
        assert closed is not None
        assert closed.status is LinkStatus.CLOSED
        assert closed.qty == 0
        feed = CopyEventRepository(session)
        events = {
            sub.id: [(e.kind, e.reason, e.intent_id) for e in (await feed.list_for_subscription(sub.id)).items]
            for sub in (world.s1, world.s2)
        }
    assert sorted(events[world.s1.id], key=str) == sorted(
        [
            (CopyEventKind.RECONCILED, "orphan_link", intent.id),
            (CopyEventKind.RECONCILED, "missing_position", None),
        ],
        key=str,
    )
    assert events[world.s2.id] == [(CopyEventKind.RECONCILED, "drift", None)]

    # Again while the close is in flight: GBPUSD is busy, nothing else is wrong, nothing new is written.
    again = await reconcile(store, clock, repair=True)
    assert again.intents == ()
    assert again.repairs == ()
    assert {x.kind for x in again.findings} == {FindingKind.IN_FLIGHT, FindingKind.UNTRACKED}
    async with store.session() as session:
        page = await CopyIntentRepository(session).list_for_subscription(world.s1.id)
    assert [i.id for i in page.items] == [intent.id]


async def test_a_repair_after_a_failed_close_takes_the_next_attempt_number(store: Database) -> None:
    world = await _seed(store)
    orphan = world.links["l2"]
    first = copy_client_order_id(world.s1.id, f"reconcile:{orphan.id}:0", "close")
    long_ago = NOW - timedelta(hours=1)
    async with store.session() as session:
        intents = CopyIntentRepository(session)
        earlier = f.intent(world.s1, None, first, link_id=orphan.id, symbol="GBPUSD", created_at=long_ago,
                           updated_at=long_ago)  # fmt: skip
        await intents.add(earlier)
        await intents.mark_failed(earlier.id, error="not sent in time", now=long_ago)
        await session.commit()
    report = await reconcile(store, ManualClock(NOW), subscription_id=world.s1.id, repair=True)
    [intent] = report.intents
    assert intent.client_order_id == copy_client_order_id(world.s1.id, f"reconcile:{orphan.id}:1", "close")
    # One subscription's run: s2's drift is not its business, nor is XAUUSD (no link of s1 holds it).
    assert {x.kind for x in report.findings} == {FindingKind.ORPHAN_LINK, FindingKind.MISSING_POSITION}
    assert await _open_links(store, world.s2) == {world.links["l4"].id: D("0.20")}


async def test_one_subscription_stopped_or_unknown(store: Database) -> None:
    world = await _seed(store)
    clock = ManualClock(NOW)
    async with store.session() as session:
        await SubscriptionRepository(session).set_status(world.s2.id, SubscriptionStatus.STOPPED, now=NOW)
        await session.commit()
    # s2 is stopped: what its link holds is the follower's own now, untracked for s1's EURUSD copy.
    s1 = await reconcile(store, clock, subscription_id=world.s1.id)
    eur = [x for x in s1.findings if x.symbol == "EURUSD"]
    assert [(x.kind, x.excess) for x in eur] == [(FindingKind.UNTRACKED, D("0.10"))]
    assert (await reconcile(store, clock, subscription_id=world.s2.id)).findings == ()
    with pytest.raises(NotFound):
        await reconcile(store, clock, subscription_id=new_id("sub"))
