"""``/asyncapi.json``: the AsyncAPI 3.0 document of ``/v1/stream``, generated from the code.

Nothing here restates a field. Message payloads are the JSON Schemas msgspec generates from the
wire protocol's structs (:mod:`brokerlink.stream.protocol`); the event payloads per channel are
generated from the structs the stream carries: the bus's domain events on ``account:{id}``
(:mod:`brokerlink.domain.events`), the stored copy events with ``type`` their kind on
``copy:{subscription}``, alerts (copy alerts, connection losses, and for staff the alert engine's
events) on ``alerts``, and the market-data structs of :func:`market_payloads` on ``quotes:``,
``depth:`` and ``trades:{symbol}``. The semantics (sequence numbers, resume, snapshots,
heartbeats, close codes) are the protocol module's docstring. Every example is a struct instance
encoded by msgspec, so an example cannot disagree with its schema.

The document describes the *server*: a ``receive`` operation is something a client sends, a
``send`` operation something the server sends (AsyncAPI 3.0's point of view).
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec
from litestar import Request, get

from brokerlink import __version__
from brokerlink.domain.copy import CopyEvent, CopyEventKind
from brokerlink.domain.enums import ConnectionState, Side
from brokerlink.domain.events import ConnectionChanged, DomainEvent, OrderFilled
from brokerlink.engine.alerts.events import AlertEvent
from brokerlink.stream import protocol
from brokerlink.stream.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SLOW_CONSUMER,
    Error,
    Event,
    Heartbeat,
    Ping,
    Pong,
    Snapshot,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
)

ASYNCAPI_VERSION: Final = "3.0.0"
STREAM_PATH: Final = "/v1/stream"
STATE_KEY: Final = "brokerlink.asyncapi_document"
_ROLE: Final = re.compile(r":(?:class|mod|func|data|meth|attr):`~?([^`]+)`")
_REF: Final = "#/components/schemas/{name}"
_ULID: Final = "01JQ8Z6W3N4M5P6Q7R8S9T0V1W"
_ACCOUNT: Final = f"acc_{_ULID}"
_SUBSCRIPTION: Final = f"sub_{_ULID}"
_EPOCH: Final = "ep_01JQ8Z6W3N"
_TIME: Final = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)

CLOSE_CODES: Final[tuple[tuple[int, str, str], ...]] = (
    (
        CLOSE_POLICY,
        "policy violation",
        "not authenticated, cross-origin, token or consent revoked or expired, messages too fast, too many connections",
    ),
    (
        CLOSE_SLOW_CONSUMER,
        "try again later (slow consumer)",
        (
            "the connection's buffer of account, copy or alert events overflowed: reconnect and resume "
            "from your sequence numbers"
        ),
    ),
    (CLOSE_GOING_AWAY, "going away", "the server is stopping, or no message arrived for three heartbeat intervals"),
)
"""The close codes of the stream (``protocol.CLOSE_*``): code, name, when."""


class ChannelPayloads(msgspec.Struct, frozen=True):
    """What one kind of channel carries: its event structs and its snapshot structs (may be empty:
    the payload is then described as an object with a ``type``)."""

    events: tuple[type[Any], ...]
    snapshots: tuple[type[Any], ...] = ()


class CopyStreamEvent(CopyEvent, frozen=True, kw_only=True):
    """A copy event as the stream carries it: the stored event (``CopyEvent``) with ``type`` its kind."""

    type: CopyEventKind


def market_payloads() -> dict[str, ChannelPayloads]:
    """The market-data shapes (stream/market.py): the structs each market channel's
    events and snapshots are. Edit here when those shapes change; the document follows."""
    from brokerlink.stream.market import DepthEvent, QuoteEvent, TradeEvent, TradesSnapshot, UnavailableEvent

    return {
        "quotes": ChannelPayloads(events=(QuoteEvent, UnavailableEvent), snapshots=(QuoteEvent,)),
        "depth": ChannelPayloads(events=(DepthEvent, UnavailableEvent), snapshots=(DepthEvent,)),
        "trades": ChannelPayloads(events=(TradeEvent, UnavailableEvent), snapshots=(TradesSnapshot,)),
    }


def _market_examples() -> dict[str, tuple[Any, Any]]:
    """One (event, snapshot) example per market channel, from the same structs."""
    from brokerlink.stream.market import DepthEvent, QuoteEvent, TradeEvent, TradesSnapshot

    quote = QuoteEvent(
        symbol="BTC/USD",
        bid=Decimal("64250.00"),
        ask=Decimal("64251.00"),
        bid_size=Decimal("1.2"),
        ask_size=Decimal("0.8"),
        ts=_TIME,
    )
    trade = TradeEvent(
        symbol="BTC/USD", trade_id="T-552301", price=Decimal("64250.50"), qty=Decimal("0.01"), side=Side.BUY, ts=_TIME
    )
    trades = TradesSnapshot(symbol="BTC/USD", trades=[msgspec.to_builtins(trade)])
    depth = DepthEvent(
        symbol="BTC/USD",
        bids=[(Decimal("64250.00"), Decimal("1.2")), (Decimal("64249.50"), Decimal(3))],
        asks=[(Decimal("64251.00"), Decimal("0.8")), (Decimal("64252.00"), Decimal("2.5"))],
        update_id=981234,
    )
    return {"quotes": (quote, quote), "depth": (depth, depth), "trades": (trade, trades)}


class _Channel(msgspec.Struct, frozen=True):
    kind: str
    address: str
    parameter: str | None
    parameter_text: str
    title: str
    description: str
    example_channel: str
    snapshot_text: str


_CHANNELS: Final = (
    _Channel(
        "quotes", "quotes:{symbol}", "symbol", "A canonical symbol, e.g. `BTC/USD`.", "Quotes",
        "The top of book of a symbol. Market data: a slow consumer gets the latest value (sequence numbers may "
        "skip).", "quotes:BTC/USD", "The latest quote.",
    ),
    _Channel(
        "depth", "depth:{symbol}", "symbol", "A canonical symbol, e.g. `BTC/USD`.", "Order book depth",
        "The best levels of each side after a change among them. Market data: conflated for slow consumers.",
        "depth:BTC/USD", "The current book.",
    ),
    _Channel(
        "trades", "trades:{symbol}", "symbol", "A canonical symbol, e.g. `BTC/USD`.", "Public trades",
        "Public trades of a symbol. Market data: conflated for slow consumers.", "trades:BTC/USD",
        "The latest trades seen by this server, oldest first.",
    ),
    _Channel(
        "account", "account:{account_id}", "account_id", "An account id (`acc_...`) of the user, within the "
        "consent's accounts for an app.", "Account events",
        "Orders, fills, positions, balances and the broker link's state of one account: the bus's domain events. "
        "An app receives only the events its scopes cover (`orders:read`, `positions:read`, `balances:read`...), "
        "numbered in its own sequence. Never dropped.", f"account:{_ACCOUNT}",
        "The account's open orders, positions and balances.",
    ),
    _Channel(
        "copy", "copy:{subscription_id}", "subscription_id", "A subscription id (`sub_...`) the user follows with.",
        "Copy events", "What happens to a copy-trading subscription: copies, skips (with `reason`), rejections, "
        "guard trips, pauses. Needs `copy:read`. Never dropped.", f"copy:{_SUBSCRIPTION}",
        "The subscription's state and its recent copy events.",
    ),
    _Channel(
        "alerts", "alerts", None, "", "Alerts", "The user's alerts: copy failures, rejections, guard trips and "
        "stalls, broker links lost or revoked; for administrators and auditors also the alert engine's events. "
        "Needs `accounts:read` or `copy:read`. Never dropped.", "alerts",
        "What is currently wrong: links down, subscriptions paused or close-only, open alerts (staff).",
    ),
)  # fmt: skip


def _fix_schema(node: Any) -> Any:
    """msgspec writes OpenAPI's ``discriminator`` object; the AsyncAPI schema format wants the property name."""
    if isinstance(node, dict):
        out = {key: _fix_schema(value) for key, value in node.items()}
        discriminator = out.get("discriminator")
        if isinstance(discriminator, dict):
            out["discriminator"] = discriminator["propertyName"]
        return out
    if isinstance(node, list):
        return [_fix_schema(item) for item in node]
    return node


def _builtins(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def _payload_schema(types: Sequence[type[Any]]) -> dict[str, Any]:
    if not types:
        return {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string"}},
            "additionalProperties": True,
        }
    refs = [{"$ref": _REF.format(name=t.__name__)} for t in types]
    return refs[0] if len(refs) == 1 else {"oneOf": refs}


def _channel_payloads() -> dict[str, ChannelPayloads]:
    alerts = ChannelPayloads(events=(CopyStreamEvent, ConnectionChanged, AlertEvent))
    domain = tuple(t for t in DomainEvent.__args__)
    return {
        **market_payloads(),
        "account": ChannelPayloads(events=domain),
        "copy": ChannelPayloads(events=(CopyStreamEvent,)),
        "alerts": alerts,
    }


def _examples() -> dict[str, tuple[Any, Any | None]]:
    filled = OrderFilled(
        account_id=_ACCOUNT,
        ts=_TIME,
        venue_ts=_TIME,
        client_order_id="my-order-0001",
        venue_order_id="V-778812",
        trade_id="T-552301",
        symbol="BTC/USD",
        side=Side.BUY,
        last_qty=Decimal("0.5"),
        last_price=Decimal("64250.50"),
        commission=Decimal("1.25"),
        commission_currency="USD",
        liquidity="taker",
    )
    skipped = CopyStreamEvent(
        id=f"cpe_{_ULID}",
        subscription_id=_SUBSCRIPTION,
        kind=CopyEventKind.SKIPPED,
        type=CopyEventKind.SKIPPED,
        reason="below_min_qty",
        detail="0.00004 BTC/USD is below the broker's minimum quantity 0.0001",
        signal_id=f"sig_{_ULID}",
        created_at=_TIME,
    )
    lost = ConnectionChanged(
        account_id=_ACCOUNT, ts=_TIME, state=ConnectionState.DISCONNECTED, gap_possible=True, reason="timeout"
    )
    return {
        **_market_examples(),
        "account": (filled, {"account_id": _ACCOUNT, "open_orders": [], "positions": [], "balances": []}),
        "copy": (skipped, {"subscription": {"id": _SUBSCRIPTION, "status": "active"}, "events": [_builtins(skipped)]}),
        "alerts": (lost, {"connections": [{"account_id": _ACCOUNT, "state": "disconnected"}]}),
    }


def _message(name: str, title: str, summary: str, payload: dict[str, Any], examples: list[Any]) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "payload": payload,
        "examples": [{"name": f"{name}_{i}", "payload": _builtins(e)} for i, e in enumerate(examples, 1)],
    }


def _control_messages() -> dict[str, dict[str, Any]]:
    """The messages of the connection itself: one per protocol struct, schema by reference."""
    channel = f"account:{_ACCOUNT}"
    resume = Subscribe(channel=channel, after=41, epoch=_EPOCH)
    welcome = Welcome(connection_id=f"wsc_{_ULID}", epoch=_EPOCH, heartbeat_s=15, replay=1000)
    specs: list[tuple[type[Any], str, list[Any]]] = [
        (Subscribe, "Subscribe to a channel", [Subscribe(channel=channel), resume]),
        (Unsubscribe, "Unsubscribe from a channel", [Unsubscribe(channel=channel)]),
        (Ping, "Client heartbeat", [Ping(id="42")]),
        (Welcome, "First message of every connection", [welcome]),
        (Subscribed, "A subscription took effect", [Subscribed(channel=channel, seq=41, resumed=True)]),
        (Unsubscribed, "A subscription ended", [Unsubscribed(channel=channel)]),
        (Heartbeat, "Server heartbeat", [Heartbeat(time=_TIME)]),
        (Pong, "Answer to a ping", [Pong(id="42")]),
        (Error, "A refused message", [Error(status=404, code="not_found", detail="no such account", channel=channel)]),
    ]  # fmt: skip
    messages: dict[str, dict[str, Any]] = {}
    for struct, title, examples in specs:
        name = str(struct.__struct_config__.tag)
        summary = inspect.getdoc(struct) or title
        messages[name] = _message(name, title, summary, {"$ref": _REF.format(name=struct.__name__)}, examples)
    return messages


def _security_schemes(session_cookie: str) -> dict[str, Any]:
    return {
        "session": {
            "type": "httpApiKey",
            "name": session_cookie,
            "in": "cookie",
            "description": (
                "The first-party session cookie, sent with the upgrade request. A browser's `Origin` must be this "
                "server (cross-site WebSocket hijacking is refused with 403 before the upgrade)."
            ),
        },
        "dpop": {
            "type": "http",
            "scheme": "DPoP",
            "description": (
                "A third-party app's DPoP-bound access token (RFC 9449): `Authorization: DPoP <token>` and a `DPoP` "
                "proof on the upgrade request, its `htu` the http(s) form of the socket's URL (RFC 9449 section "
                "4.3). What the app may follow is decided per subscription by its consent's scopes and accounts."
            ),
        },
    }


def asyncapi_document(*, session_cookie: str = "brokerlink_session") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``/v1/stream`` (module docstring)."""
    payloads = _channel_payloads()
    roots: list[Any] = [protocol.ClientMessage, protocol.ServerMessage]
    for entry in payloads.values():
        roots.extend(entry.events)
        roots.extend(entry.snapshots)
    _, generated = msgspec.json.schema_components(roots, ref_template=_REF)
    schemas: dict[str, Any] = _fix_schema(generated)
    messages = _control_messages()
    channels: dict[str, Any] = {"connection": _connection_channel(list(messages))}
    operations = _control_operations()
    examples = _examples()
    for spec in _CHANNELS:
        channel, channel_messages = _data_channel(spec, payloads[spec.kind], schemas, examples.get(spec.kind))
        channels[spec.kind] = channel
        messages.update(channel_messages)
        operations[f"{spec.kind}_events"] = _operation(
            "send", spec.kind, list(channel_messages), f"{spec.title}: a snapshot, then numbered events."
        )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "brokerlink stream", "version": __version__, "description": _description()},
        "defaultContentType": "application/json",
        "servers": {
            "brokerlink": {
                "host": "{host}",
                "protocol": "wss",
                "pathname": STREAM_PATH,
                "description": "The brokerlink server (`ws` on a loopback development server).",
                "variables": {"host": {"default": "localhost:8000", "description": "The server's host and port."}},
                "security": [
                    {"$ref": "#/components/securitySchemes/session"},
                    {"$ref": "#/components/securitySchemes/dpop"},
                ],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": _security_schemes(session_cookie),
        },
    }


def _connection_channel(message_names: list[str]) -> dict[str, Any]:
    """The socket itself: commands, control messages, handshake headers and close codes."""
    headers = {
        "Authorization": {"type": "string", "description": "`DPoP <access token>` (apps)"},
        "DPoP": {"type": "string", "description": "The DPoP proof for this request (apps)"},
        "Origin": {"type": "string", "description": "Must be this server when a browser sends it"},
    }
    close_codes = "\n".join(f"- `{code}` {name}: {when}." for code, name, when in CLOSE_CODES)
    return {
        "address": STREAM_PATH,
        "title": "The connection",
        "description": (
            "The WebSocket itself: the client's commands and the server's control messages. Every message is "
            "one JSON text frame tagged by `op`.\n\nClose codes:\n\n" + close_codes
        ),
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in message_names},
        "bindings": {
            "ws": {"method": "GET", "headers": {"type": "object", "properties": headers}, "bindingVersion": "0.1.0"}
        },
        "x-close-codes": [{"code": code, "name": name, "when": when} for code, name, when in CLOSE_CODES],
    }


def _control_operations() -> dict[str, Any]:
    return {
        "subscribe": _operation(
            "receive", "connection", ["subscribe"], "Follow a channel (or resume it).", reply=["subscribed", "error"]
        ),
        "unsubscribe": _operation(
            "receive", "connection", ["unsubscribe"], "Stop following a channel.", reply=["unsubscribed", "error"]
        ),
        "ping": _operation("receive", "connection", ["ping"], "The client's heartbeat.", reply=["pong"]),
        "welcome": _operation("send", "connection", ["welcome"], "Sent once, first, on every connection."),
        "heartbeat": _operation("send", "connection", ["heartbeat"], "Sent every `Welcome.heartbeat_s` seconds."),
        "error": _operation("send", "connection", ["error"], "A command was refused (the connection stays open)."),
    }


def _data_channel(
    spec: _Channel, entry: ChannelPayloads, schemas: Mapping[str, Any], example: tuple[Any, Any] | None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One kind of channel and its two messages: the protocol's Event and Snapshot with this kind's payloads."""
    event_name, snapshot_name = f"{spec.kind}_event", f"{spec.kind}_snapshot"
    event_schema = copy.deepcopy(schemas[Event.__name__])
    event_schema["properties"]["event"] = _payload_schema(entry.events)
    event_schema["title"] = f"{spec.title}: event"
    snapshot_schema = copy.deepcopy(schemas[Snapshot.__name__])
    data = _payload_schema(entry.snapshots) if entry.snapshots else {"type": "object"}
    snapshot_schema["properties"]["data"] = {**data, "description": spec.snapshot_text}
    snapshot_schema["title"] = f"{spec.title}: snapshot"
    events: list[Any] = []
    snapshots: list[Any] = []
    if example is not None:
        events.append(Event(channel=spec.example_channel, seq=42, event=_builtins(example[0])))
        snapshots.append(Snapshot(channel=spec.example_channel, seq=41, data=_builtins(example[1])))
    messages = {
        event_name: _message(event_name, f"{spec.title}: event", spec.description, event_schema, events),
        snapshot_name: _message(
            snapshot_name, f"{spec.title}: snapshot", spec.snapshot_text, snapshot_schema, snapshots
        ),
    }
    channel: dict[str, Any] = {
        "address": spec.address,
        "title": spec.title,
        "description": f"{spec.description} Carried over `{STREAM_PATH}` after a `subscribe` to the name.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
    }
    if spec.parameter is not None:
        argument = spec.example_channel.split(":", 1)[1]
        channel["parameters"] = {spec.parameter: {"description": spec.parameter_text, "examples": [argument]}}
    return channel, messages


def _operation(
    action: str, channel: str, messages: list[str], summary: str, *, reply: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in messages],
    }
    if reply is not None:
        out["reply"] = {
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in reply],
        }
    return out


def _description() -> str:
    """The introduction, then the protocol module docstring's semantics paragraphs (``**Resume.**``...)
    turned from reStructuredText into Markdown."""
    paragraphs = inspect.cleandoc(protocol.__doc__ or "").split("\n\n")
    kept = [" ".join(p.split()) for p in paragraphs if p.startswith("**")]
    semantics = _ROLE.sub(lambda m: "`" + m.group(1).rsplit(".", 1)[-1] + "`", "\n\n".join(kept))
    semantics = semantics.replace("``", "`")
    return (
        "The live half of the brokerlink API: one WebSocket at `/v1/stream`, many channels. Authenticate at the "
        "handshake (the session cookie from a same-origin page, or a DPoP-bound access token), then `subscribe` "
        "to channels by name. Operations are from the server's point of view: `receive` is what a client sends, "
        "`send` what the server sends.\n\n" + semantics
    )


@get("/asyncapi.json", summary="AsyncAPI document of the stream", tags=["specs"])
async def asyncapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``/v1/stream``; the same as ``docs/asyncapi.json``."""
    state = request.app.state
    document: dict[str, Any] | None = state.get(STATE_KEY)
    if document is None:
        document = asyncapi_document(session_cookie=state.settings.session_cookie)
        state[STATE_KEY] = document
    return document
