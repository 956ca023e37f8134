"""``Idempotency-Key`` on requests that create something (SECURITY 28, ADR 0026).

A client that may retry a request (a timeout, a dropped connection) sends a key of its choosing
with it. The first request with a key runs; its response is kept, and a retry with the same key and
the same request gets that response again (status and body identical, ``Idempotent-Replayed:
true``) without running anything. The same key with a different request is a 422
``idempotency_key_reused``; a retry while the first is still running is a 409
``idempotency_key_in_use`` (with ``Retry-After``), so two requests with one key never both run.
Keys belong to the principal (the user, or an app acting for a user): one user's keys mean nothing
to another. The header is optional; without it a route behaves as before.

Apply it with :func:`idempotent` on a route handler::

    @idempotent
    @post("/things", status_code=201)
    async def create_thing(...) -> ...: ...

It adds three things to the handler, each at the point of the request where it belongs:

* a guard that claims the key. Guards run after authentication, rate limits, the CSRF check and the
  route's other guards, so a refused request never touches a key; the claim is committed before the
  handler runs (its unique index is what admits one request per key);
* an exception handler that answers a replay with the stored response;
* a middleware around the route that holds the claimed request's response back until it is stored.
  A response below 500 is kept: it is the request's outcome, a retry must see it again. A 5xx, or a
  request that raised, releases the key instead, so a retry runs afresh (for an order, a 503 means
  nothing reached the broker). A process that dies mid-request leaves the key claimed until its lease
  (``idempotency_lease_seconds``) runs out.

Only what a retry needs is stored: a SHA-256 of the key, a SHA-256 of the request (method, path,
query and canonical JSON body: key order and spacing do not matter), and the response's status,
body and the headers a retry must see (content type, location, ETag). Rows expire after
``idempotency_ttl_seconds`` and the retention service purges them.

**Sealed responses.** A route whose response carries a secret shown once (a webhook's signing
secret) uses ``@idempotent(sealed=True)``: its stored body is encrypted (AES-256-GCM, bound to the
request's fingerprint) under a key derived (HKDF-SHA256) from the ``Idempotency-Key`` itself, which
is never stored. Only a retry presenting the key can read the response again; a copy of the
database cannot. Clients should use random keys (a UUID) for such requests.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, overload

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.params import HeaderParameter
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from brokerlink.api.auth.middleware import request_db_session
from brokerlink.config import Settings
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import BrokerlinkError, InvalidInput
from brokerlink.logs import get_logger
from brokerlink.security.principal import Principal
from brokerlink.store.db import Database
from brokerlink.store.repositories.idempotency import IdempotencyRepository, StoredResponse

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
KEPT_HEADERS = frozenset({"content-type", "location", "etag", "last-modified"})
"""Response headers a replay carries again; the rest (request id, rate limits, dates) belong to each request."""
_KEY_RE = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")
_STATE_KEY = "brokerlink.idempotency"
SEALED_OPT = "idempotency_sealed"
"""Route ``opt`` key set by ``@idempotent(sealed=True)``."""
_SEALED_PREFIX = b"sealed1:"
_NONCE_BYTES = 12
_log = get_logger("brokerlink.idempotency")


class IdempotencyKeyReused(BrokerlinkError):
    """The key was already used for a different request (method, path or body)."""

    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused"


class IdempotencyKeyInUse(BrokerlinkError):
    """A request with this key is still running; retry after it answered."""

    status = 409
    code = "idempotency_key_in_use"
    title = "Idempotency key in use"


class _Claimed(msgspec.Struct, frozen=True):
    """What the middleware needs of a claimed key: its row, and the sealing key of a sealed route."""

    row_id: str
    secret_key: bytes | None
    fingerprint: str


class _Replay(Exception):
    """Raised by the guard to answer with the first response; rendered by :func:`_replay_response`."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__("idempotent replay")
        self.response = response


def owner_of(principal: Principal) -> str:
    """Whose keys a request's key is among: the user, or the app acting for the user."""
    if principal.kind == "client":
        return f"client:{principal.client_id}:{principal.user_id}"
    return f"user:{principal.user_id}"


def canonical_body(body: bytes) -> bytes:
    """The body in a form where equal JSON documents are equal bytes (sorted keys, no spacing).

    A body that is not JSON is taken as it is (the route refuses it, and that answer is kept too).
    """
    if not body.strip():
        return b""
    try:
        return msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    except msgspec.DecodeError:
        return body


def request_hash(method: str, path: str, query: bytes, body: bytes) -> str:
    """The fingerprint a retry must match: SHA-256 of method, path, query string and canonical body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query, canonical_body(body)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def key_hash(key: str) -> str:
    """What is stored of the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


def sealing_key(key: str, owner: str) -> bytes:
    """The AES-256 key a sealed response is stored under: derived from the client's key, never stored."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"brokerlink-idempotency-v1", info=owner.encode())
    return hkdf.derive(key.encode())


def seal(secret_key: bytes, fingerprint: str, body: bytes) -> bytes:
    """``body`` encrypted for storage, bound to the request's fingerprint."""
    nonce = os.urandom(_NONCE_BYTES)
    return _SEALED_PREFIX + nonce + AESGCM(secret_key).encrypt(nonce, body, fingerprint.encode())


def unseal(secret_key: bytes, fingerprint: str, stored: bytes) -> bytes:
    """The body :func:`seal` stored (raises ``InvalidTag`` when the key or the request differs)."""
    if not stored.startswith(_SEALED_PREFIX):
        return stored
    sealed = stored[len(_SEALED_PREFIX) :]
    return AESGCM(secret_key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], fingerprint.encode())


def _valid_key(value: str) -> str:
    if not _KEY_RE.fullmatch(value):
        message = f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        raise InvalidInput(
            f"{IDEMPOTENCY_HEADER}: {message}",
            extra={"errors": [{"field": IDEMPOTENCY_HEADER, "source": "header", "message": message}]},
        )
    return value


async def claim_key(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: claim the request's ``Idempotency-Key`` (no header: nothing to do).

    Raises :class:`IdempotencyKeyReused` or :class:`IdempotencyKeyInUse`, or answers a retry of a
    finished request with its first response.
    """
    raw = connection.headers.get(IDEMPOTENCY_HEADER)
    principal = connection.scope.get("user")
    if raw is None or not isinstance(principal, Principal) or not isinstance(connection, Request):
        return
    key = _valid_key(raw)
    body = await connection.body()
    state: State = connection.app.state
    settings: Settings = state.settings
    clock: Clock = state.clock
    database: Database = state.db
    shared = request_db_session(connection.scope)
    if shared is not None and shared.in_transaction():
        # What authentication wrote (a session's last-seen time) is committed first: on SQLite the
        # claim below would otherwise wait for this request's own write lock.
        await shared.commit()
    scope = connection.scope
    owner = owner_of(principal)
    fingerprint = request_hash(scope["method"], scope["path"], scope.get("query_string", b""), body)
    secret_key = sealing_key(key, owner) if handler.opt.get(SEALED_OPT) else None
    async with database.session() as session:
        claim = await IdempotencyRepository(session).claim(
            owner=owner,
            key_hash=key_hash(key),
            request_hash=fingerprint,
            now=clock.now(),
            lease=timedelta(seconds=settings.idempotency_lease_seconds),
            ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
        )
        await session.commit()
    if claim.outcome == "run":
        scope.setdefault("state", {})[_STATE_KEY] = _Claimed(claim.row_id or "", secret_key, fingerprint)
    elif claim.outcome == "replay" and claim.response is not None:
        response = claim.response
        if secret_key is not None:
            try:
                response = msgspec.structs.replace(response, body=unseal(secret_key, fingerprint, response.body))
            except InvalidTag:  # the same hash of the key and of the request, another key: never in practice
                raise IdempotencyKeyReused(f"this {IDEMPOTENCY_HEADER} was used for a different request") from None
        raise _Replay(response)
    elif claim.outcome == "mismatch":
        raise IdempotencyKeyReused(f"this {IDEMPOTENCY_HEADER} was used for a different request")
    else:
        raise IdempotencyKeyInUse(
            f"a request with this {IDEMPOTENCY_HEADER} is still being processed", headers={"Retry-After": "1"}
        )


def _replay_response(_: Request[Any, Any, Any], exc: _Replay) -> Response[bytes]:
    stored = exc.response
    headers = {name: value for name, value in stored.headers if name != "content-type"}
    headers[REPLAYED_HEADER] = "true"
    media_type = next((value for name, value in stored.headers if name == "content-type"), None)
    return Response(content=stored.body, status_code=stored.status, headers=headers, media_type=media_type)


class IdempotencyMiddleware:
    """Holds a claimed request's response until it is stored (or the key released), then sends it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        done = False

        async def hold(message: Message) -> None:
            nonlocal done
            claimed = scope.get("state", {}).get(_STATE_KEY)
            if claimed is None:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done = True
                await _settle(scope, claimed, held)
                for item in held:
                    await send(item)

        try:
            await self.app(scope, receive, hold)
        finally:
            claimed = scope.get("state", {}).pop(_STATE_KEY, None)
            if claimed is not None and not done:
                # The route raised past its exception handlers, or never finished its answer.
                await _release(scope, claimed.row_id)


async def _settle(scope: Scope, claimed: _Claimed, messages: list[Message]) -> None:
    start = next(m for m in messages if m["type"] == "http.response.start")
    status = int(start["status"])
    row_id = claimed.row_id
    scope["state"].pop(_STATE_KEY, None)
    if status >= 500:
        await _release(scope, row_id)
        return
    headers = [
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in start.get("headers", [])
        if name.decode("latin-1").lower() in KEPT_HEADERS
    ]
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    if claimed.secret_key is not None:
        body = seal(claimed.secret_key, claimed.fingerprint, body)
    database: Database = scope["litestar_app"].state.db
    async with database.session() as session:
        await IdempotencyRepository(session).complete(row_id, StoredResponse(status=status, headers=headers, body=body))
        await session.commit()


async def _release(scope: Scope, row_id: str) -> None:
    database: Database = scope["litestar_app"].state.db
    try:
        async with database.session() as session:
            await IdempotencyRepository(session).release(row_id)
            await session.commit()
    except Exception:  # noqa: BLE001 - the lease frees the key anyway; the request's outcome is what matters
        _log.exception("idempotency_release_failed")


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name=IDEMPOTENCY_HEADER,
        required=False,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description=(
            "Optional key of your choosing (1-255 printable ASCII characters, e.g. a UUID) that makes a retry "
            "safe: the same key with the same request returns the first response again (header "
            "Idempotent-Replayed: true) and creates nothing; with a different request it is a 422 "
            "idempotency_key_reused; while the first request runs, a 409 idempotency_key_in_use. Keys are kept "
            "24 hours."
        ),
    ),
]
"""The handler parameter that documents the header (``idempotency_key: IdempotencyKey = None``); the
guard reads the header itself, before the handler runs."""


@overload
def idempotent(handler: HTTPRouteHandler, *, sealed: bool = False) -> HTTPRouteHandler: ...
@overload
def idempotent(handler: None = None, *, sealed: bool = False) -> Callable[[HTTPRouteHandler], HTTPRouteHandler]: ...


def idempotent(
    handler: HTTPRouteHandler | None = None, *, sealed: bool = False
) -> HTTPRouteHandler | Callable[[HTTPRouteHandler], HTTPRouteHandler]:
    """Make a route handler honour ``Idempotency-Key`` (see the module docstring). Returns ``handler``.

    ``@idempotent`` or ``@idempotent(sealed=True)`` for a route whose response carries a secret. The
    handler must declare ``idempotency_key: IdempotencyKey = None`` so the OpenAPI document shows
    the header (a route handler has no other place for a parameter it does not use).
    """
    if handler is None:
        return lambda h: idempotent(h, sealed=sealed)
    if "idempotency_key" not in inspect.signature(handler.fn).parameters:
        raise TypeError(f"{handler.handler_name}: declare `idempotency_key: IdempotencyKey = None` to document it")
    handler.guards = [*(handler.guards or []), claim_key]
    handler.middleware = [*(handler.middleware or []), DefineMiddleware(IdempotencyMiddleware)]
    handler.exception_handlers = {**(handler.exception_handlers or {}), _Replay: _replay_response}
    if sealed:
        handler.opt = {**handler.opt, SEALED_OPT: True}
    return handler
