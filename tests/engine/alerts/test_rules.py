"""The alert rules on their own: thresholds, windows, refiring, clearing and bounded memory."""

from __future__ import annotations

from brokerlink.engine.alerts.rules import Clearing, Firing, Rule, RuleEvaluator, SlidingCounter, Thresholds, Verdict
from brokerlink.observe import Observation

S = 1_000_000_000


def _auth(principal: str = "mallory@example.com", ip: str = "203.0.113.9") -> Observation:
    return Observation("auth_failure", {"principal": principal, "ip": ip, "reason": "password"})


def _fired(verdicts: list[Verdict]) -> list[tuple[Rule, str]]:
    return [(v.rule, v.subject) for v in verdicts if isinstance(v, Firing)]


def test_auth_failures_fire_at_the_threshold_per_principal_and_per_ip_and_once_per_window() -> None:
    rules = RuleEvaluator(Thresholds(auth_failures=20, auth_window_s=300))
    for _ in range(19):
        assert rules.observe(_auth(), 0) == []
    assert _fired(rules.observe(_auth(), 0)) == [
        (Rule.AUTH_FAILURES_PRINCIPAL, "mallory@example.com"),
        (Rule.AUTH_FAILURES_IP, "203.0.113.9"),
    ]
    for _ in range(30):  # the attack goes on: no second firing within the window
        assert rules.observe(_auth(), 10 * S) == []
    # A window later it still holds: the rule fires again (the store counts it on the same alert).
    assert len(_fired(rules.observe(_auth(), 301 * S))) == 2


def test_principal_and_ip_count_apart() -> None:
    rules = RuleEvaluator(Thresholds(auth_failures=5, auth_window_s=60))
    fired: list[tuple[Rule, str]] = []
    for n in range(5):  # one account tried from five addresses
        fired += _fired(rules.observe(_auth(ip=f"198.51.100.{n}"), 0))
    assert fired == [(Rule.AUTH_FAILURES_PRINCIPAL, "mallory@example.com")]
    for n in range(5):  # five accounts tried from one address
        fired += _fired(rules.observe(_auth(principal=f"user{n}@example.com", ip="192.0.2.1"), 0))
    assert fired[-1] == (Rule.AUTH_FAILURES_IP, "192.0.2.1")


def test_failures_outside_the_window_do_not_count() -> None:
    rules = RuleEvaluator(Thresholds(auth_failures=10, auth_window_s=60))
    for _ in range(9):
        rules.observe(_auth(), 0)
    assert rules.observe(_auth(), 61 * S) == []  # the nine are a window old


def test_client_traffic_counts_only_requests_of_clients() -> None:
    rules = RuleEvaluator(Thresholds(client_requests=100, client_window_s=60))

    def request(client_id: str) -> Observation:
        labels = {"route": "/v1/accounts", "method": "GET", "status": "200", "client_id": client_id}
        return Observation("http_request", labels, 0.001)

    for _ in range(500):
        assert rules.observe(request(""), 0) == []  # first-party sessions
    for _ in range(99):
        assert rules.observe(request("cli_app"), 0) == []
    assert _fired(rules.observe(request("cli_app"), 0)) == [(Rule.CLIENT_TRAFFIC, "cli_app")]


def test_a_broker_down_fires_after_the_threshold_on_a_tick_and_clears_when_connected() -> None:
    rules = RuleEvaluator(Thresholds(broker_down_s=60))

    def state(value: str) -> Observation:
        return Observation("broker_connection", {"connection_id": "con_1", "broker": "sim", "state": value})

    rules.observe(state("disconnected"), 0)
    rules.observe(state("disconnected"), 30 * S)  # still down: the first moment counts
    assert rules.tick(59 * S) == []
    assert _fired(rules.tick(60 * S)) == [(Rule.BROKER_DOWN, "con_1")]
    assert rules.tick(120 * S) == []  # fired once per outage
    assert rules.observe(state("connected"), 121 * S) == [Clearing(rule=Rule.BROKER_DOWN, subject="con_1")]
    rules.observe(state("disconnected"), 200 * S)
    assert rules.observe(state("connected"), 210 * S) == []  # a blip shorter than the threshold: nothing
    assert rules.tick(400 * S) == []


def test_a_revoked_link_is_not_an_outage() -> None:
    rules = RuleEvaluator(Thresholds(broker_down_s=1))
    rules.observe(Observation("broker_connection", {"connection_id": "c", "broker": "sim", "state": "disconnected"}), 0)
    rules.observe(Observation("broker_connection", {"connection_id": "c", "broker": "sim", "state": "revoked"}), 0)
    assert rules.tick(10 * S) == []


def _latency(micros: float, segment: str = "engine") -> Observation:
    return Observation("copy_latency", {"segment": segment}, micros)


def test_copy_latency_fires_on_one_slow_copy_among_few() -> None:
    rules = RuleEvaluator(Thresholds(copy_latency_ms=5, copy_latency_window_s=60))
    for _ in range(50):
        assert rules.observe(_latency(1000), 0) == []
    assert rules.observe(_latency(10_000, segment="broker"), 0) == []  # only the engine segment is watched
    fired = rules.observe(_latency(6000), 0)
    assert _fired(fired) == [(Rule.COPY_LATENCY, "engine")]
    assert isinstance(fired[0], Firing)
    assert fired[0].labels["p99_ms"] == "6.000"


def test_copy_latency_is_the_p99_once_there_are_enough_copies() -> None:
    rules = RuleEvaluator(Thresholds(copy_latency_ms=5, copy_latency_window_s=60))
    for _ in range(198):
        rules.observe(_latency(1000), 0)
    # 200 copies: the p99 is the 198th smallest, so two slow ones are still within the 1% ...
    assert rules.observe(_latency(9000), 0) == []
    assert rules.observe(_latency(9000), 0) == []
    # ... and a third is not.
    assert _fired(rules.observe(_latency(9000), 0)) == [(Rule.COPY_LATENCY, "engine")]


def test_slow_copies_leave_the_window() -> None:
    rules = RuleEvaluator(Thresholds(copy_latency_ms=5, copy_latency_window_s=60))
    for _ in range(150):
        rules.observe(_latency(1000), 0)
    rules.observe(_latency(9000), 0)
    rules.observe(_latency(9000), 0)
    for _ in range(150):
        rules.observe(_latency(1000), 61 * S)
    assert rules.observe(_latency(9000), 61 * S) == []  # the earlier two slow ones are gone


def test_reconcile_drift_fires_on_any_drift_and_clears_on_a_clean_run() -> None:
    rules = RuleEvaluator(Thresholds(reconcile_drift=1))

    def run(drifted: int) -> Observation:
        return Observation("reconcile_drift", {"subscription_id": "sub_1"}, float(drifted))

    assert _fired(rules.observe(run(2), 0)) == [(Rule.RECONCILE_DRIFT, "sub_1")]
    assert rules.observe(run(0), 0) == [Clearing(rule=Rule.RECONCILE_DRIFT, subject="sub_1")]


def test_ledger_drift_and_audit_failures_always_fire() -> None:
    rules = RuleEvaluator(Thresholds())
    ledger = Observation("ledger_drift", {"account_id": "acc_1", "currency": "USD", "unexplained": "0.01"})
    audit = Observation("audit_verify_failed", {"reason": "hash mismatch"}, 42.0)
    assert _fired(rules.observe(ledger, 0)) == [(Rule.LEDGER_DRIFT, "acc_1:USD")]
    fired = rules.observe(audit, 0)
    assert _fired(fired) == [(Rule.AUDIT_VERIFY_FAILED, "audit_chain")]
    assert isinstance(fired[0], Firing)
    assert fired[0].labels == {"sequence": "42", "reason": "hash mismatch"}


def test_unwatched_observations_are_ignored() -> None:
    rules = RuleEvaluator(Thresholds())
    assert rules.observe(Observation("auth_success", {"principal": "a", "ip": "b", "method": "password"}), 0) == []


def test_windows_keep_a_bounded_number_of_keys_and_forget_empty_ones() -> None:
    counter = SlidingCounter(60, max_keys=10)
    for n in range(1000):
        counter.add(f"198.51.100.{n}", 0)
    assert len(counter) == 10
    assert counter.add("198.51.100.999", 0) == 2  # the most recent keys stay
    counter.prune(61 * S)
    assert len(counter) == 0


def test_the_rules_memory_is_bounded_under_a_spray_of_addresses() -> None:
    rules = RuleEvaluator(Thresholds(auth_failures=3, max_keys=50))
    for n in range(5000):
        rules.observe(_auth(principal=f"u{n}@example.com", ip=f"10.{n // 256 % 256}.{n % 256}.1"), n)
    assert len(rules._auth_principal) <= 50
    assert len(rules._auth_ip) <= 50
