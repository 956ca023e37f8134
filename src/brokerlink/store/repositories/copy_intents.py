"""The copy outbox: follower order intents. Returns :class:`~brokerlink.domain.copy.CopyIntent` objects.

Intents are written in the transaction that consumes their cause (a provider signal, a stop, a
repair), before anything is sent, and they carry the deterministic client order id. The relay
reads them oldest first, hands each to the follower's adapter, and records the outcome here. After a
crash, ``pending`` intents are sent (again) under the same ids and ``sent`` ones are resolved by
looking the order up: a restart can never place a second order.

Status changes follow :data:`~brokerlink.domain.copy.INTENT_TRANSITIONS`, applied in one conditional
UPDATE (``WHERE status IN <allowed sources>``): each ``mark_*`` returns False, and changes nothing,
when the intent is unknown or already past that state (a late acknowledgement after the fill, a
report delivered twice), so callers need no read-then-write and concurrent reports cannot regress it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import PROTECTIVE_ACTIONS, CopyIntent, IntentStatus, intent_sources
from brokerlink.store.mapping import copy_intent_from_row, struct_values
from brokerlink.store.models import CopyIntentRow, SubscriptionRow
from brokerlink.store.repositories._common import FRESH, Page, check_limit, fetch_page, in_period, insert_rows, rowcount


class CopyIntentRepository:
    """Queries on ``copy_intents``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, intent: CopyIntent) -> None:
        """Insert an intent (its id from ``new_id("cpi")``).

        The database refuses (``IntegrityError``) a client order id already used in the follower
        account, and a ``follower_account_id`` that is not the subscription's account.
        """
        await self.add_many([intent])

    async def add_many(self, intents: Sequence[CopyIntent]) -> None:
        """Insert intents in one statement: a fan-out to many followers (refusals as :meth:`add`, all or none)."""
        if intents:
            await insert_rows(self.session, CopyIntentRow, [struct_values(intent) for intent in intents])

    async def get_by_id(self, intent_id: str) -> CopyIntent | None:
        """The intent with this id."""
        stmt = select(CopyIntentRow).where(CopyIntentRow.id == intent_id)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else copy_intent_from_row(row)

    async def get_by_client_order_id(self, follower_account_id: str, client_order_id: str) -> CopyIntent | None:
        """The follower account's intent with this client order id (an order report finds its intent)."""
        stmt = select(CopyIntentRow).where(
            CopyIntentRow.follower_account_id == follower_account_id,
            CopyIntentRow.client_order_id == client_order_id,
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else copy_intent_from_row(row)

    async def count_unanswered(self) -> int:
        """Outbox intents the broker has not answered: not yet handed over, or handed over and
        unacknowledged (one indexed count: ``ix_copy_intents_status_id``)."""
        waiting = (IntentStatus.PENDING.value, IntentStatus.SENT.value)
        stmt = select(func.count()).select_from(CopyIntentRow).where(CopyIntentRow.status.in_(waiting))
        return int(await self.session.scalar(stmt) or 0)

    async def list_pending(self, *, limit: int = 100) -> list[CopyIntent]:
        """Intents not yet handed to an adapter, oldest first: what the relay sends next."""
        return await self._list(select(CopyIntentRow).where(CopyIntentRow.status == IntentStatus.PENDING.value), limit)

    async def list_sent(self, *, limit: int = 100, sent_before: datetime | None = None) -> list[CopyIntent]:
        """Intents handed to an adapter without a final outcome (sent or acknowledged), oldest first.

        ``sent_before`` leaves out the ones sent since (still in flight, their answer may yet come).
        """
        stmt = select(CopyIntentRow).where(
            CopyIntentRow.status.in_([IntentStatus.SENT.value, IntentStatus.ACKNOWLEDGED.value])
        )
        if sent_before is not None:
            stmt = stmt.where(CopyIntentRow.sent_at < sent_before)
        return await self._list(stmt, limit)

    async def list_for_subscription(
        self, subscription_id: str, *, limit: int = 50, after: str | None = None, descending: bool = False
    ) -> Page[CopyIntent]:
        """One page of a subscription's intents by id (creation order)."""
        stmt = select(CopyIntentRow).where(CopyIntentRow.subscription_id == subscription_id)
        return await fetch_page(
            self.session, stmt, CopyIntentRow.id, copy_intent_from_row, limit=limit, after=after, descending=descending
        )

    async def list_for_links(self, link_ids: Sequence[str]) -> list[CopyIntent]:
        """Every intent of these links, any status, oldest first: what SL/TP mirroring compares with
        (each link's protective revisions, and trades still in flight)."""
        if not link_ids:
            return []
        stmt = select(CopyIntentRow).where(CopyIntentRow.link_id.in_(list(link_ids))).order_by(CopyIntentRow.id)
        return [copy_intent_from_row(r) for r in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def links_with_protective(self) -> set[str]:
        """Every link that ever had a stop-loss or take-profit intent (the others need no protective check)."""
        stmt = (
            select(CopyIntentRow.link_id)
            .where(CopyIntentRow.action.in_([a.value for a in PROTECTIVE_ACTIONS]), CopyIntentRow.link_id.is_not(None))
            .distinct()
        )
        return {link_id for link_id in (await self.session.scalars(stmt)).all() if link_id is not None}

    async def list_protective_open(self, subscription_ids: Sequence[str]) -> list[CopyIntent]:
        """The subscriptions' stop-loss and take-profit intents without a final outcome (pending, sent,
        acknowledged), oldest first: the protective orders that may still work at a follower's venue."""
        if not subscription_ids:
            return []
        stmt = select(CopyIntentRow).where(
            CopyIntentRow.subscription_id.in_(list(subscription_ids)),
            CopyIntentRow.action.in_([a.value for a in PROTECTIVE_ACTIONS]),
            CopyIntentRow.status.in_(
                [IntentStatus.PENDING.value, IntentStatus.SENT.value, IntentStatus.ACKNOWLEDGED.value]
            ),
        )
        return await self._list(stmt, 500)

    async def any_protective_open(self, strategy_id: str) -> bool:
        """Whether any subscription of the strategy has a stop-loss or take-profit intent without a final
        outcome (what :meth:`list_protective_open` would list), in one indexed query."""
        stmt = (
            select(CopyIntentRow.id)
            .join(SubscriptionRow, SubscriptionRow.id == CopyIntentRow.subscription_id)
            .where(
                SubscriptionRow.strategy_id == strategy_id,
                CopyIntentRow.status.in_(
                    [IntentStatus.PENDING.value, IntentStatus.SENT.value, IntentStatus.ACKNOWLEDGED.value]
                ),
                CopyIntentRow.action.in_([a.value for a in PROTECTIVE_ACTIONS]),
            )
            .limit(1)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def set_pending_qty(self, intent_id: str, qty: Decimal, *, now: datetime) -> bool:
        """Shrink a ``pending`` intent before it is sent (a close clamped to what the follower still
        holds after its protective order filled). False if it is no longer pending."""
        stmt = (
            update(CopyIntentRow)
            .where(CopyIntentRow.id == intent_id, CopyIntentRow.status == IntentStatus.PENDING.value)
            .values(qty=qty, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(await self.session.execute(stmt)) > 0

    async def mark_sent(
        self, intent_id: str, *, now: datetime, order_id: str | None = None, engine_us: int | None = None
    ) -> bool:
        """Handed to the adapter (again, for a replay): counts the attempt and sets ``sent_at``."""
        return await self._move(
            intent_id,
            IntentStatus.SENT,
            now,
            sent_at=now,
            attempts=CopyIntentRow.attempts + 1,
            order_id=order_id,
            engine_us=engine_us,
        )

    async def mark_sent_many(self, sent: Sequence[tuple[str, str | None, int | None]], *, now: datetime) -> None:
        """:meth:`mark_sent` for many intents in one statement: ``(intent id, order id, engine_us)`` each (a
        fan-out's hand-offs recorded together; an intent already past ``sent`` is left alone, and a None
        erases nothing, as there)."""
        if not sent:
            return
        table = cast("Table", CopyIntentRow.__table__)  # the Core table: an executemany, not the ORM's bulk UPDATE
        sources = [status.value for status in intent_sources(IntentStatus.SENT)]
        moment = bindparam("b_now", type_=table.c.updated_at.type)
        stmt = (
            update(table)
            # The sources as literal binds: an executemany takes no expanding IN list.
            .where(table.c.id == bindparam("b_id"), table.c.status.in_([literal(v) for v in sources]))
            .values(
                status=IntentStatus.SENT.value,
                updated_at=moment,
                sent_at=moment,
                attempts=table.c.attempts + 1,
                order_id=func.coalesce(bindparam("b_order", type_=table.c.order_id.type), table.c.order_id),
                engine_us=func.coalesce(bindparam("b_engine", type_=table.c.engine_us.type), table.c.engine_us),
            )
        )
        rows = [{"b_id": i, "b_now": now, "b_order": o, "b_engine": e} for i, o, e in sent]
        await self.session.execute(stmt, rows)

    async def mark_acknowledged(
        self, intent_id: str, *, now: datetime, order_id: str | None = None, broker_us: int | None = None
    ) -> bool:
        """The broker accepted the order."""
        return await self._move(
            intent_id, IntentStatus.ACKNOWLEDGED, now, acked_at=now, order_id=order_id, broker_us=broker_us
        )

    async def mark_filled(
        self,
        intent_id: str,
        *,
        now: datetime,
        order_id: str | None = None,
        slippage_bps: Decimal | None = None,
        broker_us: int | None = None,
    ) -> bool:
        """The order filled completely (``acked_at`` stays unset when the fill came first)."""
        return await self._move(
            intent_id, IntentStatus.FILLED, now, order_id=order_id, slippage_bps=slippage_bps, broker_us=broker_us
        )

    async def mark_rejected(self, intent_id: str, *, reason: str, now: datetime, order_id: str | None = None) -> bool:
        """The broker (or the adapter, definitively) refused the order; ``reason`` goes to ``last_error``."""
        return await self._move(intent_id, IntentStatus.REJECTED, now, last_error=reason, order_id=order_id)

    async def mark_canceled(self, intent_id: str, *, now: datetime, reason: str | None = None) -> bool:
        """The order ended at the venue without filling completely (canceled, expired, IOC remainder)."""
        return await self._move(intent_id, IntentStatus.CANCELED, now, last_error=reason)

    async def mark_failed(self, intent_id: str, *, error: str, now: datetime) -> bool:
        """The engine gives up on this intent."""
        return await self._move(intent_id, IntentStatus.FAILED, now, last_error=error)

    async def requeue(self, intent_id: str, *, error: str, now: datetime) -> bool:
        """Back to ``pending`` after a send that provably reached no broker (a transient failure)."""
        return await self._move(intent_id, IntentStatus.PENDING, now, last_error=error)

    async def _list(self, stmt: Select[CopyIntentRow], limit: int) -> list[CopyIntent]:
        check_limit(limit)
        stmt = stmt.order_by(CopyIntentRow.id).limit(limit)
        return [copy_intent_from_row(r) for r in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def _move(self, intent_id: str, target: IntentStatus, now: datetime, **values: Any) -> bool:
        # None means "not reported": it never erases what an earlier report recorded.
        changes = {name: value for name, value in values.items() if value is not None}
        sources = [status.value for status in intent_sources(target)]
        stmt = (
            update(CopyIntentRow)
            .where(CopyIntentRow.id == intent_id, CopyIntentRow.status.in_(sources))
            .values(status=target.value, updated_at=now, **changes)
            .execution_options(synchronize_session=False)
        )
        return rowcount(await self.session.execute(stmt)) > 0

    # --- the list filtered by symbol and time --------------------------------------------------------

    async def page_filtered(
        self,
        subscription_id: str,
        *,
        symbol: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        after: str | None = None,
        descending: bool = True,
    ) -> Page[CopyIntent]:
        """One page of a subscription's intents by id, only those in (follower) ``symbol`` created in [since, until)."""
        stmt = select(CopyIntentRow).where(CopyIntentRow.subscription_id == subscription_id)
        if symbol is not None:
            stmt = stmt.where(CopyIntentRow.symbol == symbol)
        stmt = in_period(stmt, CopyIntentRow.created_at, since, until)
        return await fetch_page(
            self.session, stmt, CopyIntentRow.id, copy_intent_from_row, limit=limit, after=after, descending=descending
        )
