"""The public keys a client signs its assertions with: its registered ``jwks``, or fetched from ``jwks_uri``.

A ``jwks_uri`` is a URL the client chose, so fetching it is a server-side request on someone
else's behalf (SECURITY.md 30): the URL is checked by :func:`brokerlink.security.outbound.check_public_url`
right before every fetch, redirects are not followed, and the answer is bounded in size and time.
A fetched set is cached for ``oauth_jwks_cache_seconds`` per URL (a client rotating its key
waits at most that long); a failed fetch is never cached.

Only public keys of the types the allowed algorithms use are kept: EC P-256 (ES256), RSA of 2048
to 4096 bits (PS256) and Ed25519 (EdDSA). A set holding a private or symmetric key is refused
whole: a client that publishes its private key has lost it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jwk
from joserfc.errors import JoseError
from joserfc.util import urlsafe_b64decode

from brokerlink.kit.errors import InvalidInput
from brokerlink.security.outbound import Resolver, check_public_url, resolve

__all__ = ["ClientKeyError", "ClientKeys", "parse_jwks"]

MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 20
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CURVES = {"EC": "P-256", "OKP": "Ed25519"}


class ClientKeyError(Exception):
    """The client's keys cannot be had (malformed set, refused or failed fetch). The message names why."""


def _rsa_bits(modulus: object) -> int:
    if not isinstance(modulus, str):
        return 0
    try:
        return int.from_bytes(urlsafe_b64decode(modulus.encode("ascii")), "big").bit_length()
    except (ValueError, TypeError):
        return 0


def parse_jwks(data: object) -> jwk.KeySet:  # noqa: PLR0912 - one branch per refusal
    """A key set from a JWKS document (dict or JSON text), keeping only acceptable public signing keys."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError:
            raise ClientKeyError("jwks is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ClientKeyError("jwks must be an object with a 'keys' array")
    raw_keys: list[Any] = data["keys"]
    if len(raw_keys) > MAX_KEYS:
        raise ClientKeyError(f"jwks holds more than {MAX_KEYS} keys")
    keys: list[jwk.Key] = []
    for item in raw_keys:
        if not isinstance(item, dict):
            raise ClientKeyError("jwks key is not an object")
        if _PRIVATE_MEMBERS & item.keys():
            raise ClientKeyError("jwks must hold public keys only")
        if item.get("use", "sig") != "sig":
            continue
        kty = item.get("kty")
        if kty == "RSA":
            if not 2048 <= _rsa_bits(item.get("n")) <= 4096:
                continue
        elif kty in _CURVES:
            if item.get("crv") != _CURVES[kty]:
                continue
        else:
            continue
        try:
            keys.append(jwk.import_key(item))
        except (JoseError, ValueError, TypeError, KeyError):
            raise ClientKeyError("jwks key is not a valid key") from None
    if not keys:
        raise ClientKeyError("jwks holds no usable signing key (EC P-256, RSA 2048-4096, Ed25519)")
    return jwk.KeySet(keys)


class ClientKeys:
    """Resolves a client's key set, fetching ``jwks_uri`` through the SSRF check and caching the result."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        cache_seconds: int = 300,
        allow_loopback: bool = False,
        allowed_hosts: frozenset[str] = frozenset(),
        resolver: Resolver = resolve,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._now = now
        self.cache_for = timedelta(seconds=cache_seconds)
        self.allow_loopback = allow_loopback
        self.allowed_hosts = allowed_hosts
        """Hosts accepted whatever they resolve to (``oauth_jwks_uri_allowed_hosts``, as at registration)."""
        self.resolver = resolver
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False, transport=transport
        )
        self._cache: dict[str, tuple[datetime, jwk.KeySet]] = {}

    async def keys_for(self, *, jwks: str | None, jwks_uri: str | None) -> jwk.KeySet:
        """The key set of a client registered with ``jwks`` or ``jwks_uri``; :class:`ClientKeyError` if none."""
        if jwks:
            return parse_jwks(jwks)
        if not jwks_uri:
            raise ClientKeyError("the client has neither jwks nor jwks_uri")
        cached = self._cache.get(jwks_uri)
        now = self._now()
        if cached is not None and now - cached[0] < self.cache_for:
            return cached[1]
        keys = await self._fetch(jwks_uri)
        if len(self._cache) > 10_000:  # bounded: the registered clients, not the world
            self._cache.clear()
        self._cache[jwks_uri] = (now, keys)
        return keys

    def forget(self, jwks_uri: str) -> None:
        """Drop a cached set (a client re-registered its keys)."""
        self._cache.pop(jwks_uri, None)

    async def _fetch(self, url: str) -> jwk.KeySet:
        parts = urlsplit(url)
        allow_listed = parts.scheme == "https" and (parts.hostname or "").lower() in self.allowed_hosts
        if not allow_listed:
            try:
                await check_public_url(
                    url, allow_loopback=self.allow_loopback, resolver=self.resolver, field="jwks_uri"
                )
            except InvalidInput as exc:
                raise ClientKeyError(exc.detail) from None
        try:
            async with self._http.stream("GET", url, headers={"accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise ClientKeyError(f"jwks_uri answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_JWKS_BYTES:
                        raise ClientKeyError("jwks_uri answer is too large")
        except httpx.HTTPError as exc:
            raise ClientKeyError(f"jwks_uri fetch failed: {type(exc).__name__}") from None
        return parse_jwks(bytes(body))

    async def close(self) -> None:
        """Close the HTTP client (at shutdown)."""
        await self._http.aclose()
