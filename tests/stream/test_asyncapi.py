"""The AsyncAPI document of ``/v1/stream``: its structure, its references, and its examples.

No AsyncAPI validator or meta-schema is installed (nor available offline), so the structure the
document relies on is checked explicitly: the 3.0 top-level fields, servers, channels with their
parameters, operations pointing at messages of their own channel, every ``$ref`` resolving, and
every message example valid against its payload schema (JSON Schema, via jsonschema_rs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import msgspec
import pytest

from brokerlink.domain.copy import CopyEventKind
from brokerlink.domain.events import EVENT_TYPES
from brokerlink.stream import protocol
from brokerlink.stream.asyncapi import ASYNCAPI_VERSION, STREAM_PATH, asyncapi_document
from brokerlink.stream.channels import KINDS

ACTIONS = {"send", "receive"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    built = asyncapi_document()
    encoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(built))
    return encoded


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    target: Any = document
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        assert isinstance(target, dict), f"unresolved {ref}"
        assert part in target, f"unresolved {ref}"
        target = target[part]
    return target


def test_top_level_structure_of_an_asyncapi_3_document(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == ASYNCAPI_VERSION == "3.0.0"
    assert {"title", "version", "description"} <= set(document["info"])
    assert set(document) <= {
        "asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations", "components",
    }  # fmt: skip
    assert document["defaultContentType"] == "application/json"
    (server,) = document["servers"].values()
    assert server["protocol"] in {"ws", "wss"}
    assert server["pathname"] == STREAM_PATH
    for variable in re.findall(r"\{(\w+)\}", server["host"]):
        assert "default" in server["variables"][variable]


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    found = list(refs(document))
    assert len(found) > 50
    for ref in found:
        resolve(document, ref)


def test_every_channel_kind_is_described_with_its_parameters(document: dict[str, Any]) -> None:
    channels = document["channels"]
    addresses = {c["address"] for c in channels.values()}
    assert STREAM_PATH in addresses
    for kind in KINDS:
        channel = channels[kind]
        assert channel["address"].split(":")[0] == kind
        names = re.findall(r"\{(\w+)\}", channel["address"])
        assert set(channel.get("parameters", {})) == set(names), kind
        for name in names:
            assert channel["parameters"][name]["description"]
        assert channel["messages"], kind


def test_operations_use_messages_of_their_own_channel(document: dict[str, Any]) -> None:
    operations = document["operations"]
    for name, operation in operations.items():
        assert operation["action"] in ACTIONS, name
        channel_ref = operation["channel"]["$ref"]
        channel = resolve(document, channel_ref)
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
            key = message["$ref"].rsplit("/", 1)[-1]
            assert key in channel["messages"], name
        if "reply" in operation:
            for message in operation["reply"]["messages"]:
                assert message["$ref"].startswith(operation["reply"]["channel"]["$ref"] + "/messages/")
    received = {
        m["$ref"].rsplit("/", 1)[-1] for o in operations.values() if o["action"] == "receive" for m in o["messages"]
    }
    assert received == {"subscribe", "unsubscribe", "ping"}, "the client's messages are what the server receives"
    for kind in KINDS:
        assert operations[f"{kind}_events"]["action"] == "send"


def test_every_protocol_message_is_a_message_with_its_generated_schema(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    structs = [*protocol.ClientMessage.__args__, *protocol.ServerMessage.__args__]
    for struct in structs:
        tag = struct.__struct_config__.tag
        schema = document["components"]["schemas"][struct.__name__]
        assert set(schema["properties"]) == {"op", *struct.__struct_fields__}, "generated from the struct"
        if struct in (protocol.Event, protocol.Snapshot):  # one message per kind of channel, same envelope
            for kind in KINDS:
                payload = messages[f"{kind}_{tag}"]["payload"]
                assert set(payload["properties"]) == set(schema["properties"])
                assert payload["required"] == schema["required"]
        else:
            assert messages[tag]["payload"] == {"$ref": f"#/components/schemas/{struct.__name__}"}


def test_every_message_has_an_example_valid_against_its_payload(document: dict[str, Any]) -> None:
    for name, message in document["components"]["messages"].items():
        assert message["examples"], f"{name} has no example"
        check = jsonschema_rs.Draft202012Validator({**message["payload"], "components": document["components"]})
        for example in message["examples"]:
            errors = [f"{e.instance_path}: {e.message}" for e in check.iter_errors(example["payload"])]
            assert not errors, (name, errors[:3])


def test_channel_payloads_are_the_structs_the_stream_carries(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    account = messages["account_event"]["payload"]["properties"]["event"]
    tags = {resolve(document, o["$ref"])["properties"]["type"]["enum"][0] for o in account["oneOf"]}
    assert tags == {str(t.__struct_config__.tag) for t in EVENT_TYPES}
    copy_event = messages["copy_event"]["payload"]["properties"]["event"]
    kinds = resolve(document, resolve(document, copy_event["$ref"])["properties"]["type"]["$ref"])["enum"]
    assert set(kinds) == {k.value for k in CopyEventKind}
    for kind in protocol.MARKET_KINDS:
        event = messages[f"{kind}_event"]["payload"]["properties"]["event"]
        assert "$ref" in event or "oneOf" in event, f"{kind}: market shapes are in the market_payloads() slot"


def test_close_codes_and_authentication_are_documented(document: dict[str, Any]) -> None:
    connection = document["channels"]["connection"]
    codes = {c["code"] for c in connection["x-close-codes"]}
    assert codes == {protocol.CLOSE_POLICY, protocol.CLOSE_SLOW_CONSUMER, protocol.CLOSE_GOING_AWAY}
    for code in codes:
        assert f"`{code}`" in connection["description"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["session"] == schemes["session"] | {"type": "httpApiKey", "in": "cookie"}
    assert schemes["dpop"]["type"] == "http"
    assert schemes["dpop"]["scheme"] == "DPoP"
    for semantics in ("Sequence numbers", "Resume", "Heartbeats", "Close codes"):
        assert semantics in document["info"]["description"], "the protocol module's docstring"
