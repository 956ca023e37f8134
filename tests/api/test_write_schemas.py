"""Write schemas and pages, walked from the published OpenAPI document (SECURITY 20, 27).

Every write operation with a JSON body refuses a field its schema does not declare (``owner_id``,
``balance``, ``role``, ...) with 422, before anything runs; no response schema carries a credential
or token except the few that exist to hand one over once (listed below, each with its reason); and
every list operation refuses a page larger than the server hands out with 400. Because the walk
starts from the document, an operation added later is covered without editing this file.
(tests/api/test_validation.py breaks each write route's *valid* body in more ways.)
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from litestar import Litestar

from brokerlink.domain.enums import Role
from brokerlink.store.db import Database
from brokerlink.store.repositories._common import MAX_PAGE
from brokerlink.store.repositories.users import UserRepository

WRITE_METHODS = ("post", "put", "patch", "delete")
SMUGGLED: dict[str, Any] = {
    "owner_id": "usr_01ATTACKER000000000000000",
    "user_id": "usr_01ATTACKER000000000000000",
    "balance": "1000000",
    "role": "admin",
    "is_admin": True,
}
SECRET_NAME = re.compile(
    r"password|secret|token|api_?key|private|credential|otpauth|recovery|assertion|verifier", re.IGNORECASE
)
# Response properties that look like secrets, and why each may be there. Anything else a response
# schema adds with such a name fails the test until it is justified here.
ALLOWED_SECRET_LOOKALIKES = {
    ("GET", "/v1/auth/csrf", "$.csrf_token"): "the CSRF token the dashboard echoes: not a credential",
    ("POST", "/v1/auth/mfa", "$.recovery_codes_left"): "a count",
    ("GET", "/v1/me/mfa", "$.recovery_codes_left"): "a count",
    ("POST", "/v1/me/mfa/totp", "$.secret"): "the TOTP secret, shown once at enrolment to the user enrolling",
    ("POST", "/v1/me/mfa/totp", "$.otpauth_uri"): "the same secret as a QR code's URI, shown once",
    ("POST", "/v1/me/mfa/totp/confirm", "$.recovery_codes"): "recovery codes, shown once at confirmation",
    ("POST", "/v1/admin/alert-webhooks", "$.secret"): "the webhook signing secret, shown once to the admin",
    ("POST", "/v1/webhooks", "$.secret"): "the endpoint's signing secret, shown once to the user registering it",
    ("GET", "/v1/brokers", "$.data[].credential_fields"): "the names of a broker's credential fields, no values",
    ("GET", "/v1/admin/brokers", "$.data[].credential_fields"): "the same names, in the administrators' view",
    ("GET", "/v1/admin/brokers/{kind}", "$.credential_fields"): "the same names, for one broker kind",
    ("GET", "/v1/admin/clients", "$.data[].token_endpoint_auth_method"): "a method name (private_key_jwt)",
    ("POST", "/v1/admin/clients", "$.token_endpoint_auth_method"): "a method name",
    ("GET", "/v1/admin/clients/{client_id}", "$.token_endpoint_auth_method"): "a method name",
    ("PATCH", "/v1/admin/clients/{client_id}", "$.token_endpoint_auth_method"): "a method name",
}
PLACEHOLDER = "x_00000000000000000000000000"
"""Stands for every path parameter: the body is refused before any object is looked up."""


@pytest.fixture
async def document(admin: httpx.AsyncClient) -> dict[str, Any]:
    r = await admin.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


@pytest.fixture
async def admin(app: Litestar, make_client: Any) -> httpx.AsyncClient:
    """A signed-in admin who has just verified MFA, so role and step-up checks let the body through."""
    c = await make_client("root@example.com", "Root", mfa=True)
    database: Database = app.state.db
    async with database.session() as s:
        user = await UserRepository(s).get_by_email("root@example.com")
        assert user is not None
        await UserRepository(s).set_role(user.id, Role.ADMIN, now=app.state.clock.now())
        await s.commit()
    return c


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in sorted(doc["paths"].items())
        for method, op in sorted(item.items())
        if isinstance(op, dict) and "responses" in op
    ]


def url_of(path: str) -> str:
    return re.sub(r"\{\w+\}", PLACEHOLDER, path)


async def test_security20_every_write_schema_refuses_unknown_fields(
    document: dict[str, Any], admin: httpx.AsyncClient
) -> None:
    checked, failures = 0, []
    for method, path, op in operations(document):
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if method.lower() not in WRITE_METHODS or body is None:
            continue
        declared = set(resolve(document, body["schema"]).get("properties", {}))
        for field, value in SMUGGLED.items():
            if field in declared:
                continue
            r = await admin.request(method, url_of(path), json={field: value})
            checked += 1
            if r.status_code != 422 or r.json().get("code") != "invalid_input" or field not in r.text:
                failures.append(f"{method} {path} +{field}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
    assert checked >= 60, checked  # the walk found the write routes (about 20 JSON bodies, 3-5 fields each)


def _secret_lookalikes(doc: dict[str, Any], schema: Any, path: str, seen: frozenset[str]) -> list[str]:
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return _secret_lookalikes(doc, doc["components"]["schemas"][name], path, seen | {name})
    found = []
    for name, sub in schema.get("properties", {}).items():
        if SECRET_NAME.search(name):
            found.append(f"{path}.{name}")
        found += _secret_lookalikes(doc, sub, f"{path}.{name}", seen)
    for key in ("items", "additionalProperties"):
        found += _secret_lookalikes(doc, schema.get(key), f"{path}[]", seen)
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(key, []):
            found += _secret_lookalikes(doc, sub, path, seen)
    return found


def test_security20_no_response_schema_carries_credentials_or_tokens(document: dict[str, Any]) -> None:
    found = {
        (method, path, prop)
        for method, path, op in operations(document)
        for response in op["responses"].values()
        for content in response.get("content", {}).values()
        for prop in _secret_lookalikes(document, content.get("schema"), "$", frozenset())
    }
    unexplained = found - set(ALLOWED_SECRET_LOOKALIKES)
    assert not unexplained, sorted(unexplained)


async def test_security27_every_paginated_operation_refuses_an_oversized_page(
    document: dict[str, Any], admin: httpx.AsyncClient
) -> None:
    paginated = [
        (path, param)
        for method, path, op in operations(document)
        if method == "GET"
        for param in op.get("parameters", [])
        if param["in"] == "query" and param["name"] == "limit"
    ]
    assert len(paginated) >= 15, paginated
    for path, param in paginated:
        maximum = param["schema"].get("maximum")
        assert maximum is not None, path  # the document states the cap
        assert maximum <= MAX_PAGE, (path, maximum)
        r = await admin.get(url_of(path), params={"limit": MAX_PAGE + 1})
        assert r.status_code == 400, (path, r.text)
        assert r.json()["code"] == "page_size_too_large", path


async def test_security27_an_oversized_body_is_413_on_every_write_operation(
    document: dict[str, Any], admin: httpx.AsyncClient, app: Litestar
) -> None:
    too_big = b'{"x": "' + b"a" * app.state.settings.max_body_bytes + b'"}'
    for method, path, _ in operations(document):
        if method.lower() in WRITE_METHODS:
            r = await admin.request(method, url_of(path), content=too_big, headers={"content-type": "application/json"})
            assert r.status_code == 413, (method, path, r.status_code)
