"""Observations: the one call site through which the server reports what happens to it.

Code that notices something an operator cares about (a failed login, a broker going down, a copy's
latency) calls one function here and knows nothing of what listens. Two things do: the Prometheus
metrics (this module updates them) and the alert rules (they register a listener with
:func:`add_listener` and evaluate each :class:`Observation` as it arrives).

Like :mod:`brokerlink.config` and :mod:`brokerlink.logs`, this module imports nothing else from
brokerlink, so every layer may call it. Durations are seconds or microseconds as floats: they are
measurements, not money.

Listeners run synchronously in the caller's task, so they must be quick and must not raise; a
listener that raises is logged and skipped (an alert rule's bug must never fail a login).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

_log = logging.getLogger("brokerlink.observe")


@dataclass(frozen=True, slots=True)
class Observation:
    """One thing that happened: a kind, string labels, an optional measured value, and when."""

    kind: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


Listener = Callable[[Observation], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> Callable[[], None]:
    """Register ``listener`` for every observation; returns a function that removes it."""
    _listeners.append(listener)

    def remove() -> None:
        if listener in _listeners:
            _listeners.remove(listener)

    return remove


def _emit(kind: str, value: float | None = None, **labels: str) -> None:
    observation = Observation(kind=kind, labels=labels, value=value)
    for listener in tuple(_listeners):
        try:
            listener(observation)
        except Exception:  # noqa: BLE001 (a listener's bug must not fail the caller; it is logged)
            _log.exception("observation listener failed", extra={"kind": kind})


# --- the observations -------------------------------------------------------------------------
# Each function below is the contract: its name is the observation's kind, its keyword arguments
# its labels. The metrics helper adds the Prometheus updates inside these functions.


def auth_failure(*, principal: str, ip: str, reason: str) -> None:
    """A sign-in, MFA or token check failed. ``principal`` is the email or client id tried."""
    _emit("auth_failure", principal=principal, ip=ip, reason=reason)


def auth_success(*, principal: str, ip: str, method: str) -> None:
    """A sign-in (``method``: password, mfa, token) succeeded."""
    _emit("auth_success", principal=principal, ip=ip, method=method)


def http_request(*, route: str, method: str, status: int, duration_s: float, client_id: str | None) -> None:
    """A request was answered. ``route`` is the route template, never the raw path (cardinality)."""
    _emit("http_request", duration_s, route=route, method=method, status=str(status), client_id=client_id or "")


def rate_limited(*, scope: str, key: str) -> None:
    """A request was refused with 429. ``scope`` names the limit (user, client, ip, orders, ws)."""
    _emit("rate_limited", scope=scope, key=key)


def ws_connection(*, channel: str, opened: bool) -> None:
    """A WebSocket on ``channel`` opened (``opened``) or closed."""
    _emit("ws_connection", channel=channel, opened="1" if opened else "0")


def ws_message(*, channel: str, direction: str) -> None:
    """A WebSocket message went ``direction`` (in or out) on ``channel``."""
    _emit("ws_message", channel=channel, direction=direction)


def broker_connection(*, connection_id: str, broker: str, state: str) -> None:
    """A broker connection changed state (``connected``, ``disconnected``, ``revoked``)."""
    _emit("broker_connection", connection_id=connection_id, broker=broker, state=state)


def order_outcome(*, broker: str, status: str, source: str) -> None:
    """An order reached a status worth counting. ``source``: user, client or copy."""
    _emit("order_outcome", broker=broker, status=status, source=source)


def copy_latency(*, signal_us: float | None, engine_us: float | None, broker_us: float | None) -> None:
    """One copy's three durations (DESIGN "Latency accounting"); any may be unknown."""
    for segment, micros in (("signal", signal_us), ("engine", engine_us), ("broker", broker_us)):
        if micros is not None:
            _emit("copy_latency", micros, segment=segment)


def outbox_depth(*, depth: int) -> None:
    """Copy intents written but not yet answered by the broker."""
    _emit("outbox_depth", float(depth))


def reconcile_drift(*, subscription_id: str, drifted: int) -> None:
    """A copy reconciliation found ``drifted`` symbols out of line (0: in line)."""
    _emit("reconcile_drift", float(drifted), subscription_id=subscription_id)


def ledger_drift(*, account_id: str, currency: str, unexplained: str) -> None:
    """Ledger cash differs from the broker's by an unexplained amount (a Decimal as text)."""
    _emit("ledger_drift", account_id=account_id, currency=currency, unexplained=unexplained)


def audit_verify_failed(*, sequence: int, reason: str) -> None:
    """``brokerlink audit verify`` (or the periodic check) found the chain broken at ``sequence``."""
    _emit("audit_verify_failed", float(sequence), reason=reason)
