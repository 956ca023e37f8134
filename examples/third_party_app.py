"""A third-party app against brokerlink: the whole FAPI 2.0 flow, in one small script.

Given a registered client (its id, and the private key whose public half an admin registered) it:

1. pushes its authorization request (PAR, RFC 9126), authenticating with ``private_key_jwt`` and
   binding the future tokens to a fresh DPoP key (``dpop_jkt``), with PKCE S256 and a ``state``;
2. opens the browser at ``/authorize`` with the returned ``request_uri``, where the user signs in,
   sees what the app asks for, picks accounts and approves with their authenticator code;
3. catches the redirect on a loopback listener (``http://127.0.0.1:<port>/callback``), checking
   ``state`` and the issuer (``iss``, RFC 9207);
4. exchanges the code at the token endpoint with the PKCE verifier and a DPoP proof;
5. lists the consented accounts with DPoP-bound requests (``Authorization: DPoP`` plus a proof
   per request, with ``ath``).

It registers nothing by itself. Run it against the demo (see the README, "Try a third-party app
against the demo")::

    python examples/third_party_app.py --issuer http://127.0.0.1:8000 \\
        --client-id cli_... --key app-private-jwk.json

Only httpx and joserfc are needed (both are brokerlink dependencies). The functions are small and
separate so a test (tests/e2e/test_third_party_flow.py) can run each step against the app in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import sys
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_SCOPE = "accounts:read balances:read"
SIGNING_ALGS = {"EC": "ES256", "RSA": "PS256", "OKP": "EdDSA"}
"""The algorithm for each kind of client key: brokerlink accepts only these three (FAPI 2.0)."""


class FlowError(RuntimeError):
    """A step of the flow failed; the message says which and what the server answered."""


# --- keys, proofs and assertions ----------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_private_key(path: Path) -> ECKey | RSAKey | OKPKey:
    """The client's private key: a JWK (JSON) or a PEM file. It must be an EC P-256, RSA or Ed25519 key."""
    data = path.read_bytes()
    key = import_key(json.loads(data)) if data.lstrip().startswith(b"{") else _import_pem(data)
    if not isinstance(key, ECKey | RSAKey | OKPKey) or not key.is_private:
        raise FlowError(f"{path}: not a private EC, RSA or OKP key")
    return key


def _import_pem(data: bytes) -> ECKey | RSAKey | OKPKey:
    for kind in ("EC", "RSA", "OKP"):
        with contextlib.suppress(Exception):
            key = import_key(data, kind)
            if isinstance(key, ECKey | RSAKey | OKPKey):
                return key
    raise FlowError("the key file is neither a JWK nor a PEM private key")


def client_assertion(
    client_id: str, key: ECKey | RSAKey | OKPKey, audience: str, *, now: float | None = None, lifetime_s: int = 60
) -> str:
    """A ``private_key_jwt`` client assertion (RFC 7523): signed by the client, single use (``jti``)."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": issued, "exp": issued + lifetime_s}
    claims["jti"] = secrets.token_urlsafe(24)
    header: dict[str, Any] = {"alg": SIGNING_ALGS[key.key_type], "typ": "JWT"}
    if key.kid:
        header["kid"] = key.kid
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


@dataclass
class DPoPKey:
    """The app's proof-of-possession key (RFC 9449): a fresh P-256 key per run; tokens are bound to it."""

    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", private=True))
    nonces: dict[str, str] = field(default_factory=dict)
    """The latest ``DPoP-Nonce`` each server origin asked for."""
    clock: Callable[[], float] = time.time
    """Seconds since the epoch (a test sets the server's clock)."""

    @property
    def jkt(self) -> str:
        """The key's JWK thumbprint (RFC 7638), which the tokens' ``cnf.jkt`` names."""
        return str(self.key.thumbprint())

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        """A DPoP proof for one request: method, URL (no query), time, a fresh ``jti``; ``ath`` with a token."""
        parts = urlsplit(url)
        htu = f"{parts.scheme}://{parts.netloc}{parts.path}"
        claims: dict[str, Any] = {"htm": method, "htu": htu, "iat": int(self.clock()), "jti": secrets.token_urlsafe(24)}
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        if nonce := self.nonces.get(f"{parts.scheme}://{parts.netloc}"):
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}
        return jwt.encode(header, claims, self.key, algorithms=["ES256"])

    def remember_nonce(self, url: str, response: httpx.Response) -> bool:
        """Keep a ``DPoP-Nonce`` the server sent; True when it is new (the request is worth retrying)."""
        nonce = response.headers.get("dpop-nonce")
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if not nonce or self.nonces.get(origin) == nonce:
            return False
        self.nonces[origin] = nonce
        return True


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


# --- the flow ------------------------------------------------------------------------------------------


@dataclass
class App:
    """Everything the app knows about itself and the server."""

    issuer: str
    client_id: str
    key: ECKey | RSAKey | OKPKey
    redirect_uri: str
    scope: str = DEFAULT_SCOPE
    dpop: DPoPKey = field(default_factory=DPoPKey)
    metadata: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    """Seconds since the epoch, for assertions (a test sets the server's clock)."""

    def assertion(self) -> str:
        """A fresh client assertion for this server."""
        return client_assertion(self.client_id, self.key, self.issuer, now=self.clock())


@dataclass
class Authorization:
    """A pushed request waiting for the user: where to send the browser, and what to check on return."""

    url: str
    state: str
    verifier: str


@dataclass
class Tokens:
    """What the token endpoint returned."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = None


async def discover(http: httpx.AsyncClient, app: App) -> dict[str, Any]:
    """Read the authorization server's metadata (RFC 8414) and check it names the expected issuer."""
    response = await http.get(f"{app.issuer}/.well-known/oauth-authorization-server")
    _expect(response, 200, "metadata")
    metadata: dict[str, Any] = response.json()
    if metadata.get("issuer") != app.issuer:
        raise FlowError(f"metadata names issuer {metadata.get('issuer')!r}, expected {app.issuer!r}")
    app.metadata = metadata
    return metadata


async def push_authorization_request(http: httpx.AsyncClient, app: App) -> Authorization:
    """Step 1: PAR with ``private_key_jwt``, PKCE S256, ``state`` and the DPoP key's thumbprint."""
    endpoint = app.metadata["pushed_authorization_request_endpoint"]
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    form = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": app.redirect_uri,
        "scope": app.scope,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "dpop_jkt": app.dpop.jkt,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": app.assertion(),
    }
    response = await http.post(endpoint, data=form)
    _expect(response, 201, "pushed authorization request")
    request_uri = response.json()["request_uri"]
    query = urlencode({"client_id": app.client_id, "request_uri": request_uri})
    return Authorization(url=f"{app.metadata['authorization_endpoint']}?{query}", state=state, verifier=verifier)


def read_callback(app: App, authorization: Authorization, redirected_to: str) -> str:
    """Step 3: the code from the redirect, after checking ``state`` and ``iss`` (RFC 9207: no mix-up)."""
    params = {k: v[0] for k, v in parse_qs(urlsplit(redirected_to).query).items()}
    if params.get("state") != authorization.state:
        raise FlowError("the redirect's state does not match: not the answer to this request")
    if params.get("iss") != app.issuer:
        raise FlowError(f"the redirect's iss is {params.get('iss')!r}, expected {app.issuer!r}")
    if "error" in params:
        raise FlowError(f"authorization refused: {params['error']} {params.get('error_description', '')}".strip())
    if "code" not in params:
        raise FlowError("the redirect carries no code")
    return params["code"]


async def exchange_code(http: httpx.AsyncClient, app: App, authorization: Authorization, code: str) -> Tokens:
    """Step 4: code + PKCE verifier + client assertion, with a DPoP proof (retried once with a nonce)."""
    endpoint = app.metadata["token_endpoint"]
    for _ in range(2):
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uri,
            "code_verifier": authorization.verifier,
            "client_id": app.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": app.assertion(),
        }
        response = await http.post(endpoint, data=form, headers={"DPoP": app.dpop.proof("POST", endpoint)})
        if (
            response.status_code == 400
            and _error(response) == "use_dpop_nonce"
            and app.dpop.remember_nonce(endpoint, response)
        ):
            continue
        _expect(response, 200, "token request")
        body = response.json()
        if body.get("token_type", "").lower() != "dpop":
            raise FlowError(f"expected a DPoP-bound token, got token_type {body.get('token_type')!r}")
        return Tokens(
            access_token=body["access_token"],
            token_type=body["token_type"],
            expires_in=int(body.get("expires_in", 0)),
            scope=body.get("scope", ""),
            refresh_token=body.get("refresh_token"),
        )
    raise FlowError("the token endpoint kept asking for a new DPoP nonce")


async def api_get(http: httpx.AsyncClient, app: App, tokens: Tokens, path: str) -> Any:
    """Step 5: a DPoP-bound API request (the token in the Authorization header, never in the URL)."""
    url = f"{app.issuer}{path}"
    for _ in range(2):
        headers = {
            "Authorization": f"DPoP {tokens.access_token}",
            "DPoP": app.dpop.proof("GET", url, tokens.access_token),
        }
        response = await http.get(url, headers=headers)
        if response.status_code == 401 and app.dpop.remember_nonce(url, response):
            continue
        _expect(response, 200, f"GET {path}")
        return response.json()
    raise FlowError(f"GET {path}: the server kept asking for a new DPoP nonce")


async def list_accounts(http: httpx.AsyncClient, app: App, tokens: Tokens) -> list[dict[str, Any]]:
    """The accounts the user consented to share."""
    body = await api_get(http, app, tokens, "/v1/accounts")
    accounts: list[dict[str, Any]] = body["data"]
    return accounts


def _error(response: httpx.Response) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        error = response.json().get("error")
        return str(error) if error else None
    return None


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise FlowError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")


# --- the loopback redirect listener ----------------------------------------------------------------------

_DONE_PAGE = b"<!doctype html><title>Done</title><p>You can close this tab and go back to the terminal.</p>"


class LoopbackListener:
    """A one-shot HTTP listener on 127.0.0.1 that catches the authorization redirect (RFC 8252)."""

    def __init__(self, port: int = 0, path: str = "/callback") -> None:
        self.port = port
        self.path = path
        self._server: asyncio.Server | None = None
        self._redirect: asyncio.Future[str] | None = None

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def __aenter__(self) -> LoopbackListener:
        self._redirect = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait(self, timeout_s: float) -> str:
        """The full URL the browser was redirected to (waits at most ``timeout_s``)."""
        if self._redirect is None:
            raise FlowError("the listener is not running")
        return await asyncio.wait_for(self._redirect, timeout=timeout_s)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), timeout=10)).decode("latin-1")
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # headers: not needed
            method, target, _ = [*line.split(" ", 2), "", ""][:3]
            found = method == "GET" and urlsplit(target).path == self.path
            status = b"200 OK" if found else b"404 Not Found"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html\r\nConnection: close\r\n")
            writer.write(b"Content-Length: " + str(len(_DONE_PAGE)).encode() + b"\r\n\r\n" + _DONE_PAGE)
            await writer.drain()
            if found and self._redirect is not None and not self._redirect.done():
                self._redirect.set_result(f"http://127.0.0.1:{self.port}{target}")
        finally:
            writer.close()


# --- the script ------------------------------------------------------------------------------------------


async def run(
    issuer: str,
    client_id: str,
    key: ECKey | RSAKey | OKPKey,
    *,
    port: int,
    scope: str = DEFAULT_SCOPE,
    open_browser: Callable[[str], object] = webbrowser.open,
    timeout_s: float = 300,
) -> list[dict[str, Any]]:
    """The whole flow; returns the consented accounts."""
    async with LoopbackListener(port) as listener, httpx.AsyncClient(timeout=30) as http:
        app = App(issuer=issuer.rstrip("/"), client_id=client_id, key=key, redirect_uri=listener.redirect_uri)
        app.scope = scope
        await discover(http, app)
        authorization = await push_authorization_request(http, app)
        print(f"Opening the browser at {authorization.url}", file=sys.stderr)
        open_browser(authorization.url)
        code = read_callback(app, authorization, await listener.wait(timeout_s))
        tokens = await exchange_code(http, app, authorization, code)
        print(f"Token granted for: {tokens.scope}", file=sys.stderr)
        return await list_accounts(http, app, tokens)


def new_key(path: Path) -> str:
    """Write a new P-256 private key (JWK) to ``path`` (mode 600); returns the public JWKS to register."""
    key = ECKey.generate_key("P-256", private=True)
    private = key.as_dict(private=True) | {"kid": key.thumbprint(), "alg": "ES256", "use": "sig"}
    path.touch(mode=0o600, exist_ok=False)
    path.write_text(json.dumps(private))
    public = {k: v for k, v in private.items() if k != "d"}
    return json.dumps({"keys": [public]}, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--issuer", default="http://127.0.0.1:8000", help="brokerlink's base URL (its issuer)")
    parser.add_argument("--client-id", help="the client id an admin registered")
    parser.add_argument("--key", required=True, type=Path, help="the client's private key (JWK JSON or PEM)")
    parser.add_argument(
        "--new-key", action="store_true", help="create the key file and print the public key set to register, then exit"
    )
    parser.add_argument("--port", type=int, default=8765, help="loopback port of the registered redirect URI")
    parser.add_argument("--scope", default=DEFAULT_SCOPE, help="space-separated scopes to ask for")
    args = parser.parse_args(argv)
    if args.new_key:
        print(new_key(args.key))
        return 0
    if not args.client_id:
        parser.error("--client-id is required")
    try:
        accounts = asyncio.run(
            run(args.issuer, args.client_id, load_private_key(args.key), port=args.port, scope=args.scope)
        )
    except (FlowError, httpx.HTTPError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for account in accounts:
        print(f"{account['id']}  {account.get('name', '')}  {account.get('currency', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
