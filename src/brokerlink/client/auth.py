"""How the client authenticates: a DPoP-bound access token (apps) or a session (first-party scripts).

An :class:`Auth` gives the headers of each request and decides whether a refused one is worth one
retry: a DPoP token answers ``use_dpop_nonce`` challenges with the server's nonce, and refreshes an
expired access token with its refresh token when it has one. The same headers open the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import httpx

from brokerlink.client.dpop import DPoPKey, htu
from brokerlink.client.errors import BrokerlinkClientError
from brokerlink.client.oauth import OAuthClient, Tokens

__all__ = ["Auth", "DPoPAuth", "SessionAuth"]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Auth(Protocol):
    """Headers for a request, and whether to retry one that was refused."""

    async def headers(self, http: httpx.AsyncClient | None, method: str, url: str) -> dict[str, str]:
        """The authentication headers of ``method url`` (``url`` absolute; ws(s) for the stream)."""
        ...

    async def retry(self, url: str, response: httpx.Response, attempt: int) -> bool:
        """Whether to send the request again after ``response`` (``attempt`` counts from 0)."""
        ...


def _challenge(response: httpx.Response) -> str:
    return str(response.headers.get("www-authenticate", ""))


class DPoPAuth:
    """``Authorization: DPoP <token>`` with a fresh proof (``ath``) per request.

    With ``oauth`` and a refresh token, an access token about to expire (or refused as expired) is
    refreshed first; ``on_refresh`` hears of the new tokens (to store them).
    """

    def __init__(
        self,
        tokens: Tokens,
        dpop: DPoPKey,
        *,
        oauth: OAuthClient | None = None,
        on_refresh: Callable[[Tokens], None] | None = None,
    ) -> None:
        self.tokens = tokens
        self.dpop = dpop
        self.oauth = oauth
        self.on_refresh = on_refresh
        self._lock = asyncio.Lock()

    @property
    def can_refresh(self) -> bool:
        """Whether a refresh token and the app's OAuth client are at hand."""
        return self.oauth is not None and self.tokens.refresh_token is not None

    async def refresh(self, stale: Tokens | None = None) -> Tokens:
        """New tokens (once, however many requests ask at the same time)."""
        if self.oauth is None:
            raise BrokerlinkClientError("refreshing needs the app's OAuthClient")
        async with self._lock:
            if stale is None or self.tokens is stale:
                self.tokens = await self.oauth.refresh(self.tokens)
                if self.on_refresh is not None:
                    self.on_refresh(self.tokens)
        return self.tokens

    async def headers(self, http: httpx.AsyncClient | None, method: str, url: str) -> dict[str, str]:  # noqa: ARG002
        if self.can_refresh and self.tokens.expiring(self.dpop.clock()):
            await self.refresh(self.tokens)
        token = self.tokens.access_token
        return {"Authorization": f"DPoP {token}", "DPoP": self.dpop.proof(method, url, token)}

    async def retry(self, url: str, response: httpx.Response, attempt: int) -> bool:
        fresh_nonce = self.dpop.remember_nonce(url, response.headers)
        if response.status_code != 401 or attempt > 1:
            return False
        if "use_dpop_nonce" in _challenge(response):
            return fresh_nonce
        if attempt == 0 and self.can_refresh and "invalid_dpop_proof" not in _challenge(response):
            await self.refresh(self.tokens)
            return True
        return False


class SessionAuth:
    """A signed-in session: the cookie lives in the HTTP client's jar, the CSRF token goes with every
    change. :meth:`AsyncBrokerlink.login <brokerlink.client.AsyncBrokerlink.login>` makes one."""

    def __init__(self, csrf_token: str | None = None) -> None:
        self.csrf_token = csrf_token

    async def headers(self, http: httpx.AsyncClient | None, method: str, url: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        if method.upper() in _UNSAFE and self.csrf_token:
            headers["x-csrf-token"] = self.csrf_token
        if http is not None and url.startswith(("ws://", "wss://")):
            # The jar's own rules (domain, path, Secure only over wss) for the socket's http(s) form.
            probe = httpx.Request(method, htu(url))
            http.cookies.set_cookie_header(probe)
            if cookie := probe.headers.get("cookie"):
                headers["Cookie"] = cookie
        return headers

    async def retry(self, url: str, response: httpx.Response, attempt: int) -> bool:  # noqa: ARG002
        return False
