"""DPoP (RFC 9449) on the client's side: one proof per request, bound to the access token, with nonces.

A :class:`DPoPKey` is the app's proof-of-possession key. Its tokens are bound to it (``cnf.jkt``);
every request carries a fresh proof naming the method, the URL (without query; a WebSocket's in its
http(s) form), the time, a random ``jti``, ``ath`` (the token's hash) when a token goes with it, and
the latest ``DPoP-Nonce`` the server's origin asked for. A server that wants a nonce answers
``use_dpop_nonce`` with a ``DPoP-Nonce`` header; :meth:`DPoPKey.remember_nonce` keeps it and says
whether one retry is worth it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey

__all__ = ["DPoPKey", "access_token_hash", "b64url", "htu", "origin"]


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token_hash(token: str) -> str:
    """The proof's ``ath``: base64url(SHA-256(token))."""
    return b64url(hashlib.sha256(token.encode()).digest())


_HTTP_FORM = {"ws": "http", "wss": "https"}


def htu(url: str) -> str:
    """The ``htu`` of a request to ``url``: no query or fragment; ws/wss become http/https (RFC 9449 4.3)."""
    parts = urlsplit(url)
    scheme = _HTTP_FORM.get(parts.scheme.lower(), parts.scheme.lower())
    return f"{scheme}://{parts.netloc}{parts.path}"


def origin(url: str) -> str:
    """The http(s) origin of ``url`` (nonces are kept per origin)."""
    parts = urlsplit(htu(url))
    return f"{parts.scheme}://{parts.netloc}"


class DPoPKey:
    """The app's DPoP key (a P-256 key, ES256) and the nonces its servers asked for.

    ``clock`` returns seconds since the epoch (the proofs' ``iat``); a test passes the server's clock.
    """

    def __init__(self, key: ECKey | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.key = key if key is not None else ECKey.generate_key("P-256", private=True)
        if not self.key.is_private:
            raise ValueError("a DPoP key must be a private key")
        self.clock = clock
        self.nonces: dict[str, str] = {}
        """The latest ``DPoP-Nonce`` of each origin."""

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], *, clock: Callable[[], float] = time.time) -> DPoPKey:
        """A key kept as a private JWK (an app that keeps its tokens across runs keeps their key too)."""
        key = ECKey.import_key(dict(jwk))
        return cls(key, clock=clock)

    def to_jwk(self) -> dict[str, Any]:
        """The private JWK, to store next to the tokens bound to it."""
        return dict(self.key.as_dict(private=True))

    @property
    def jkt(self) -> str:
        """The key's JWK thumbprint (RFC 7638): what bound tokens name in ``cnf.jkt``, and PAR's ``dpop_jkt``."""
        return str(self.key.thumbprint())

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        """A proof for one request to ``url`` (``ath`` when ``access_token`` goes with it)."""
        claims: dict[str, Any] = {
            "htm": method.upper(),
            "htu": htu(url),
            "iat": int(self.clock()),
            "jti": secrets.token_urlsafe(24),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce := self.nonces.get(origin(url)):
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}
        return jwt.encode(header, claims, self.key, algorithms=["ES256"])

    def remember_nonce(self, url: str, headers: Mapping[str, str]) -> bool:
        """Keep the ``DPoP-Nonce`` in ``headers``; True when it is new (a retry with it may succeed)."""
        nonce = next((v for k, v in headers.items() if k.lower() == "dpop-nonce"), None)
        where = origin(url)
        if not nonce or self.nonces.get(where) == nonce:
            return False
        self.nonces[where] = nonce
        return True
