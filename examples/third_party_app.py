"""A third-party app against brokerlink: the whole FAPI 2.0 flow, with the Python client.

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

The protocol work (assertions, proofs, nonces, PKCE, the checks on the redirect, refresh) is done by
``brokerlink.client`` (docs/client.md); this script adds the browser and the loopback listener. It
registers nothing by itself. Run it against the demo (see the README, "Try a third-party app against
the demo")::

    python examples/third_party_app.py --issuer http://127.0.0.1:8000 \\
        --client-id cli_... --key app-private-jwk.json

The steps are separate functions so a test (tests/e2e/test_third_party_flow.py) can run each of them
against the app in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from brokerlink.client import (
    Account,
    AsyncBrokerlink,
    Authorization,
    BrokerlinkClientError,
    OAuthClient,
    Tokens,
    load_private_key,
    new_client_key,
)
from brokerlink.client.oauth import ClientKey

DEFAULT_SCOPE = "accounts:read balances:read"

__all__ = [
    "DEFAULT_SCOPE",
    "LoopbackListener",
    "finish",
    "list_accounts",
    "load_private_key",
    "main",
    "new_key",
    "run",
    "start",
]


# --- the flow's steps ------------------------------------------------------------------------------------


async def start(oauth: OAuthClient, redirect_uri: str, scope: str = DEFAULT_SCOPE) -> Authorization:
    """Steps 1-2: the pushed authorization request; its ``url`` is where the browser goes."""
    return await oauth.push_authorization_request(redirect_uri=redirect_uri, scope=scope)


async def finish(oauth: OAuthClient, authorization: Authorization, redirected_to: str) -> Tokens:
    """Steps 3-4: check the redirect (``state``, ``iss``) and exchange its code for DPoP-bound tokens."""
    code = oauth.read_callback(authorization, redirected_to)
    return await oauth.exchange_code(authorization, code)


async def list_accounts(api: AsyncBrokerlink) -> list[Account]:
    """Step 5: the accounts the user consented to share."""
    return [account async for account in api.iter_accounts()]


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
            raise RuntimeError("the listener is not running")
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
    key: ClientKey,
    *,
    port: int,
    scope: str = DEFAULT_SCOPE,
    open_browser: Callable[[str], object] = webbrowser.open,
    timeout_s: float = 300,
    clock: Callable[[], float] = time.time,
) -> list[Account]:
    """The whole flow; returns the consented accounts. ``clock``: seconds since the epoch, for the
    assertions and proofs (a test passes the server's)."""
    issuer = issuer.rstrip("/")
    async with LoopbackListener(port) as listener, httpx.AsyncClient(timeout=30) as http:
        oauth = OAuthClient(http, issuer=issuer, client_id=client_id, key=key, clock=clock)
        authorization = await start(oauth, listener.redirect_uri, scope)
        print(f"Opening the browser at {authorization.url}", file=sys.stderr)
        open_browser(authorization.url)
        tokens = await finish(oauth, authorization, await listener.wait(timeout_s))
        print(f"Token granted for: {tokens.scope}", file=sys.stderr)
        api = AsyncBrokerlink.with_tokens(issuer, tokens, oauth.dpop, oauth=oauth, http=http)
        return await list_accounts(api)


def new_key(path: Path) -> str:
    """Write a new P-256 private key (JWK) to ``path`` (mode 600); returns the public JWKS to register."""
    return json.dumps(new_client_key(path), indent=2)


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
    except (BrokerlinkClientError, httpx.HTTPError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for account in accounts:
        print(f"{account.id}  {account.name}  {account.currency}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
