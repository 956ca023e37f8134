"""Examples for the OpenAPI document, kept in one place so that route files need none.

Two kinds:

* **Schema examples.** :func:`schema_example` builds one example per component schema from the
  schema itself (so it has every field the schema has, and nothing else) and fills the values from
  :data:`FIELD_VALUES` by field name, from a field's own ``examples`` where a route declared one,
  and from :data:`SCHEMA_VALUES` where one resource deserves a telling value (a filled order, a
  skipped copy). A schema that changes changes its example with it; a test validates every example
  against its schema, so a value that stops fitting fails there rather than in a reader's client.
* **Problem examples.** :func:`problem_examples` renders the errors each status stands for with the
  error classes themselves (``to_problem``), so codes and titles cannot drift from what the server
  sends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from brokerlink.api.copy.http import PreconditionFailed, PreconditionRequired
from brokerlink.api.hardening import PageSizeTooLarge
from brokerlink.api.idempotency import IdempotencyKeyInUse, IdempotencyKeyReused
from brokerlink.api.scopes import InsufficientScope
from brokerlink.kit.errors import (
    BrokerlinkError,
    Conflict,
    Forbidden,
    InvalidInput,
    MalformedRequest,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    UnsupportedMediaType,
)

ULID: Final = "01JQ8Z6W3N4M5P6Q7R8S9T0V1W"
"""The ULID every example id carries (ids are ``<prefix>_<ULID>``, kit/ids.py)."""
TIME: Final = "2025-03-14T09:30:00Z"
"""Every example time: RFC 3339, UTC, as the API sends them."""
_MAX_DEPTH: Final = 8


def _id(prefix: str) -> str:
    return f"{prefix}_{ULID}"


ID_PREFIXES: Final[Mapping[str, str]] = {
    "account": "acc",
    "connection": "con",
    "order": "ord",
    "fill": "fil",
    "strategy": "stg",
    "subscription": "sub",
    "intent": "cpi",
    "signal": "sig",
    "link": "lnk",
    "user": "usr",
    "consent": "cns",
    "alert": "alr",
    "webhook": "awh",
    "endpoint": "whe",
    "delivery": "whd",
    "entry": "jen",
    "reverses_entry": "jen",
    "posting": "pst",
    "event": "evt",
    "actor": "usr",
    "resolved_by": "usr",
    "acknowledged_by": "usr",
    "created_by": "usr",
    "key": "kek",
    "idempotency": "idk",
}
"""Id prefixes by the noun a ``<noun>_id`` field names (the prefixes of ``new_id`` calls)."""

SCHEMA_ID_PREFIXES: Final[Mapping[str, str]] = {
    "AccountResponse": "acc",
    "VenueAccountResponse": "acc",
    "ConnectionResponse": "con",
    "OrderResponse": "ord",
    "FillResponse": "fil",
    "StrategyResponse": "stg",
    "SubscriptionResponse": "sub",
    "CopyEventResponse": "cpe",
    "CopyIntentResponse": "cpi",
    "CopyLinkResponse": "lnk",
    "LinkResponse": "lnk",
    "admin_users_UserResponse": "usr",
    "auth_schemas_UserResponse": "usr",
    "ClientResponse": "app",
    "ConsentResponse": "cns",
    "AlertResponse": "alr",
    "admin_alerts_DeliveryResponse": "adl",
    "WebhookResponse": "awh",
    "WebhookCreated": "awh",
    "EndpointResponse": "whe",
    "EndpointCreated": "whe",
    "webhooks_schemas_DeliveryResponse": "whd",
    "AttemptResponse": "wha",
    "EntryResponse": "jen",
    "PostingResponse": "pst",
    "AuditRecordResponse": "aud",
    "InstrumentResponse": "ins",
    "FlowResponse": "ffl",
    "Invoice": "fac",
}
"""The prefix of a resource's own ``id``, by the schema's component name."""

FIELD_VALUES: Final[Mapping[str, Any]] = {
    # people and apps
    "email": "ada@example.com",
    "password": "correct horse battery staple",
    "display_name": "Ada Lovelace",
    "name": "Main account",
    "client_name": "Portfolio Tracker",
    "account_name": "Main account",
    "label": "Demo sim",
    "role": "user",
    "scope": "accounts:read orders:read",
    "scopes": ["accounts:read", "orders:read"],
    "grant_types": ["authorization_code", "refresh_token"],
    "redirect_uris": ["https://app.example.com/callback"],
    "jwks_uri": "https://app.example.com/.well-known/jwks.json",
    "token_endpoint_auth_method": "private_key_jwt",
    "csrf_token": "Zm9vYmFyLWNzcmYtdG9rZW4",
    "otpauth_uri": "otpauth://totp/brokerlink:ada@example.com?secret=JBSWY3DPEHPK3PXP&issuer=brokerlink",
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "qr_svg": "<svg xmlns='http://www.w3.org/2000/svg'/>",
    "recovery_codes": ["k3j9-2mfa-8q1z", "p0x7-4hv2-c9ld"],
    "code": "123456",
    "source_ip": "203.0.113.7",
    # brokers and instruments
    "broker": "sim",
    "base_url": "https://paper-api.example-broker.com",
    "url": "https://hooks.example.com/brokerlink",
    "api_key": "PK8Z6W3N4M5P6Q7R",
    "api_secret": "example-secret-not-real",
    "venue_account_id": "SIM-1001",
    "venue_order_id": "V-778812",
    "venue_symbol": "BTCUSD",
    "symbol": "BTC/USD",
    "provider_symbol": "BTC/USD",
    "follower_symbol": "BTC/USD",
    "symbols": ["BTC/USD", "ETH/USD"],
    "allow_symbols": ["BTC/USD", "ETH/USD"],
    "deny_symbols": ["DOGE/USD"],
    "symbol_map": {"XBT/USD": "BTC/USD"},
    "base": "BTC",
    "quote": "USD",
    "currency": "USD",
    "fee_currency": "USD",
    "volume_currency": "USD",
    "commission_currency": "USD",
    "client_order_id": "my-order-0001",
    "trade_id": "T-552301",
    "trading_hours": "24/7",
    # quantities and money (decimals travel as strings)
    "qty": "0.5",
    "filled_qty": "0.5",
    "last_qty": "0.5",
    "provider_qty": "1",
    "link_qty": "0.5",
    "max_qty": "2",
    "min_qty": "0.0001",
    "max_qty_per_order": "1",
    "fixed_qty": "0.1",
    "qty_step": "0.0001",
    "tick_size": "0.01",
    "contract_size": "1",
    "multiplier": "0.5",
    "price": "64250.50",
    "limit_price": "64000.00",
    "stop_price": "63000.00",
    "avg_price": "62100.00",
    "avg_fill_price": "64250.50",
    "mark_price": "64250.50",
    "last_price": "64250.50",
    "bid": "64250.00",
    "ask": "64251.00",
    "bid_size": "1.2",
    "ask_size": "0.8",
    "amount": "125.00",
    "cash": "25000.00",
    "equity": "25431.75",
    "buying_power": "50000.00",
    "margin_used": "3212.50",
    "min_notional": "10",
    "fixed_notional": "1000",
    "min_follower_equity": "1000",
    "capital": "10000",
    "fee": "1.25",
    "commission": "1.25",
    "commissions": "3.75",
    "realized_pnl": "431.75",
    "unrealized_pnl": "-12.40",
    "debit": "125.00",
    "credit": "0",
    "total": "125.00",
    "risk_percent": "1",
    "max_slippage_bps": "50",
    "slippage_bps": "12",
    "max_leverage": "3",
    "copy_stop_loss_pct": "5",
    "management_pct": "2",
    "performance_pct": "20",
    "platform_share_pct": "20",
    "max_management_pct": "5",
    "max_performance_pct": "30",
    "max_drawdown_pct": "10",
    "max_exposure_per_symbol": "25000",
    "win_rate": "0.55",
    "sharpe": "1.4",
    "sortino": "1.9",
    "profit_factor": "1.6",
    "time_weighted_return": "0.0412",
    "provider_time_weighted_return": "0.0431",
    "tracking_difference": "-0.0019",
    "max_drawdown_balance": "350.00",
    "max_drawdown_equity": "412.50",
    "assets_under_copy": "182000.00",
    "index": "1.0412",
    "net_flow": "0",
    "equity_before": "25000.00",
    "equity_detail": "25431.75",
    "performance_estimate": "86.35",
    "high_water_mark": "25000.00",
    "hwm_before": "25000.00",
    "hwm_after": "25431.75",
    "gross": "86.35",
    "max_volume_per_lot": "5",
    "max_volume_per_million": "50",
    "expected": "0.5",
    "actual": "0.4",
    "held": "0.5",
    "excess": "0",
    # ledger
    "account": "assets:broker:acc_" + ULID.lower(),
    "balance": "25000.00",
    "debits": "25125.00",
    "credits": "125.00",
    "cash_effect": "-32125.25",
    "difference": "0",
    "unexplained": "0",
    "ledger_cash_at_broker_time": "25000.00",
    "idempotency_key": "fill:fil_" + ULID,
    "reference": "wire-2025-03-14-001",
    "rate": "0.001",
    "period": "2025-03",
    "settlement_period": "2025-03",
    "direction": "debit",
    # audit, alerts, brokers
    "action": "order.place",
    "actor_kind": "user",
    "subject": "usr_" + ULID,
    "key": "auth_failures:203.0.113.7",
    "credential_fields": ["api_key", "api_secret"],
    "version": "0.8.0",
    "stopped_at": None,
    "revoked_at": None,
    "disabled_at": None,
    "resolved_at": None,
    "resolved_by": None,
    "closed_at": None,
    # free text
    "description": "Trend following on major crypto pairs",
    "detail": "below the broker's minimum quantity",
    "reason": "below_min_qty",
    "reject_reason": None,
    "disabled_reason": None,
    "last_error": None,
    "error": None,
    "message": "ok",
    "rule": "auth_failures",
    "severity": "warning",
    "outcome": "success",
    "hash": "5f2c0d7e9b1a4c3d8e6f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d",
    "head_hash": "5f2c0d7e9b1a4c3d8e6f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d",
    "prev_hash": "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d",
    "request_id": "req_7f3c2a",
    "correlation_id": "req_7f3c2a",
    "method": "POST",
    "target": "acc_" + ULID,
    "next": None,
    "next_after": None,
    "next_before": None,
    "status_code": 200,
    "duration_ms": 84,
    "event_type": "order.filled",
    "event_types": ["order.filled", "copy.skipped"],
}
"""Example values by field name, used wherever a field of that name appears (unless its schema or
:data:`SCHEMA_VALUES` says otherwise, or the value does not fit the field's schema)."""

SCHEMA_VALUES: Final[Mapping[str, Mapping[str, Any]]] = {
    "OrderResponse": {"type": "limit", "status": "filled", "limit_price": "64300.00", "stop_price": None},
    "OrderCreate": {"type": "limit", "limit_price": "64000.00", "stop_price": None},
    "FillResponse": {"qty": "0.5", "price": "64250.50"},
    "CopyEventResponse": {"kind": "skipped", "reason": "below_min_qty"},
    "AccountResponse": {"name": "Main account"},
    "StrategyCreate": {"name": "Crypto trend"},
    "StrategyResponse": {"name": "Crypto trend"},
    "StrategyUpdate": {"name": "Crypto trend"},
    "WebhookCreate": {"url": "https://hooks.example.com/alerts"},
    "ClientCreate": {"name": "Portfolio Tracker"},
    "ClientResponse": {"name": "Portfolio Tracker"},
    "ledger_routes_BalanceResponse": {"type": "assets"},
    "EntryResponse": {"kind": "fill"},
    "BrokerKind": {"kind": "alpaca"},
    "ReconciliationItem": {"status": "ok"},
    "Health": {"status": "ok"},
}
"""Telling values for single resources, over :data:`FIELD_VALUES` (only fields the schema has are used)."""


OPERATION_EXAMPLES: Final[Mapping[tuple[str, str], Any]] = {
    ("get", "/asyncapi.json"): {
        "asyncapi": "3.0.0",
        "info": {"title": "brokerlink stream", "version": "0.1.0", "description": "..."},
        "servers": {"brokerlink": {"host": "{host}", "protocol": "wss", "pathname": "/v1/stream"}},
        "channels": {"account": {"address": "account:{account_id}"}},
        "operations": {"account_events": {"action": "send", "channel": {"$ref": "#/channels/account"}}},
    },
}
"""2xx examples of operations whose response schema is too generic to say anything (by method and path)."""


class _Synth:
    """Builds examples from JSON Schemas that may ``$ref`` the document's components."""

    def __init__(self, components: Mapping[str, Any]) -> None:
        self.components = components
        self.done: dict[str, Any] = {}

    def component(self, name: str, depth: int = 0) -> Any:
        if name not in self.done:
            schema = self.components[name]
            self.done[name] = self.value(schema, depth=depth, schema_name=name)
        return self.done[name]

    def value(self, schema: Any, *, field: str | None = None, depth: int = 0, schema_name: str | None = None) -> Any:
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return None
        if "$ref" in schema:
            return self.component(str(schema["$ref"]).rsplit("/", 1)[-1], depth + 1)
        if schema.get("examples") or "const" in schema:
            return schema["examples"][0] if schema.get("examples") else schema["const"]
        if "enum" in schema:
            return self._enum(schema["enum"], field)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return self._union(schema, key, field, depth)
        return self._typed(schema, field, depth, schema_name)

    def _typed(self, schema: Mapping[str, Any], field: str | None, depth: int, schema_name: str | None) -> Any:
        kind = schema.get("type")
        if isinstance(kind, list):  # ["string", "null"]: the non-null type
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or "properties" in schema:
            return self._object(schema, field, depth, schema_name)
        if kind == "array":
            return self._array(schema, field, depth)
        if kind == "string":
            return self._string(schema, field)
        if kind in ("integer", "number"):
            return self._number(schema, field)
        named = FIELD_VALUES.get(field or "")
        return (named if isinstance(named, bool) else True) if kind == "boolean" else None

    def _array(self, schema: Mapping[str, Any], field: str | None, depth: int) -> list[Any]:
        item = self.value(schema.get("items", {}), field=_singular(field), depth=depth + 1)
        named = FIELD_VALUES.get(field or "")
        if isinstance(named, list) and all(type(value) is type(item) for value in named):
            return named  # a list of the right kind of thing (ScopeGrant objects are not scope strings)
        return [] if schema.get("maxItems") == 0 else [item]

    def _enum(self, values: list[Any], field: str | None) -> Any:
        named = FIELD_VALUES.get(field or "")
        return named if named in values else values[0]

    def _union(self, schema: Mapping[str, Any], key: str, field: str | None, depth: int) -> Any:
        options = [o for o in schema[key] if not (isinstance(o, Mapping) and o.get("type") == "null")]
        if field is not None and field in FIELD_VALUES and FIELD_VALUES[field] is None:
            return None
        if not options:
            return None
        merged = {**options[0], **{k: v for k, v in schema.items() if k not in (key, "title", "description")}}
        return self.value(merged, field=field, depth=depth + 1)

    def _object(self, schema: Mapping[str, Any], field: str | None, depth: int, schema_name: str | None) -> Any:
        properties: Mapping[str, Any] = schema.get("properties", {})
        if not properties:
            named = FIELD_VALUES.get(field or "")
            if isinstance(named, dict):
                return named
            extra = schema.get("additionalProperties")
            if isinstance(extra, Mapping) and extra:
                return {"key": self.value(extra, depth=depth + 1)}
            return {}
        overrides = SCHEMA_VALUES.get(schema_name or "", {})
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if name in overrides:
                out[name] = overrides[name]
            elif name == "id" and schema_name in SCHEMA_ID_PREFIXES:
                out[name] = _id(SCHEMA_ID_PREFIXES[schema_name or ""])
            else:
                out[name] = self.value(sub, field=name, depth=depth + 1)
        return out

    def _string(self, schema: Mapping[str, Any], field: str | None) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return TIME
        if fmt == "date":
            return TIME[:10]
        if fmt == "duration":
            return "PT30S"
        candidates: list[Any] = [FIELD_VALUES.get(field or "")]
        if field is not None:
            candidates.append(_named_string(field))
        for value in candidates:
            if isinstance(value, str) and _fits(value, schema):
                return value
        pattern = schema.get("pattern")
        minimum = int(schema.get("minLength", 1))
        text = "example" if pattern is None or re.search(str(pattern), "example") else _from_pattern(str(pattern))
        if len(text) < minimum:
            text = text + "x" * (minimum - len(text))
        return text[: int(schema.get("maxLength", len(text)))]

    def _number(self, schema: Mapping[str, Any], field: str | None) -> int | float:
        named = FIELD_VALUES.get(field or "")
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum")
        value: int | float = named if isinstance(named, int | float) and not isinstance(named, bool) else 1
        if field is not None and field.endswith(("_seconds", "_s")):
            value = 30
        if low is not None and value < low:
            value = low + 1 if "exclusiveMinimum" in schema else low
        if high is not None and value > high:
            value = high
        return int(value) if schema.get("type") == "integer" else value


def _singular(field: str | None) -> str | None:
    if field is None:
        return None
    return field[:-1] if field.endswith("s") and not field.endswith("ss") else field


_BY_SUFFIX: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    (("_at",), TIME),
    (("_pct", "_percent"), "10"),
    (("_bps",), "25"),
    (("_qty", "_price", "_amount", "_equity", "_cash", "_pnl", "_fee", "_accrued"), "100.00"),
    (("_url", "_uri"), "https://app.example.com/"),
)
_TIME_FIELDS: Final = frozenset({"ts", "at", "since", "until", "start", "end"})


def _named_string(field: str) -> str | None:
    """A value for a field that :data:`FIELD_VALUES` does not name, from the shape of its name."""
    if field.endswith(("_id", "_ids")):
        noun = field.removesuffix("_ids").removesuffix("_id")
        return _id(ID_PREFIXES.get(noun, noun[:3] if len(noun) >= 2 else "obj"))
    if field in _TIME_FIELDS:
        return TIME
    return next((value for suffixes, value in _BY_SUFFIX if field.endswith(suffixes)), None)


def _fits(value: str, schema: Mapping[str, Any]) -> bool:
    if len(value) < int(schema.get("minLength", 0)) or len(value) > int(schema.get("maxLength", len(value))):
        return False
    pattern = schema.get("pattern")
    return pattern is None or re.search(str(pattern), value) is not None


def _from_pattern(pattern: str) -> str:
    """A string for the simple patterns our schemas use (``^[a-z][a-z0-9_]*$``, ``^https?://``)."""
    if pattern.startswith("^https?://"):
        return "https://app.example.com/"
    if pattern.startswith("^[a-z]"):
        return "example"
    return "example-1"


def schema_examples(components: Mapping[str, Any]) -> dict[str, Any]:
    """One example per component schema, by component name."""
    synth = _Synth(components)
    return {name: synth.component(name) for name in components}


def schema_example(schema: Mapping[str, Any], components: Mapping[str, Any]) -> Any:
    """An example of one (inline) schema whose ``$ref`` point into ``components``."""
    return _Synth(components).value(schema)


# --- problems ----------------------------------------------------------------------------------------

INSTANCE: Final = "/v1/accounts/acc_" + ULID
_REQUEST_ID: Final = "req_7f3c2a"


def _problems() -> dict[int, dict[str, BrokerlinkError]]:
    invalid = InvalidInput(
        "qty: Expected a decimal string",
        extra={"errors": [{"field": "qty", "source": "body", "message": "Expected a decimal string"}]},
    )
    errors: list[tuple[str, BrokerlinkError]] = [
        ("malformed_request", MalformedRequest("the body is not valid JSON")),
        ("page_size_too_large", PageSizeTooLarge("limit may be at most 200")),
        ("not_authenticated", NotAuthenticated()),
        ("forbidden", Forbidden("missing or invalid CSRF token")),
        ("insufficient_scope", InsufficientScope("orders:write")),
        ("not_found", NotFound()),
        ("conflict", Conflict("the subscription is stopped")),
        ("idempotency_key_in_use", IdempotencyKeyInUse("a request with this key is still running")),
        ("precondition_failed", PreconditionFailed('If-Match "3" is not the current version "4"')),
        ("payload_too_large", PayloadTooLarge("the request body is larger than this server accepts")),
        ("unsupported_media_type", UnsupportedMediaType("the body must be application/json")),
        ("invalid_input", invalid),
        ("idempotency_key_reused", IdempotencyKeyReused("this key was used for a different request")),
        ("precondition_required", PreconditionRequired("send If-Match with the ETag you last read")),
        ("rate_limited", RateLimited(retry_after=2)),
        ("unavailable", Unavailable("the broker did not answer; retry later")),
    ]
    by_status: dict[int, dict[str, BrokerlinkError]] = {}
    for name, error in errors:
        by_status.setdefault(error.status, {})[name] = error
    return by_status


def problem_examples(status: int) -> dict[str, dict[str, Any]]:
    """OpenAPI ``examples`` (name to ``{"summary", "value"}``) of the problems a status stands for."""
    out: dict[str, dict[str, Any]] = {}
    for name, error in _problems().get(status, {}).items():
        value = error.to_problem(instance=INSTANCE)
        value["request_id"] = _REQUEST_ID
        out[name] = {"summary": error.title, "value": value}
    return out


def problem_statuses() -> tuple[int, ...]:
    """Every status :func:`problem_examples` has examples for."""
    return tuple(sorted(_problems()))
