"""The published OpenAPI document: examples everywhere, errors as problem details, valid OpenAPI 3.1.

The document is built once for the module, the way the server builds it (``app.openapi_schema``,
encoded by msgspec as a response is); one test checks that the running server serves exactly that,
at ``/openapi.json`` and on the ``/docs`` page, and the AsyncAPI document at ``/asyncapi.json``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import msgspec
import pytest
import schemathesis
from litestar import get
from litestar.openapi import OpenAPIConfig
from litestar.testing import create_test_client
from pydantic import SecretStr

from brokerlink.api.deprecation import deprecated
from brokerlink.api.openapi import PROBLEM_SCHEMA
from brokerlink.api.openapi_examples import problem_examples, problem_statuses
from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.errors import PROBLEM_TYPE_PREFIX
from brokerlink.stream.asyncapi import asyncapi_document
from tests.api.support import ClientFactory

METHODS = ("get", "put", "post", "delete", "patch", "head")
PROBLEM_REF = {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}
NOT_PROBLEMS = ("/oauth/", "/.well-known/")
"""The authorization server's endpoints answer errors the OAuth way (RFC 6749 section 5.2)."""


@pytest.fixture(scope="module")
def document() -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), environment="test", secret_key=SecretStr("k" * 48))
        app = create_app(settings, configure_logs=False)
        yield msgspec.json.decode(msgspec.json.encode(app.openapi_schema.to_schema()))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    """A validator of ``schema`` whose ``#/components/...`` references resolve in ``document``."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})


def test_every_operation_has_a_2xx_response_with_an_example(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    missing = []
    for path, method, operation in operations(document):
        success = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert success, f"{method} {path} documents no 2xx response"
        for code, response in success.items():
            for media_type, media in response.get("content", {}).items():
                schema = media.get("schema", {})
                ref = schema.get("$ref", "")
                component = schemas.get(ref.rsplit("/", 1)[-1]) if ref else None
                if "example" in media or "examples" in media or (component and component.get("examples")):
                    continue
                if media_type == "application/octet-stream":
                    continue  # a file download (a statement): bytes have no JSON example
                missing.append(f"{method.upper()} {path} {code} {media_type}")
    assert not missing, f"2xx responses without an example: {missing}"


def test_every_component_example_is_valid_against_its_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    invalid = {}
    for name, schema in schemas.items():
        assert schema.get("examples"), f"component {name} has no example"
        check = validator(document, {"$ref": f"#/components/schemas/{name}"})
        for example in schema["examples"]:
            errors = [f"{e.instance_path}: {e.message}" for e in check.iter_errors(example)]
            if errors:
                invalid[name] = errors[:3]
    assert not invalid, invalid


def test_inline_2xx_examples_are_valid(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for code, response in operation["responses"].items():
            for media in response.get("content", {}).values() if code.startswith("2") else ():
                if "example" in media:
                    errors = list(validator(document, media["schema"]).iter_errors(media["example"]))
                    assert not errors, f"{method} {path} {code}: {errors[0].message}"


def test_errors_are_documented_as_problem_details(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        responses = operation["responses"]
        if path.startswith(NOT_PROBLEMS):
            continue
        assert {"429", "default"} <= set(responses), f"{method} {path}"
        for code, response in responses.items():
            if code.startswith("2"):
                continue
            content = resolve(document, response)["content"]
            assert list(content) == ["application/problem+json"], f"{method} {path} {code}: {list(content)}"
            assert content["application/problem+json"]["schema"] == PROBLEM_REF
    problem = document["components"]["schemas"][PROBLEM_SCHEMA]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])


def test_error_statuses_follow_the_shape_of_the_operation(document: dict[str, Any]) -> None:
    paths = document["paths"]
    place = paths["/v1/accounts/{account_id}/orders"]["post"]["responses"]
    assert {"401", "403", "404", "409", "422", "429", "default"} <= set(place)
    assert "412" not in place
    settings = paths["/v1/subscriptions/{subscription_id}/settings"]["put"]["responses"]
    assert {"412", "428", "422"} <= set(settings)
    me = paths["/v1/me"]["get"]["responses"]
    assert {"401", "403", "429"} <= set(me)
    assert not {"404", "422"} & set(me)
    health = paths["/healthz"]["get"]["responses"]
    assert not {"401", "403"} & set(health)


def test_no_operation_keeps_litestars_validation_error_shape(document: dict[str, Any]) -> None:
    text = msgspec.json.encode(document).decode()
    assert '"status_code":{"type":"integer"}' not in text
    assert "Validation Exception" not in text


def test_problem_examples_are_what_the_error_classes_render(document: dict[str, Any]) -> None:
    check = validator(document, PROBLEM_REF)
    for status in problem_statuses():
        for name, example in problem_examples(status).items():
            value = example["value"]
            assert value["status"] == status
            assert value["code"] == name
            assert value["type"] == PROBLEM_TYPE_PREFIX + name
            assert not list(check.iter_errors(value)), name
    unprocessable = resolve(document, {"$ref": "#/components/responses/Problem422"})
    invalid = unprocessable["content"]["application/problem+json"]["examples"]["invalid_input"]["value"]
    assert invalid["errors"][0].keys() == {"field", "source", "message"}


def test_security_says_who_may_call_each_operation(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/v1/auth/login"]["post"]["security"] == []
    assert paths["/v1/accounts/{account_id}/orders"]["post"]["security"] == [
        {"session": []},
        {"dpop": ["orders:write"]},
    ]
    assert "security" not in paths["/v1/me"]["get"], "first-party: the document's default (the session) only"
    assert document["security"] == [{"session": []}]
    assert document["components"]["securitySchemes"]["dpop"]["scheme"] == "DPoP"


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(document).validate()  # the OpenAPI 3.1 meta-schema, offline


async def test_the_server_publishes_these_documents(
    client: httpx.AsyncClient, make_client: ClientFactory, document: dict[str, Any]
) -> None:
    for path in ("/openapi.json", "/asyncapi.json"):
        refused = await client.get(path)
        assert refused.status_code == 401, "the API documents need a session, like the rest of the API"
        assert refused.headers["content-type"].startswith("application/problem+json")
    c = await make_client()
    assert (await c.get("/openapi.json")).json() == document
    assert (await c.get("/docs/openapi.json")).json() == document, "the docs page shows the same document"
    assert (await c.get("/asyncapi.json")).json() == msgspec.json.decode(msgspec.json.encode(asyncapi_document()))


def test_a_deprecated_route_sends_deprecation_and_sunset() -> None:
    since, sunset = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 7, 6, tzinfo=UTC)

    @get("/v1/old", **deprecated(since=since, sunset=sunset, link="https://docs.example.com/changelog"))
    async def old() -> dict[str, str]:
        return {"status": "still here"}

    with create_test_client([old], openapi_config=OpenAPIConfig(title="t", version="1")) as client:
        response = client.get("/v1/old")
        assert response.status_code == 200
        assert response.headers["deprecation"] == f"@{int(since.timestamp())}" == "@1767571200"
        assert response.headers["sunset"] == "Mon, 06 Jul 2026 00:00:00 GMT"
        assert response.headers["link"] == '<https://docs.example.com/changelog>; rel="deprecation"; type="text/html"'
        operation = client.app.openapi_schema.to_schema()["paths"]["/v1/old"]["get"]
        assert operation["deprecated"] is True
        assert {"Deprecation", "Sunset", "Link"} <= set(operation["responses"]["200"]["headers"])
    with pytest.raises(ValueError, match="180 days"):
        deprecated(since=since, sunset=since + timedelta(days=30))
    with pytest.raises(ValueError, match="UTC"):
        deprecated(since=datetime(2026, 1, 5), sunset=sunset)  # noqa: DTZ001 - the naive time under test
