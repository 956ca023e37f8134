"""Who may follow which channel of ``/v1/stream``, which view they get, and its snapshot.

Every subscription is authorized per object and per consent scope (SECURITY.md 19, 23): an account
that is not the principal's user's, or outside the consent's accounts, and a subscription whose
follower is someone else, are refused exactly like missing ones (404, no data). An app without the
scope a channel needs gets 403 ``insufficient_scope``. Market channels are open to any
authenticated principal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from brokerlink.domain.copy import SubscriptionStatus
from brokerlink.domain.enums import ConnectionState
from brokerlink.engine.alerts.events import AlertData
from brokerlink.security.principal import Principal
from brokerlink.store.db import Database
from brokerlink.store.models_alerts import AlertStatus
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.alerts import AlertRepository
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from brokerlink.stream.channels import ChannelLog, ChannelName
from brokerlink.stream.connections import READ_SCOPES, AccountView, AlertView, StreamHub

SNAPSHOT_COPY_EVENTS = 50
"""Copy events a ``copy:`` snapshot carries, newest last."""
_DOWN = (ConnectionState.DISCONNECTED, ConnectionState.REVOKED)
_SNAPSHOT_ALERTS = 100

Snapshot = Callable[[], Awaitable[dict[str, Any]]]


class Refused(Exception):
    """A subscription the principal may not have; becomes an ``Error`` message."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def _not_found(what: str) -> Refused:
    return Refused(404, "not_found", f"{what} not found")


def _scope(principal: Principal, *scopes: str) -> None:
    if principal.kind == "client" and not (principal.scopes or frozenset()) & set(scopes):
        raise Refused(403, "insufficient_scope", "this channel needs one of the scopes: " + ", ".join(scopes))


def copy_payload(event: Any) -> str:
    """A copy event as the stream carries it: the stored event with ``type`` its kind."""
    body: dict[str, Any] = msgspec.to_builtins(event)
    return msgspec.json.encode({"type": body["kind"], **body}).decode()


class Access:
    """Authorizes subscriptions and loads snapshots for one process's hub."""

    def __init__(self, hub: StreamHub, database: Database) -> None:
        self.hub = hub
        self.database = database

    async def reliable(self, principal: Principal, name: ChannelName) -> tuple[ChannelLog, Snapshot]:
        """The view ``principal`` gets of an account, copy or alerts channel, and how to snapshot it."""
        if name.kind == "account":
            return await self._account(principal, name.arg)
        if name.kind == "copy":
            return await self._copy(principal, name.arg)
        return self._alerts(principal)

    async def _account(self, principal: Principal, account_id: str) -> tuple[ChannelLog, Snapshot]:
        _scope(principal, *sorted(READ_SCOPES))
        if not principal.can_reach_account(account_id):
            raise _not_found("account")
        async with self.database.session() as db:
            if await AccountRepository(db).get_for_user(principal.user_id, account_id) is None:
                raise _not_found("account")
        view = AccountView(None if principal.scopes is None else principal.scopes & READ_SCOPES)

        async def snapshot() -> dict[str, Any]:
            data: dict[str, Any] = {"account_id": account_id}
            async with self.database.session() as db:
                if view.scopes is None or "orders:read" in view.scopes:
                    data["open_orders"] = msgspec.to_builtins(await OrderRepository(db).list_open(account_id))
                if view.scopes is None or "positions:read" in view.scopes:
                    positions = await PositionRepository(db).list_for_account(account_id)
                    data["positions"] = msgspec.to_builtins(positions)
                if view.scopes is None or "balances:read" in view.scopes:
                    data["balances"] = msgspec.to_builtins(await BalanceRepository(db).list_for_account(account_id))
            return data

        return self.hub.account_log(account_id, view), snapshot

    async def _copy(self, principal: Principal, subscription_id: str) -> tuple[ChannelLog, Snapshot]:
        _scope(principal, "copy:read")
        async with self.database.session() as db:
            subscription = await SubscriptionRepository(db).get_for_user(principal.user_id, subscription_id)
        if subscription is None or not principal.can_reach_account(subscription.account_id):
            raise _not_found("subscription")

        async def snapshot() -> dict[str, Any]:
            async with self.database.session() as db:
                current = await SubscriptionRepository(db).get_by_id(subscription_id)
                page = await CopyEventRepository(db).list_for_subscription(
                    subscription_id, limit=SNAPSHOT_COPY_EVENTS, descending=True
                )
            events = [msgspec.json.decode(copy_payload(e)) for e in reversed(page.items)]
            state = subscription if current is None else current
            return {
                "subscription": {
                    "id": state.id,
                    "account_id": state.account_id,
                    "strategy_id": state.strategy_id,
                    "status": str(state.status),
                    "version": state.version,
                },
                "events": events,
            }

        return self.hub.copy_log(subscription_id), snapshot

    def _alerts(self, principal: Principal) -> tuple[ChannelLog, Snapshot]:
        if principal.kind == "client" and principal.consent_id is None:
            raise _not_found("channel")  # a client-credentials token acts for no user
        _scope(principal, "accounts:read", "copy:read")
        view = AlertView.of(principal)

        async def snapshot() -> dict[str, Any]:
            data: dict[str, Any] = {}
            async with self.database.session() as db:
                if view.scopes is None or "accounts:read" in view.scopes:
                    listing = await AccountRepository(db).list_with_connections(view.user_id)
                    data["connections"] = [
                        {
                            "account_id": a.id,
                            "connection_id": a.connection_id,
                            "state": str(a.connection_status),
                        }
                        for a in listing
                        if a.connection_status in _DOWN and (view.accounts is None or a.id in view.accounts)
                    ]
                if view.scopes is None or "copy:read" in view.scopes:
                    page = await SubscriptionRepository(db).list_for_user(view.user_id, limit=_SNAPSHOT_ALERTS)
                    data["subscriptions"] = [
                        {"id": s.id, "account_id": s.account_id, "status": str(s.status)}
                        for s in page.items
                        if s.status in (SubscriptionStatus.PAUSED, SubscriptionStatus.CLOSE_ONLY)
                        and (view.accounts is None or s.account_id in view.accounts)
                    ]
                if view.ops:
                    alerts = AlertRepository(db)
                    open_ = [
                        a
                        for status in (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
                        for a in (await alerts.list_alerts(status=status, limit=_SNAPSHOT_ALERTS)).items
                    ]
                    data["alerts"] = msgspec.to_builtins([AlertData.of(a) for a in open_])
            return data

        return self.hub.alerts_log(view), snapshot
