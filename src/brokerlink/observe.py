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

The metrics live in :data:`REGISTRY`, a registry this module owns rather than prometheus_client's
global one: creating the app again (every test does) must not register the metrics twice, and
``/metrics`` shows exactly brokerlink's metrics and nothing a library registered. Metric labels are
bounded by design: routes are templates, failures are counted by reason (the principal and IP go
to the listeners, which keep their own short windows), and copy latency is by segment only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_log = logging.getLogger("brokerlink.observe")

# --- the metrics ------------------------------------------------------------------------------

REGISTRY = CollectorRegistry(auto_describe=True)
"""Every brokerlink metric, and nothing else: what ``/metrics`` exposes."""

HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COPY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""100 µs to 10 s: an engine step takes tens of microseconds, a broker's answer can take seconds."""
UNMATCHED_ROUTE = "<unmatched>"
"""The route label of a request no route matched (a 404): never the raw path, which anyone can vary."""

HTTP_REQUESTS = Counter(
    "brokerlink_http_requests_total", "HTTP requests answered", ("route", "method", "status"), registry=REGISTRY
)
HTTP_DURATION = Histogram(
    "brokerlink_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ("route", "method", "status"),
    buckets=HTTP_BUCKETS_S,
    registry=REGISTRY,
)
WS_CONNECTIONS = Gauge("brokerlink_ws_connections", "Open WebSocket connections", ("channel",), registry=REGISTRY)
WS_MESSAGES = Counter("brokerlink_ws_messages_total", "WebSocket messages", ("channel", "direction"), registry=REGISTRY)
RATE_LIMITED = Counter("brokerlink_rate_limited_total", "Requests refused with 429", ("scope",), registry=REGISTRY)
AUTH_FAILURES = Counter(
    "brokerlink_auth_failures_total",
    "Failed sign-ins, MFA codes and locked-out attempts",
    ("reason",),
    registry=REGISTRY,
)
AUTH_SUCCESSES = Counter("brokerlink_auth_successes_total", "Completed sign-ins", ("method",), registry=REGISTRY)
BROKER_UP = Gauge(
    "brokerlink_broker_connection_up",
    "Whether a broker connection is up (1) or not (0); a revoked connection has no series",
    ("broker", "connection_id"),
    registry=REGISTRY,
)
ORDER_OUTCOMES = Counter(
    "brokerlink_order_outcomes_total",
    "Orders reaching a final status",
    ("broker", "status", "source"),
    registry=REGISTRY,
)
COPY_LATENCY = Histogram(
    "brokerlink_copy_latency_seconds",
    "Copy latency by segment: signal (venue fill to engine), engine (to the adapter), broker (to its answer)",
    ("segment",),
    buckets=COPY_BUCKETS_S,
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "brokerlink_copy_outbox_depth", "Copy intents written but not yet answered by the broker", registry=REGISTRY
)
RECONCILE_DRIFT = Gauge(
    "brokerlink_copy_reconcile_drift",
    "Symbols out of line at a subscription's last reconciliation",
    ("subscription_id",),
    registry=REGISTRY,
)
LEDGER_DRIFT = Counter(
    "brokerlink_ledger_drift_total",
    "Unexplained differences between ledger and broker cash",
    ("currency",),
    registry=REGISTRY,
)
AUDIT_VERIFY_FAILURES = Counter(
    "brokerlink_audit_verify_failures_total", "Audit chain verifications that found a broken chain", registry=REGISTRY
)

_COPY_SEGMENTS = {segment: COPY_LATENCY.labels(segment) for segment in ("signal", "engine", "broker")}
"""The three series made up front: each copy observes them, and a label lookup costs a lock and a hash."""
_brokers: dict[str, str] = {}
"""The broker of each connection seen, for the callers that no longer know it (a failed reconnect)."""


def exposition() -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


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
    if not _listeners:  # the copy engine's hot path calls here: no listener, no Observation to build
        return
    observation = Observation(kind=kind, labels=labels, value=value)
    for listener in tuple(_listeners):
        try:
            listener(observation)
        except Exception:  # noqa: BLE001 (a listener's bug must not fail the caller; it is logged)
            _log.exception("observation listener failed", extra={"kind": kind})


# --- the observations -------------------------------------------------------------------------
# Each function below is the contract: its name is the observation's kind, its keyword arguments
# its labels. Each also updates its metrics, before the listeners run.


def auth_failure(*, principal: str, ip: str, reason: str) -> None:
    """A sign-in, MFA or token check failed. ``principal`` is the email or client id tried.

    ``reason``: ``password``, ``mfa_code``, ``locked_out`` (refused before checking; ``principal``
    is then the lockout's hashed account subject)."""
    AUTH_FAILURES.labels(reason).inc()
    _emit("auth_failure", principal=principal, ip=ip, reason=reason)


def auth_success(*, principal: str, ip: str, method: str) -> None:
    """A sign-in (``method``: password, mfa, token) succeeded."""
    AUTH_SUCCESSES.labels(method).inc()
    _emit("auth_success", principal=principal, ip=ip, method=method)


def http_request(*, route: str, method: str, status: int, duration_s: float, client_id: str | None) -> None:
    """A request was answered. ``route`` is the route template, never the raw path (cardinality)."""
    code = str(status)
    HTTP_REQUESTS.labels(route, method, code).inc()
    HTTP_DURATION.labels(route, method, code).observe(duration_s)
    _emit("http_request", duration_s, route=route, method=method, status=str(status), client_id=client_id or "")


def rate_limited(*, scope: str, key: str) -> None:
    """A request was refused with 429. ``scope`` names the limit (user, client, ip, orders, ws, ws_messages)."""
    RATE_LIMITED.labels(scope).inc()
    _emit("rate_limited", scope=scope, key=key)


def ws_connection(*, channel: str, opened: bool) -> None:
    """A WebSocket on ``channel`` opened (``opened``) or closed."""
    WS_CONNECTIONS.labels(channel).inc(1 if opened else -1)
    _emit("ws_connection", channel=channel, opened="1" if opened else "0")


def ws_message(*, channel: str, direction: str, count: int = 1) -> None:
    """A WebSocket message (``count`` of them) went ``direction`` (in or out) on ``channel``."""
    WS_MESSAGES.labels(channel, direction).inc(count)
    _emit("ws_message", None if count == 1 else count, channel=channel, direction=direction)


def broker_connection(*, connection_id: str, broker: str, state: str) -> None:
    """A broker connection changed state (``connected``, ``disconnected``, ``revoked``).

    ``disconnected`` is every state that is not up: dropped, reconnecting, or not yet connected.
    An empty ``broker`` means the caller no longer knows it; the one seen last for the connection
    is used (a gauge series keyed by a wrong broker would read "down" forever)."""
    broker = broker or _brokers.get(connection_id, "")
    if state == "revoked":
        _brokers.pop(connection_id, None)
        if broker:
            with contextlib.suppress(KeyError):  # never seen up or down in this process
                BROKER_UP.remove(broker, connection_id)
    else:
        if broker:
            _brokers[connection_id] = broker
        BROKER_UP.labels(broker, connection_id).set(1 if state == "connected" else 0)
    _emit("broker_connection", connection_id=connection_id, broker=broker, state=state)


def order_outcome(*, broker: str, status: str, source: str) -> None:
    """An order reached a status worth counting. ``source``: user, client or copy."""
    ORDER_OUTCOMES.labels(broker, status, source).inc()
    _emit("order_outcome", broker=broker, status=status, source=source)


def copy_latency(*, signal_us: float | None, engine_us: float | None, broker_us: float | None) -> None:
    """One copy's three durations (DESIGN "Latency accounting"); any may be unknown."""
    for segment, micros in (("signal", signal_us), ("engine", engine_us), ("broker", broker_us)):
        if micros is not None:
            _COPY_SEGMENTS[segment].observe(micros / 1_000_000)
            _emit("copy_latency", micros, segment=segment)


def outbox_depth(*, depth: int) -> None:
    """Copy intents written but not yet answered by the broker (``/metrics`` reads it at each scrape)."""
    OUTBOX_DEPTH.set(depth)
    _emit("outbox_depth", float(depth))


def reconcile_drift(*, subscription_id: str, drifted: int) -> None:
    """A copy reconciliation found ``drifted`` symbols out of line (0: in line)."""
    RECONCILE_DRIFT.labels(subscription_id).set(drifted)
    _emit("reconcile_drift", float(drifted), subscription_id=subscription_id)


def ledger_drift(*, account_id: str, currency: str, unexplained: str) -> None:
    """Ledger cash differs from the broker's by an unexplained amount (a Decimal as text)."""
    LEDGER_DRIFT.labels(currency).inc()
    _emit("ledger_drift", account_id=account_id, currency=currency, unexplained=unexplained)


def audit_verify_failed(*, sequence: int, reason: str) -> None:
    """``brokerlink audit verify`` (or the periodic check) found the chain broken at ``sequence``."""
    AUDIT_VERIFY_FAILURES.inc()
    _emit("audit_verify_failed", float(sequence), reason=reason)
