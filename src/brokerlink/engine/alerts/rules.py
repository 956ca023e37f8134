"""The alert rules: pure, in-memory, fed one observation at a time.

:class:`RuleEvaluator` turns :class:`~brokerlink.observe.Observation` s into :class:`Firing` s (a
rule's condition holds for a subject) and :class:`Clearing` s (a condition that fired went away: a
broker reconnected, a reconciliation came back clean). It does no I/O and never awaits, so the
synchronous observation listener may run it inline (ADR 0019); the service stores what it returns.

Every window is bounded: counts are kept in 60 buckets per window (not one entry per event), each
rule tracks at most ``max_keys`` subjects (the least recently seen go first), and
:meth:`RuleEvaluator.tick` drops subjects whose window has emptied. Time is the injected clock's
monotonic counter, read when the observation arrives, so tests hold time still with a manual clock.

A count rule that fired fires again for the same subject at most once per window while the
condition holds: under a brute-force attack the alert's ``count`` and ``last_seen`` move, but the
store sees one write per window, not one per failed login.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from brokerlink.observe import Observation
from brokerlink.store.models_alerts import AlertSeverity

_NS = 1_000_000_000
_BUCKETS = 60
_MAX_LATENCY_SAMPLES = 100_000
_DOWN_STATES = frozenset({"disconnected", "degraded", "connecting"})
"""Connection states that count as down: anything between losing the broker and having it back."""
_CLEAR_STATES = frozenset({"connected", "revoked"})
"""A revoked link is down on purpose (the broker or the user ended it): not an outage to alert on."""


class Rule(StrEnum):
    """The alert rules (issue 6 item 4). The value is the ``rule`` stored with each alert."""

    AUTH_FAILURES_PRINCIPAL = "auth_failures_principal"
    AUTH_FAILURES_IP = "auth_failures_ip"
    CLIENT_TRAFFIC = "client_traffic"
    BROKER_DOWN = "broker_down"
    COPY_LATENCY = "copy_latency"
    RECONCILE_DRIFT = "reconcile_drift"
    LEDGER_DRIFT = "ledger_drift"
    AUDIT_VERIFY_FAILED = "audit_verify_failed"


class Firing(msgspec.Struct, frozen=True, kw_only=True):
    """A rule's condition holds for ``subject``: store (or update) the alert ``rule:subject``."""

    rule: Rule
    subject: str
    severity: AlertSeverity
    message: str
    labels: dict[str, str]

    @property
    def dedup_key(self) -> str:
        """The key that makes a second firing update the active alert instead of adding one."""
        return dedup_key(self.rule, self.subject)


class Clearing(msgspec.Struct, frozen=True, kw_only=True):
    """A condition that fired for ``subject`` is over: its active alert resolves itself."""

    rule: Rule
    subject: str

    @property
    def dedup_key(self) -> str:
        """The key of the alert to resolve."""
        return dedup_key(self.rule, self.subject)


Verdict = Firing | Clearing


def dedup_key(rule: Rule | str, subject: str) -> str:
    """``rule:subject``, cut to the column's 300 characters (a subject is at most 256)."""
    return f"{rule}:{subject[:256]}"


class Thresholds(msgspec.Struct, frozen=True, kw_only=True):
    """The rules' thresholds (settings ``alert_*``)."""

    auth_failures: int = 20
    auth_window_s: int = 300
    client_requests: int = 3000
    client_window_s: int = 60
    broker_down_s: float = 60.0
    copy_latency_ms: float = 500.0
    copy_latency_window_s: int = 300
    reconcile_drift: int = 1
    max_keys: int = 10_000


class SlidingCounter:
    """Events per key over a sliding window, in ``_BUCKETS`` buckets: memory per key is bounded.

    The count is exact to within one bucket (a sixtieth of the window) at the window's old edge.
    """

    def __init__(self, window_s: float, *, max_keys: int) -> None:
        self.window_ns = max(int(window_s * _NS), _BUCKETS)
        self.bucket_ns = self.window_ns // _BUCKETS
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Buckets] = OrderedDict()

    def add(self, key: str, now_ns: int) -> int:
        """Count one event for ``key`` now; returns the count in the window, this one included."""
        buckets = self._keys.get(key)
        if buckets is None:
            buckets = self._keys[key] = _Buckets()
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        index = now_ns // self.bucket_ns
        buckets.evict_before(index - _BUCKETS + 1)
        buckets.add(index)
        return buckets.total

    def prune(self, now_ns: int) -> None:
        """Forget keys with nothing left in the window."""
        oldest = now_ns // self.bucket_ns - _BUCKETS + 1
        for key in [k for k, b in self._keys.items() if b.newest() < oldest]:
            del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(slots=True)
class _Buckets:
    entries: deque[list[int]] = field(default_factory=deque)  # [bucket index, count], oldest first
    total: int = 0

    def add(self, index: int) -> None:
        if self.entries and self.entries[-1][0] == index:
            self.entries[-1][1] += 1
        else:
            self.entries.append([index, 1])
        self.total += 1

    def evict_before(self, index: int) -> None:
        while self.entries and self.entries[0][0] < index:
            self.total -= self.entries.popleft()[1]

    def newest(self) -> int:
        return self.entries[-1][0] if self.entries else -(2**62)


@dataclass(slots=True)
class _Down:
    since_ns: int
    broker: str
    fired: bool = False


class _LatencyWindow:
    """Engine latencies over a time window, and how many exceed the threshold (kept as they come and go).

    The nearest-rank p99 of ``n`` samples is the ``ceil(0.99 n)``-th smallest, so it exceeds the
    threshold exactly when at least ``n - ceil(0.99 n) + 1`` samples do: an O(1) test per copy, no
    sort. Below 100 samples that is a single one: a lone slow copy is enough.
    """

    def __init__(self, window_s: float, threshold_us: float) -> None:
        self.window_ns = int(window_s * _NS)
        self.threshold_us = threshold_us
        self.samples: deque[tuple[int, float]] = deque()
        self.above = 0

    def add(self, now_ns: int, micros: float) -> bool:
        self.evict(now_ns)
        if len(self.samples) >= _MAX_LATENCY_SAMPLES:
            self._drop_oldest()
        self.samples.append((now_ns, micros))
        if micros > self.threshold_us:
            self.above += 1
        n = len(self.samples)
        return self.above >= n - math.ceil(0.99 * n) + 1

    def p99_us(self) -> float:
        ordered = sorted(v for _, v in self.samples)
        return ordered[math.ceil(0.99 * len(ordered)) - 1] if ordered else 0.0

    def evict(self, now_ns: int) -> None:
        while self.samples and self.samples[0][0] <= now_ns - self.window_ns:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, micros = self.samples.popleft()
        if micros > self.threshold_us:
            self.above -= 1


class RuleEvaluator:
    """All rules over one stream of observations. Not thread-safe: the service serializes calls."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        t = thresholds
        self._auth_principal = SlidingCounter(t.auth_window_s, max_keys=t.max_keys)
        self._auth_ip = SlidingCounter(t.auth_window_s, max_keys=t.max_keys)
        self._client = SlidingCounter(t.client_window_s, max_keys=t.max_keys)
        self._fired_at: OrderedDict[str, int] = OrderedDict()  # dedup key -> when a count rule last fired
        self._down: OrderedDict[str, _Down] = OrderedDict()  # broker connection id -> since when down
        self._latency = _LatencyWindow(t.copy_latency_window_s, t.copy_latency_ms * 1000)

    def observe(self, observation: Observation, now_ns: int) -> list[Verdict]:
        """What ``observation`` (arriving at monotonic ``now_ns``) makes the rules say; usually nothing."""
        handler = self._handlers.get(observation.kind)
        return handler(self, observation, now_ns) if handler is not None else []

    def tick(self, now_ns: int) -> list[Verdict]:
        """The time-based rules (a broker down for too long), and eviction of emptied windows."""
        out: list[Verdict] = []
        limit_ns = int(self.thresholds.broker_down_s * _NS)
        for connection_id, down in self._down.items():
            if not down.fired and now_ns - down.since_ns >= limit_ns:
                down.fired = True
                seconds = (now_ns - down.since_ns) // _NS
                out.append(
                    Firing(
                        rule=Rule.BROKER_DOWN,
                        subject=connection_id,
                        severity=AlertSeverity.CRITICAL,
                        message=f"{down.broker} connection {connection_id} has been down for {seconds} s",
                        labels={"connection_id": connection_id, "broker": down.broker, "down_s": str(seconds)},
                    )
                )
        for counter in (self._auth_principal, self._auth_ip, self._client):
            counter.prune(now_ns)
        t = self.thresholds
        window_ns = max(t.auth_window_s, t.client_window_s, t.copy_latency_window_s) * _NS
        for key in [k for k, at in self._fired_at.items() if now_ns - at >= window_ns]:
            del self._fired_at[key]
        self._latency.evict(now_ns)
        return out

    # --- one handler per observation kind ------------------------------------------------------

    def _auth_failure(self, observation: Observation, now_ns: int) -> list[Verdict]:
        t = self.thresholds
        out: list[Verdict] = []
        principal = observation.labels.get("principal", "")
        ip = observation.labels.get("ip", "")
        for rule, counter, subject, what in (
            (Rule.AUTH_FAILURES_PRINCIPAL, self._auth_principal, principal.strip().lower(), "principal"),
            (Rule.AUTH_FAILURES_IP, self._auth_ip, ip, "IP"),
        ):
            if not subject:
                continue
            count = counter.add(subject, now_ns)
            if count >= t.auth_failures and self._may_fire(dedup_key(rule, subject), now_ns, t.auth_window_s):
                out.append(
                    Firing(
                        rule=rule,
                        subject=subject,
                        severity=AlertSeverity.WARNING,
                        message=f"{count} failed authentications for {what} {subject} within {t.auth_window_s} s",
                        labels={what.lower(): subject, "failures": str(count), "window_s": str(t.auth_window_s)},
                    )
                )
        return out

    def _http_request(self, observation: Observation, now_ns: int) -> list[Verdict]:
        client_id = observation.labels.get("client_id", "")
        if not client_id:  # first-party sessions are limited per user and IP, not watched here
            return []
        t = self.thresholds
        count = self._client.add(client_id, now_ns)
        key = dedup_key(Rule.CLIENT_TRAFFIC, client_id)
        if count < t.client_requests or not self._may_fire(key, now_ns, t.client_window_s):
            return []
        return [
            Firing(
                rule=Rule.CLIENT_TRAFFIC,
                subject=client_id,
                severity=AlertSeverity.WARNING,
                message=f"client {client_id} made {count} requests within {t.client_window_s} s",
                labels={"client_id": client_id, "requests": str(count), "window_s": str(t.client_window_s)},
            )
        ]

    def _broker_connection(self, observation: Observation, now_ns: int) -> list[Verdict]:
        connection_id = observation.labels.get("connection_id", "")
        state = observation.labels.get("state", "")
        if not connection_id:
            return []
        if state in _DOWN_STATES:
            if connection_id not in self._down:  # keep the first moment it went down
                self._down[connection_id] = _Down(since_ns=now_ns, broker=observation.labels.get("broker", ""))
                while len(self._down) > self.thresholds.max_keys:
                    self._down.popitem(last=False)
            return []
        if state in _CLEAR_STATES:
            down = self._down.pop(connection_id, None)
            if down is not None and down.fired:
                return [Clearing(rule=Rule.BROKER_DOWN, subject=connection_id)]
        return []

    def _copy_latency(self, observation: Observation, now_ns: int) -> list[Verdict]:
        if observation.labels.get("segment") != "engine" or observation.value is None:
            return []
        t = self.thresholds
        if not self._latency.add(now_ns, observation.value):
            return []
        if not self._may_fire(dedup_key(Rule.COPY_LATENCY, "engine"), now_ns, t.copy_latency_window_s):
            return []
        p99_ms = self._latency.p99_us() / 1000
        return [
            Firing(
                rule=Rule.COPY_LATENCY,
                subject="engine",
                severity=AlertSeverity.WARNING,
                message=(
                    f"copy engine latency p99 {p99_ms:.1f} ms over {len(self._latency.samples)} copies"
                    f" exceeds {t.copy_latency_ms:g} ms"
                ),
                labels={
                    "segment": "engine",
                    "p99_ms": f"{p99_ms:.3f}",
                    "threshold_ms": f"{t.copy_latency_ms:g}",
                    "copies": str(len(self._latency.samples)),
                },
            )
        ]

    def _reconcile_drift(self, observation: Observation, now_ns: int) -> list[Verdict]:  # noqa: ARG002 (same signature as the others)
        subscription_id = observation.labels.get("subscription_id", "")
        drifted = int(observation.value or 0)
        if not subscription_id:
            return []
        if drifted < self.thresholds.reconcile_drift:
            return [Clearing(rule=Rule.RECONCILE_DRIFT, subject=subscription_id)] if drifted == 0 else []
        return [
            Firing(
                rule=Rule.RECONCILE_DRIFT,
                subject=subscription_id,
                severity=AlertSeverity.WARNING,
                message=f"reconciliation of subscription {subscription_id} found {drifted} symbol(s) out of line",
                labels={"subscription_id": subscription_id, "drifted": str(drifted)},
            )
        ]

    def _ledger_drift(self, observation: Observation, now_ns: int) -> list[Verdict]:  # noqa: ARG002
        account_id = observation.labels.get("account_id", "")
        currency = observation.labels.get("currency", "")
        unexplained = observation.labels.get("unexplained", "")
        return [
            Firing(
                rule=Rule.LEDGER_DRIFT,
                subject=f"{account_id}:{currency}",
                severity=AlertSeverity.CRITICAL,
                message=f"ledger cash of {account_id} in {currency} differs from the broker's by {unexplained}",
                labels={"account_id": account_id, "currency": currency, "unexplained": unexplained},
            )
        ]

    def _audit_verify_failed(self, observation: Observation, now_ns: int) -> list[Verdict]:  # noqa: ARG002
        sequence = str(int(observation.value)) if observation.value is not None else ""
        reason = observation.labels.get("reason", "")
        return [
            Firing(
                rule=Rule.AUDIT_VERIFY_FAILED,
                subject="audit_chain",
                severity=AlertSeverity.CRITICAL,
                message=f"audit verification failed at record {sequence}: {reason}",
                labels={"sequence": sequence, "reason": reason},
            )
        ]

    def _may_fire(self, key: str, now_ns: int, window_s: float) -> bool:
        """Whether a count rule may fire for ``key`` now (never, or not within the last window)."""
        last = self._fired_at.get(key)
        if last is not None and now_ns - last < int(window_s * _NS):
            return False
        self._fired_at[key] = now_ns
        self._fired_at.move_to_end(key)
        while len(self._fired_at) > 3 * self.thresholds.max_keys:
            self._fired_at.popitem(last=False)
        return True

    _handlers = {  # noqa: RUF012 (a dispatch table, never mutated)
        "auth_failure": _auth_failure,
        "http_request": _http_request,
        "broker_connection": _broker_connection,
        "copy_latency": _copy_latency,
        "reconcile_drift": _reconcile_drift,
        "ledger_drift": _ledger_drift,
        "audit_verify_failed": _audit_verify_failed,
    }
