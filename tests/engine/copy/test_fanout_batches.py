"""The fan-out's second round (ADR 0029): what it shares and batches gives what one at a time gave.

- a fan-out's orders checked once per distinct (broker rules, instrument, ticket, quote) equal the orders
  :func:`prepare_order` makes for each intent alone, but for their ids; refusals stay refusals;
- the driver's decimal text is ``canonical_decimal``'s, for any finite decimal;
- the fast base32 of the client order id is RFC 4648's (lower case), for any inputs;
- ``mark_sent_many`` moves intents exactly as ``mark_sent`` does, one by one, on both databases;
- ``settle_many`` settles in batches what ``settle`` settles one by one.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from brokerlink.brokers.base import Capabilities
from brokerlink.domain.copy import CopyOrderType, IntentStatus
from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, TimeInForce
from brokerlink.domain.models import Account, Instrument
from brokerlink.engine.copy import outcomes
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.service import CopyEngine, _ticket
from brokerlink.engine.links.live import LiveAccount
from brokerlink.engine.links.orders import prepare_order
from brokerlink.kit.clock import SystemClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_fanout import _sqlite_decimal
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.types import canonical_decimal
from tests.store import copy_factories as f
from tests.store.factories import NOW, make_account, make_order

D = Decimal

_RULES = Instrument(
    symbol="EURUSD.m", venue_symbol="EURUSD.m", asset_class=AssetClass.FX, base="EUR", quote="USD",
    tick_size=D("0.00001"), qty_step=D("0.01"), min_qty=D("0.01"),
)  # fmt: skip
_ALL = Capabilities(order_types=frozenset(OrderType), time_in_force=frozenset(TimeInForce))
_NO_LIMITS = Capabilities(order_types=frozenset({OrderType.MARKET}), time_in_force=frozenset(TimeInForce))


class _Adapter:
    def __init__(self, capabilities: Capabilities) -> None:
        self.capabilities = capabilities


class _Links:
    def __init__(self, accounts: dict[str, LiveAccount]) -> None:
        self.accounts = accounts

    def is_live(self, account_id: str) -> bool:
        return account_id in self.accounts

    def live(self, account_id: str) -> LiveAccount:
        return self.accounts[account_id]


def _live(account_id: str, capabilities: Capabilities) -> LiveAccount:
    account = Account(
        id=account_id, user_id="usr_1", connection_id="con_1", venue_account_id=account_id, name=account_id,
        currency="USD",
    )  # fmt: skip
    return LiveAccount(account, broker="sim", adapter=_Adapter(capabilities), instruments=[_RULES])  # type: ignore[arg-type]


def test_orders_checked_once_per_distinct_ticket_equal_the_orders_checked_one_by_one() -> None:
    # Two brokers (different capabilities), followers with equal and with different tickets, one too small,
    # one limit order at a broker that takes none.
    accounts = {f"acc_{i}": _live(f"acc_{i}", _ALL if i < 4 else _NO_LIMITS) for i in range(6)}
    engine = CopyEngine(None, None, _Links(accounts), SystemClock())  # type: ignore[arg-type]
    sub = f.subscription(f.strategy(accounts["acc_0"].account), accounts["acc_0"].account)
    tickets: list[dict[str, Any]] = [
        {"qty": D("0.15")}, {"qty": D("0.15")}, {"qty": D("0.150")}, {"qty": D("0.001")},
        {"qty": D("0.15")}, {"qty": D("0.15"), "limit_price": D("1.08500"), "order_type": CopyOrderType.LIMIT},
    ]  # fmt: skip
    intents = [f.intent(sub, "sig_1", f"cp-{i}", follower_account_id=f"acc_{i}", **t) for i, t in enumerate(tickets)]
    intents.append(f.intent(sub, "sig_1", "cp-9", follower_account_id="acc_gone"))  # not live: no order
    prepared = engine._prepare_orders(intents, now=NOW)
    assert sorted(prepared) == sorted(i.id for i in intents[:6] if i.qty >= D("0.01") and i.limit_price is None)
    for intent in intents:
        if intent.id not in prepared:
            continue
        alone = prepare_order(accounts[intent.follower_account_id], _ticket(intent), now=NOW)
        mine = prepared[intent.id]
        assert mine.id != alone.id
        assert mine == type(mine)(**{**_fields(alone), "id": mine.id})
        assert str(mine.qty) == str(intent.qty)  # the follower's own quantity, scale and all
    assert len({o.id for o in prepared.values()}) == len(prepared)


def _fields(order: Any) -> dict[str, Any]:
    return {name: getattr(order, name) for name in order.__struct_fields__}


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_the_driver_writes_the_canonical_decimal_text(value: Decimal) -> None:
    assert _sqlite_decimal(value) == format(canonical_decimal(value), "f")


@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1))
def test_the_client_order_id_is_rfc4648_base32_of_the_digest(subscription: str, trade: str, action: str) -> None:
    digest = hashlib.sha256(b"brokerlink/copy-order-id/v1")
    for part in (subscription, trade, action):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big") + data)
    expected = "cp-" + base64.b32encode(digest.digest()[:20]).decode("ascii").lower()
    assert copy_client_order_id(subscription, trade, action) == expected


async def test_mark_sent_many_moves_intents_as_mark_sent_does(store: Database) -> None:
    later = NOW + timedelta(seconds=2)
    async with store.session() as session:
        copying = await f.make_copying(session)
        sub = copying.subscription
        intents = [f.intent(sub, None, f"cp-{i}") for i in range(4)]
        for order_id in ("ord_0", "ord_3", "ord_kept"):
            await OrderRepository(session).add(make_order(sub.account_id, order_id, id=order_id))
        repo = CopyIntentRepository(session)
        await repo.add_many(intents)
        await repo.mark_sent(intents[2].id, now=NOW, order_id="ord_kept", engine_us=77)  # sent once already
        await repo.mark_filled(intents[3].id, now=NOW)  # past sent: left alone
        await session.commit()
    async with store.session() as session:
        sent = [(intents[0].id, "ord_0", 11), (intents[1].id, None, None), (intents[2].id, None, None)]
        await CopyIntentRepository(session).mark_sent_many([*sent, (intents[3].id, "ord_3", 33)], now=later)
        await session.commit()
    async with store.session() as session:
        repo = CopyIntentRepository(session)
        got = [await repo.get_by_id(i.id) for i in intents]
    assert [(i.status, i.attempts, i.sent_at, i.order_id, i.engine_us) for i in got if i is not None] == [
        (IntentStatus.SENT, 1, later, "ord_0", 11),
        (IntentStatus.SENT, 1, later, None, None),
        (IntentStatus.SENT, 2, later, "ord_kept", 77),  # a None erases nothing
        (IntentStatus.FILLED, 0, None, None, None),
    ]
    assert all(i is not None and i.updated_at == (NOW if i.status is IntentStatus.FILLED else later) for i in got)


async def test_settle_many_settles_in_batches_what_settle_settles_alone(store: Database) -> None:
    count = outcomes.SETTLE_BATCH + 3  # more than one batch
    async with store.session() as session:
        copying = await f.make_copying(session)
        sub = copying.subscription
        account = copying.follower.id
        intents = [f.intent(sub, None, f"cp-{i}", follower_account_id=account) for i in range(count)]
        await CopyIntentRepository(session).add_many(intents)
        orders = OrderRepository(session)
        for i, intent in enumerate(intents):
            status = OrderStatus.FILLED if i % 2 else OrderStatus.NEW
            filled = intent.qty if i % 2 else D(0)
            await orders.add(
                make_order(account, intent.client_order_id, qty=intent.qty, status=status, filled_qty=filled,
                           avg_fill_price=D("1.1") if i % 2 else None)
            )  # fmt: skip
        await CopyIntentRepository(session).mark_sent_many([(i.id, None, None) for i in intents], now=NOW)
        other = await make_account(session)
        await session.commit()
    keys = [(account, i.client_order_id, 5) for i in intents] + [(other.id, "cp-unknown", None)]
    done = await outcomes.settle_many(store, SystemClock(), keys)
    assert done == {i.client_order_id: bool(n % 2) for n, i in enumerate(intents)} | {"cp-unknown": True}
    async with store.session() as session:
        repo = CopyIntentRepository(session)
        statuses = [(await repo.get_by_id(i.id)).status for i in intents]  # type: ignore[union-attr]
    assert statuses == [IntentStatus.FILLED if n % 2 else IntentStatus.ACKNOWLEDGED for n in range(count)]
    assert await outcomes.settle_many(store, SystemClock(), keys[:2]) == {"cp-0": False, "cp-1": True}  # idempotent
