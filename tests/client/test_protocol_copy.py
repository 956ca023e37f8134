"""The client's copy of the stream protocol (client/protocol.py) matches the server's, field for field.

The client imports nothing from the server, so it keeps its own structs; this test makes any drift
(a field added, renamed, retyped or given another default on either side) fail CI.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from brokerlink.client import protocol as ours
from brokerlink.stream import protocol as theirs

MESSAGES = [
    "Subscribe", "Unsubscribe", "Ping", "Welcome", "Subscribed", "Unsubscribed", "Event", "Snapshot",
    "Heartbeat", "Pong", "Error",
]  # fmt: skip


def _struct_classes(module: Any) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, msgspec.Struct) and value.__module__ == module.__name__
    }


def _shape(cls: type[msgspec.Struct]) -> list[tuple[Any, ...]]:
    config = cls.__struct_config__
    shape: list[tuple[Any, ...]] = [("config", config.tag_field, config.tag, config.forbid_unknown_fields)]
    for f in msgspec.structs.fields(cls):
        default = f.default if f.default is not msgspec.NODEFAULT else "<required>"
        shape.append((f.name, f.encode_name, repr(f.type), default, f.required))
    return shape


def test_both_modules_define_the_same_messages() -> None:
    assert _struct_classes(theirs) == _struct_classes(ours) == set(MESSAGES)


@pytest.mark.parametrize("name", MESSAGES)
def test_each_message_has_the_same_fields_types_defaults_and_tag(name: str) -> None:
    assert _shape(getattr(ours, name)) == _shape(getattr(theirs, name))


def test_the_unions_and_constants_match() -> None:
    for union in ("ClientMessage", "ServerMessage"):
        assert msgspec.json.schema(getattr(ours, union)) == msgspec.json.schema(getattr(theirs, union))
    for constant in (
        "PROTOCOL_VERSION", "MARKET_KINDS", "RELIABLE_KINDS", "CLOSE_POLICY", "CLOSE_SLOW_CONSUMER",
        "CLOSE_GOING_AWAY",
    ):  # fmt: skip
        assert getattr(ours, constant) == getattr(theirs, constant), constant


def test_a_message_encoded_by_one_side_decodes_on_the_other() -> None:
    sent = theirs.Event(channel="account:acc_1", seq=7, event={"type": "order_filled"})
    received = msgspec.json.decode(msgspec.json.encode(sent), type=ours.ServerMessage)
    assert received == ours.Event(channel="account:acc_1", seq=7, event={"type": "order_filled"})
    back = msgspec.json.decode(
        msgspec.json.encode(ours.Subscribe(channel="c", after=3, epoch="e")), type=theirs.ClientMessage
    )
    assert back == theirs.Subscribe(channel="c", after=3, epoch="e")
