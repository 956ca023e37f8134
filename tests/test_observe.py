"""Observations (brokerlink.observe): listeners get each one, a failing listener is isolated, metrics move.

The registry is per process, so each test reads a metric before and after (or uses labels no
other test uses) rather than expecting absolute values.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from brokerlink import observe
from brokerlink.observe import Observation


def sample(name: str, **labels: str) -> float:
    """A sample's current value (0 for a series that does not exist yet)."""
    return observe.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def seen() -> Iterator[list[Observation]]:
    """Every observation made while the test runs."""
    got: list[Observation] = []
    remove = observe.add_listener(got.append)
    yield got
    remove()


def test_a_listener_gets_each_observation_with_its_labels_and_value(seen: list[Observation]) -> None:
    observe.auth_failure(principal="eve@example.com", ip="203.0.113.9", reason="password")
    observe.http_request(route="/v1/orders/{order_id}", method="GET", status=404, duration_s=0.25, client_id=None)

    assert [o.kind for o in seen] == ["auth_failure", "http_request"]
    assert seen[0].labels == {"principal": "eve@example.com", "ip": "203.0.113.9", "reason": "password"}
    assert seen[0].value is None
    assert seen[1].labels == {"route": "/v1/orders/{order_id}", "method": "GET", "status": "404", "client_id": ""}
    assert seen[1].value == 0.25


def test_a_removed_listener_hears_nothing_more() -> None:
    got: list[Observation] = []
    remove = observe.add_listener(got.append)
    observe.rate_limited(scope="ip", key="ip:198.51.100.1")
    remove()
    remove()  # twice is harmless
    observe.rate_limited(scope="ip", key="ip:198.51.100.1")
    assert len(got) == 1


def test_a_raising_listener_is_logged_and_skipped_and_the_caller_and_later_listeners_go_on(
    seen: list[Observation], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: Observation) -> None:
        raise RuntimeError("a bug in an alert rule")

    remove = observe.add_listener(broken)
    after: list[Observation] = []
    remove_after = observe.add_listener(after.append)
    try:
        with caplog.at_level(logging.ERROR, logger="brokerlink.observe"):
            observe.auth_success(principal="alice@example.com", ip="127.0.0.1", method="password")
    finally:
        remove()
        remove_after()
    assert [o.kind for o in seen] == ["auth_success"]
    assert [o.kind for o in after] == ["auth_success"]
    assert "observation listener failed" in caplog.text
    assert "a bug in an alert rule" in caplog.text


def test_metrics_count_auth_failures_by_reason_only() -> None:
    before = sample("brokerlink_auth_failures_total", reason="mfa_code")
    observe.auth_failure(principal="a@example.com", ip="192.0.2.1", reason="mfa_code")
    observe.auth_failure(principal="b@example.com", ip="192.0.2.2", reason="mfa_code")
    assert sample("brokerlink_auth_failures_total", reason="mfa_code") == before + 2
    text = observe.exposition()[0].decode()
    assert "a@example.com" not in text
    assert "192.0.2.1" not in text  # principals and addresses go to listeners, never into label sets


def test_metrics_time_requests_by_route_method_and_status() -> None:
    route = f"/test/{uuid.uuid4().hex}/{{item_id}}"
    observe.http_request(route=route, method="POST", status=201, duration_s=0.004, client_id="app_1")
    observe.http_request(route=route, method="POST", status=201, duration_s=0.3, client_id=None)
    labels = {"route": route, "method": "POST", "status": "201"}
    assert sample("brokerlink_http_requests_total", **labels) == 2
    assert sample("brokerlink_http_request_duration_seconds_count", **labels) == 2
    assert sample("brokerlink_http_request_duration_seconds_bucket", **labels, le="0.005") == 1
    assert sample("brokerlink_http_request_duration_seconds_sum", **labels) == pytest.approx(0.304)


def test_copy_latency_is_observed_in_seconds_per_segment_from_100_microseconds() -> None:
    before = {s: sample("brokerlink_copy_latency_seconds_count", segment=s) for s in ("signal", "engine", "broker")}
    low = sample("brokerlink_copy_latency_seconds_bucket", segment="engine", le="0.0001")
    observe.copy_latency(signal_us=2_500.0, engine_us=80.0, broker_us=None)
    assert sample("brokerlink_copy_latency_seconds_count", segment="signal") == before["signal"] + 1
    assert sample("brokerlink_copy_latency_seconds_count", segment="engine") == before["engine"] + 1
    assert sample("brokerlink_copy_latency_seconds_count", segment="broker") == before["broker"]  # unknown: not 0
    assert sample("brokerlink_copy_latency_seconds_bucket", segment="engine", le="0.0001") == low + 1
    assert sample("brokerlink_copy_latency_seconds_bucket", segment="engine", le="10.0") >= 1


def test_broker_gauge_is_1_when_up_0_otherwise_and_gone_when_revoked(seen: list[Observation]) -> None:
    connection = "con_" + uuid.uuid4().hex
    observe.broker_connection(connection_id=connection, broker="sim", state="connected")
    assert sample("brokerlink_broker_connection_up", broker="sim", connection_id=connection) == 1
    # A failed reconnect no longer knows the broker: the series it set stays the one that moves.
    observe.broker_connection(connection_id=connection, broker="", state="disconnected")
    assert sample("brokerlink_broker_connection_up", broker="sim", connection_id=connection) == 0
    assert (
        observe.REGISTRY.get_sample_value(
            "brokerlink_broker_connection_up", {"broker": "", "connection_id": connection}
        )
        is None
    )
    assert seen[-1].labels["broker"] == "sim"
    observe.broker_connection(connection_id=connection, broker="sim", state="revoked")
    assert (
        observe.REGISTRY.get_sample_value(
            "brokerlink_broker_connection_up", {"broker": "sim", "connection_id": connection}
        )
        is None
    )


def test_the_other_metrics_move() -> None:
    sub = "sub_" + uuid.uuid4().hex
    orders = sample("brokerlink_order_outcomes_total", broker="sim", status="filled", source="copy")
    limited = sample("brokerlink_rate_limited_total", scope="orders")
    ledger = sample("brokerlink_ledger_drift_total", currency="USD")
    audit = sample("brokerlink_audit_verify_failures_total")
    ws = sample("brokerlink_ws_connections", channel="orders")
    observe.order_outcome(broker="sim", status="filled", source="copy")
    observe.rate_limited(scope="orders", key="orders:usr_1:acc_1")
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="0.01")
    observe.audit_verify_failed(sequence=42, reason="hash mismatch")
    observe.ws_connection(channel="orders", opened=True)
    observe.ws_connection(channel="orders", opened=True)
    observe.ws_connection(channel="orders", opened=False)
    observe.ws_message(channel="orders", direction="out")
    observe.reconcile_drift(subscription_id=sub, drifted=3)
    observe.outbox_depth(depth=7)

    assert sample("brokerlink_order_outcomes_total", broker="sim", status="filled", source="copy") == orders + 1
    assert sample("brokerlink_rate_limited_total", scope="orders") == limited + 1
    assert sample("brokerlink_ledger_drift_total", currency="USD") == ledger + 1
    assert sample("brokerlink_audit_verify_failures_total") == audit + 1
    assert sample("brokerlink_ws_connections", channel="orders") == ws + 1
    assert sample("brokerlink_ws_messages_total", channel="orders", direction="out") >= 1
    assert sample("brokerlink_copy_reconcile_drift", subscription_id=sub) == 3
    assert sample("brokerlink_copy_outbox_depth") == 7
    observe.reconcile_drift(subscription_id=sub, drifted=0)
    assert sample("brokerlink_copy_reconcile_drift", subscription_id=sub) == 0


def test_the_registry_is_observes_own_not_the_global_one() -> None:
    observe.audit_verify_failed(sequence=1, reason="test")
    assert prometheus_client.REGISTRY.get_sample_value("brokerlink_audit_verify_failures_total") is None
    body, content_type = observe.exposition()
    assert content_type.startswith("text/plain")
    assert b"brokerlink_audit_verify_failures_total" in body
    assert b"python_gc_objects_collected_total" not in body  # nothing a library registered globally


# --- the Grafana dashboard and the Prometheus config in deploy/ -----------------------------------

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
_METRIC = re.compile(r"\bbrokerlink_[a-z0-9_]+\b")


def _exposed_names() -> set[str]:
    """Every series name the registry can expose (counters' ``_total``, histograms' parts), with or
    without any series yet: a labelled metric nothing has touched still belongs to the code."""
    names: set[str] = set()
    for family in observe.REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
    return names


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana" / "brokerlink.json").read_text())
    return loaded


def test_every_metric_the_dashboard_queries_is_one_the_code_exposes() -> None:
    exposed = _exposed_names()
    queried: set[str] = set()
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            names = set(_METRIC.findall(target["expr"]))
            assert names, f"panel {panel['title']!r} queries no brokerlink metric: {target['expr']}"
            assert names <= exposed, f"panel {panel['title']!r} queries unknown metrics {names - exposed}"
            queried |= names
    # And the other way: every metric brokerlink exposes is on the dashboard somewhere.
    families = {f.name for f in observe.REGISTRY.collect()}
    assert {name for name in families if not any(q.startswith(name) for q in queried)} == set()


def test_the_dashboard_is_a_grafana_dashboard_model() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]  # Grafana's grid is 24 columns wide
        assert grid["h"] > 0, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    for quantile in ("0.5", "0.99"):  # copy latency p50 and p99 per segment
        assert (
            f"histogram_quantile({quantile}, sum by (le, segment) (rate(brokerlink_copy_latency_seconds_bucket" in exprs
        )
    assert 'status=~"5.."' in exprs


def test_prometheus_scrapes_metrics_with_the_bearer_token_from_a_file() -> None:
    # Read as lines rather than YAML: PyYAML is not a dependency of brokerlink.
    lines = [line.split("#")[0].strip() for line in (DEPLOY / "prometheus.yml").read_text().splitlines()]
    assert "- job_name: brokerlink" in lines
    assert "metrics_path: /metrics" in lines
    assert "type: Bearer" in lines
    assert any(line.startswith("credentials_file: /") for line in lines)  # the token itself is never in the file
    assert not any(line.startswith("credentials:") for line in lines)
