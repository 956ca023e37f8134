"""``/openapi.json``: the machine-readable description of every route, at the conventional path.

Litestar generates the document from the route handlers and their msgspec schemas. Three things
it cannot know are added here, after generation, so that no route file has to repeat them:

* **Errors are problem details.** Every ``/v1`` operation documents the ``application/problem+json``
  responses its shape implies (401/403 unless public, 404 with path parameters, 422 with input,
  412/428 with ``If-Match``, 409 with ``Idempotency-Key``, 429 always, ``default`` for the rest),
  with the ``Problem`` schema and examples rendered by the error classes themselves. Litestar's own
  400 (its validation error shape, which this API never sends) is replaced.
* **Examples.** Every component schema gets an example (:mod:`brokerlink.api.openapi_examples`),
  and so does every inline 2xx schema.
* **Who may call it.** Public routes say ``security: []``; a route a third-party app may call lists
  the ``dpop`` scheme with the scope it needs (``opt=needs(...)``, :mod:`brokerlink.api.scopes`).

The enrichment happens in :meth:`PublishedOpenAPI.to_schema`, so ``app.openapi_schema.to_schema()``,
``/openapi.json`` and the ``/docs`` page all show the same document. Route facts (``opt``) are
collected while Litestar names each operation (:attr:`PublishedOpenAPIConfig.operation_id_creator`
is the one hook it gives with the handler in hand).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from litestar import Request, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import OpenAPI

from brokerlink.api.openapi_examples import OPERATION_EXAMPLES, problem_examples, schema_example, schema_examples
from brokerlink.api.problems import PROBLEM_MEDIA_TYPE
from brokerlink.api.scopes import PER_MESSAGE, required_scope

if TYPE_CHECKING:
    from litestar.handlers import HTTPRouteHandler
    from litestar.types import Method
    from litestar.types.internal_types import PathParameterDefinition

STATE_KEY: Final = "brokerlink.openapi_document"
PROBLEM_SCHEMA: Final = "Problem"
OAUTH_ERROR_SCHEMA: Final = "OAuthError"
DPOP_SCHEME: Final = "dpop"
SESSION_SCHEME: Final = "session"
_UNSAFE: Final = frozenset({"post", "put", "patch", "delete"})
_METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_OAUTH_PREFIXES: Final = ("/oauth/", "/.well-known/")

_PROBLEM: Final[dict[str, Any]] = {
    "type": "object",
    "title": PROBLEM_SCHEMA,
    "description": (
        "RFC 9457 problem details. `code` is stable: clients branch on it, never on `title` or `detail`. "
        "Other members may appear (`errors` on 422, `scope` on insufficient_scope, `reason` on broker_refused)."
    ),
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "`urn:brokerlink:problem:<code>`"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "The stable machine-readable error code."},
        "instance": {"type": "string", "description": "The request path."},
        "request_id": {"type": "string", "description": "The `X-Request-Id` of the request, for support."},
        "errors": {
            "type": "array",
            "description": "On 422 `invalid_input`: one entry per offending field.",
            "items": {
                "type": "object",
                "required": ["field", "source", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "source": {"type": "string", "description": "body, query, path, header or cookie"},
                    "message": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}
_OAUTH_ERROR: Final[dict[str, Any]] = {
    "type": "object",
    "title": OAUTH_ERROR_SCHEMA,
    "description": "An OAuth 2.0 error response (RFC 6749 section 5.2), not problem details.",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "examples": ["invalid_client"]},
        "error_description": {"type": "string"},
    },
    "examples": [{"error": "invalid_client", "error_description": "the client assertion is not valid"}],
}
_STATUS_TEXT: Final[Mapping[int, str]] = {
    400: "Malformed request (the body is not JSON, or a page size is too large)",
    401: "Not authenticated (no session or access token, or an expired one)",
    403: "Forbidden (CSRF token, role, MFA step, or the app's scope)",
    404: "Not found (also: an object the principal may not see)",
    409: "Conflict (another request with this Idempotency-Key is still running)",
    412: "Precondition failed (If-Match names an older version)",
    413: "Payload too large",
    415: "Unsupported media type (send application/json)",
    422: "Invalid input (one entry per field in `errors`)",
    428: "Precondition required (send If-Match with the ETag last read)",
    429: "Too many requests (see Retry-After)",
}


@dataclass(frozen=True)
class RouteFacts:
    """What the document needs to know about an operation beyond what Litestar generated."""

    public: bool
    """No session or token needed (``exclude_from_auth``)."""
    csrf_exempt: bool
    scope: str | None
    """The scope a third-party app needs, or None: only the user themself may call it."""


class PublishedOpenAPI(OpenAPI):
    """Litestar's document object; :meth:`to_schema` returns the enriched document (module docstring)."""

    route_facts: Mapping[str, RouteFacts]

    def to_schema(self) -> dict[str, Any]:
        """The generated document with problems, examples and per-route security added."""
        return enrich(super().to_schema(), getattr(self, "route_facts", {}))


@dataclass
class PublishedOpenAPIConfig(OpenAPIConfig):
    """``OpenAPIConfig`` that publishes :class:`PublishedOpenAPI` (use it in place of ``OpenAPIConfig``)."""

    route_facts: dict[str, RouteFacts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.operation_id_creator = self._name_operation

    def _name_operation(
        self,
        handler: HTTPRouteHandler,
        method: Method,
        components: list[str | PathParameterDefinition],
    ) -> str:
        from litestar._openapi.utils import default_operation_id_creator

        operation_id = default_operation_id_creator(handler, method, components)
        path = "/" + "/".join(c if isinstance(c, str) else "{" + c.name + "}" for c in components)
        opt = handler.opt
        scope = required_scope(opt, path)
        self.route_facts[operation_id] = RouteFacts(
            public=bool(opt.get("exclude_from_auth")),
            csrf_exempt=bool(opt.get("exclude_from_csrf")),
            scope=None if scope == PER_MESSAGE else scope,
        )
        return operation_id

    def to_openapi_schema(self) -> OpenAPI:
        """The base document, as a :class:`PublishedOpenAPI` that sees the collected route facts."""
        base = super().to_openapi_schema()
        published = PublishedOpenAPI(**{name: getattr(base, name) for name in base.__dataclass_fields__})
        published.route_facts = self.route_facts
        return published


def enrich(document: dict[str, Any], facts: Mapping[str, RouteFacts]) -> dict[str, Any]:
    """Add problem responses, examples and per-route security to a generated document (a new dict)."""
    doc = copy.deepcopy(document)
    components = doc.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    schemas.setdefault(PROBLEM_SCHEMA, {**_PROBLEM, "examples": [problem_examples(404)["not_found"]["value"]]})
    schemas.setdefault(OAUTH_ERROR_SCHEMA, _OAUTH_ERROR)
    for name, example in schema_examples(schemas).items():
        schemas[name].setdefault("examples", [example])
    components.setdefault("responses", {}).update(_problem_responses())
    components.setdefault("securitySchemes", {})[DPOP_SCHEME] = {
        "type": "http",
        "scheme": "DPoP",
        "description": (
            "A third-party app's DPoP-bound access token (RFC 9449): `Authorization: DPoP <token>` and a `DPoP` "
            "proof header. The requirement lists the scope the route needs."
        ),
    }
    for path, item in doc.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                _enrich_operation(path, method, operation, facts.get(operation.get("operationId", "")), schemas)
    return doc


def _enrich_operation(
    path: str, method: str, operation: dict[str, Any], facts: RouteFacts | None, schemas: Mapping[str, Any]
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    _inline_examples(responses, schemas, OPERATION_EXAMPLES.get((method, path)))
    _typed_headers(responses)
    if path.startswith(_OAUTH_PREFIXES):
        if method in _UNSAFE:  # RFC 6749 errors, not problems
            for code, text in (("400", "OAuth error (invalid_request, invalid_grant...)"), ("401", "invalid_client")):
                ref = {"$ref": f"#/components/schemas/{OAUTH_ERROR_SCHEMA}"}
                responses[code] = {"description": text, "content": {"application/json": {"schema": ref}}}
        return
    facts = facts or RouteFacts(public=False, csrf_exempt=False, scope=None)
    if facts.public:
        operation["security"] = []
    elif facts.scope is not None:
        operation["security"] = [{SESSION_SCHEME: []}, {DPOP_SCHEME: [facts.scope]}]
    responses.pop("400", None)  # Litestar's validation shape; ours is a problem (422, or 400 malformed)
    for status in sorted(_error_statuses(method, operation, facts)):
        responses[str(status)] = {"$ref": f"#/components/responses/{_response_name(status)}"}
    responses["default"] = {"$ref": f"#/components/responses/{_response_name(None)}"}


def _inline_examples(responses: Mapping[str, Any], schemas: Mapping[str, Any], given: Any) -> None:
    """An example on every 2xx body whose schema is not a component (components carry their own):
    the operation's own from :data:`OPERATION_EXAMPLES`, else one built from the schema."""
    for code, response in responses.items():
        if not code.startswith("2"):
            continue
        for media in (response.get("content") or {}).values():
            schema = media.get("schema", {})
            if "$ref" not in schema and "example" not in media and "examples" not in media:
                media["example"] = given if given is not None else schema_example(schema, schemas)


def _typed_headers(responses: Mapping[str, Any]) -> None:
    """A response header documented without a schema (``ResponseHeader(name, description=...)``) is a
    string: OpenAPI requires ``schema`` or ``content`` on every header object."""
    for response in responses.values():
        for header in (response.get("headers") or {}).values():
            if "schema" not in header and "content" not in header:
                header["schema"] = {"type": "string"}


def _error_statuses(method: str, operation: Mapping[str, Any], facts: RouteFacts) -> set[int]:
    """The problem statuses an operation's shape implies (module docstring)."""
    parameters = operation.get("parameters", [])
    names = {(p.get("in"), str(p.get("name", "")).lower()) for p in parameters}
    has_body = "requestBody" in operation
    unsafe = method in _UNSAFE
    rules: list[tuple[bool, tuple[int, ...]]] = [
        (True, (429,)),
        (has_body or ("query", "limit") in names, (400,)),
        (not facts.public or unsafe, (401,)),
        (not facts.public or (unsafe and not facts.csrf_exempt), (403,)),
        (any(p.get("in") == "path" for p in parameters), (404,)),
        (("header", "idempotency-key") in names, (409,)),
        (("header", "if-match") in names, (412, 428)),
        (has_body, (413, 415)),
        (has_body or bool(parameters), (422,)),
    ]
    return {status for applies, statuses in rules if applies for status in statuses}


def _response_name(status: int | None) -> str:
    return f"Problem{status}" if status is not None else "ProblemDefault"


def _problem_responses() -> dict[str, Any]:
    """The shared error responses the operations refer to (``components/responses``)."""
    out = {
        _response_name(status): _problem_response(text, problem_examples(status))
        for status, text in _STATUS_TEXT.items()
    }
    out[_response_name(None)] = _problem_response(
        "Any other error, as problem details (e.g. 503 `unavailable` when a broker does not answer)",
        problem_examples(503),
    )
    return out


def _problem_response(description: str, examples: dict[str, Any]) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}
    if examples:
        media["examples"] = examples
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: media}}


def published_openapi(request_app: Any) -> dict[str, Any]:
    """The app's enriched document, built once per app."""
    state = request_app.state
    document = state.get(STATE_KEY)
    if document is None:
        document = request_app.openapi_schema.to_schema()
        state[STATE_KEY] = document
    result: dict[str, Any] = document
    return result


@get("/openapi.json", include_in_schema=False, summary="OpenAPI document")
async def openapi_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every HTTP route (module docstring); the same as ``docs/openapi.json``."""
    return published_openapi(request.app)
