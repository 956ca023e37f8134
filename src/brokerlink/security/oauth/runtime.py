"""The authorization server as the app runs it: built from settings, with its metadata document.

:class:`AuthorizationRuntime` holds the pieces that live as long as the process (the signing
key, the Authlib server, the client-key cache, the replay store, the DPoP nonce provider) and the
:class:`~brokerlink.security.oauth.service.AuthorizationService` over them. The app keeps it on
its state (``app.state.oauth``) and closes it at shutdown.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata  # type: ignore[import-untyped]
from authlib.oauth2.rfc9207 import AuthorizationServerMetadata as IssMetadata  # type: ignore[import-untyped]

from brokerlink.config import Settings
from brokerlink.kit.clock import Clock
from brokerlink.security.dpop import ALLOWED_ALGORITHMS, NonceProvider
from brokerlink.security.oauth.client_keys import ClientKeys
from brokerlink.security.oauth.grants import ASSERTION_ALGORITHMS
from brokerlink.security.oauth.models import PRIVATE_KEY_JWT, redirect_uri_acceptable
from brokerlink.security.oauth.scopes import SCOPES
from brokerlink.security.oauth.server import BrokerlinkAuthorizationServer, Endpoints
from brokerlink.security.oauth.service import AuthorizationService
from brokerlink.security.oauth.signing import SIGNING_ALG, SigningKey
from brokerlink.security.outbound import Resolver, resolve
from brokerlink.security.replay import MemoryReplayStore, RedisReplayStore, ReplayStore

__all__ = ["STATE_KEY", "AuthorizationRuntime", "issuer_of", "metadata"]

STATE_KEY = "oauth"
"""Where the app keeps its :class:`AuthorizationRuntime` (``app.state.oauth``)."""


def issuer_of(settings: Settings) -> str:
    """``oauth_issuer``, or ``http://{host}:{port}``; https, or http on a loopback host (RFC 8414 section 2)."""
    issuer = (settings.oauth_issuer or f"http://{settings.host}:{settings.port}").rstrip("/")
    if not redirect_uri_acceptable(issuer) or "?" in issuer:
        raise ValueError(f"oauth_issuer must be an https URL (or http on a loopback host) without a query: {issuer!r}")
    return issuer


def metadata(endpoints: Endpoints) -> dict[str, Any]:
    """The RFC 8414 document: only what the FAPI 2.0 profile allows (SECURITY.md 10)."""
    auth_methods = [PRIVATE_KEY_JWT]
    algs = list(ASSERTION_ALGORITHMS)
    document = AuthorizationServerMetadata(
        {
            "issuer": endpoints.issuer,
            "authorization_endpoint": endpoints.authorize,
            "token_endpoint": endpoints.token,
            "pushed_authorization_request_endpoint": endpoints.par,
            "require_pushed_authorization_requests": True,
            "jwks_uri": endpoints.jwks,
            "introspection_endpoint": endpoints.introspect,
            "revocation_endpoint": endpoints.revoke,
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": auth_methods,
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_signing_alg_values_supported": algs,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_signing_alg_values_supported": algs,
            "dpop_signing_alg_values_supported": list(ALLOWED_ALGORITHMS),
            "authorization_response_iss_parameter_supported": True,
            "access_token_signing_alg_values_supported": [SIGNING_ALG],
        }
    )
    document.validate(metadata_classes=[IssMetadata])
    return dict(document)


class AuthorizationRuntime:
    """The authorization server's long-lived pieces, built from settings."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        key: SigningKey | None = None,
        replay: ReplayStore | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self.endpoints = Endpoints(issuer_of(settings))
        self.key = key or SigningKey.from_settings(settings)
        self.server = BrokerlinkAuthorizationServer(
            self.endpoints,
            self.key,
            access_s=settings.oauth_access_token_seconds,
            refresh_s=settings.oauth_refresh_token_seconds,
            par_s=settings.oauth_par_seconds,
            assertion_leeway_s=settings.oauth_assertion_leeway_seconds,
            assertion_max_s=settings.oauth_assertion_max_seconds,
        )
        self.keys = ClientKeys(
            now=clock.now,
            cache_seconds=settings.oauth_jwks_cache_seconds,
            allow_loopback=settings.oauth_jwks_allow_loopback,
            allowed_hosts=frozenset(h.lower().strip("[]") for h in settings.oauth_jwks_uri_allowed_hosts),
            resolver=resolver,
        )
        if replay is None:
            if settings.oauth_replay_backend == "redis":
                if not settings.redis_url:
                    raise ValueError("oauth_replay_backend is redis but redis_url is not set")
                replay = RedisReplayStore(settings.redis_url)
            else:
                replay = MemoryReplayStore()
        self.replay = replay
        self.nonce: NonceProvider | None = None
        if settings.oauth_dpop_nonce:
            secret = hmac.new(settings.effective_secret_key.encode(), b"brokerlink-oauth-dpop-nonce", hashlib.sha256)
            self.nonce = NonceProvider(secret.digest(), context="oauth-token")
        self.service = AuthorizationService(
            self.server,
            self.keys,
            self.replay,
            clock,
            nonce=self.nonce,
            assertion_leeway_s=settings.oauth_assertion_leeway_seconds,
        )
        self.metadata = metadata(self.endpoints)

    async def close(self) -> None:
        """Close the client-key HTTP client and a Redis replay store (at shutdown)."""
        await self.keys.close()
        if isinstance(self.replay, RedisReplayStore):
            await self.replay.close()
