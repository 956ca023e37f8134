"""The authorization server's synchronous core: Authlib's ``AuthorizationServer``, brokerlink's grants and endpoints.

Framework-neutral: a request comes in as an :class:`HttpRequest` (method, URL, headers, the parsed
form as a multi-dict) that the web adapter builds after reading the body, and every answer goes
out as an :class:`OAuthResponse` (status, JSON body, headers) that the adapter turns into a
framework response. Authlib's integration points (``create_oauth2_request``, ``handle_response``,
``query_client``, ``save_token``, ``send_signal``) are implemented over the current
:class:`~brokerlink.security.oauth.models.Exchange`, so this module never does I/O (ADR 0023).

Endpoints besides Authlib's token endpoint:

* :class:`PushedAuthorization` (RFC 9126, which Authlib lacks): client authentication, then the
  authorization request validated by Authlib's code grant exactly as ``/authorize`` would
  (response type, exact redirect URI, scopes, PKCE S256), plus ``dpop_jkt``;
* :class:`Introspection` (RFC 7662) and :class:`Revocation` (RFC 7009), limited to the calling
  client's own tokens.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    AuthorizationServer,
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.endpoint import Endpoint  # type: ignore[import-untyped]
from authlib.oauth2.rfc7009 import RevocationEndpoint  # type: ignore[import-untyped]
from authlib.oauth2.rfc7662 import IntrospectionEndpoint  # type: ignore[import-untyped]

from brokerlink.kit.ids import new_id
from brokerlink.security.oauth.grants import (
    CodeGrant,
    OwnResourcesGrant,
    PrivateKeyJwt,
    RefreshGrant,
    S256CodeChallenge,
    TokenIssuer,
    save_token,
)
from brokerlink.security.oauth.models import PRIVATE_KEY_JWT, NewPar, OAuthClient, StoredToken, current
from brokerlink.security.oauth.scopes import SCOPES
from brokerlink.security.oauth.signing import SigningKey

__all__ = [
    "REQUEST_URI_PREFIX",
    "BrokerlinkAuthorizationServer",
    "Endpoints",
    "HttpRequest",
    "OAuthResponse",
    "authorization_redirect",
]

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
MAX_PARAM_CHARS = 2048
NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


@dataclass(frozen=True)
class Endpoints:
    """The server's public URLs, all under the issuer."""

    issuer: str

    @property
    def token(self) -> str:
        return self.issuer + "/oauth/token"

    @property
    def par(self) -> str:
        return self.issuer + "/oauth/par"

    @property
    def authorize(self) -> str:
        return self.issuer + "/authorize"

    @property
    def introspect(self) -> str:
        return self.issuer + "/oauth/introspect"

    @property
    def revoke(self) -> str:
        return self.issuer + "/oauth/revoke"

    @property
    def jwks(self) -> str:
        return self.issuer + "/oauth/jwks"

    @property
    def metadata(self) -> str:
        return self.issuer + "/.well-known/oauth-authorization-server"


@dataclass(frozen=True)
class HttpRequest:
    """A request as the core sees it: the form already parsed (repeated parameters kept)."""

    method: str
    url: str
    headers: Mapping[str, str]
    form: Sequence[tuple[str, str]] = ()

    def first(self, name: str) -> str | None:
        """The first value of a form parameter."""
        return next((value for key, value in self.form if key == name), None)


@dataclass(frozen=True)
class OAuthResponse:
    """An answer: status, JSON body and headers (``error`` repeats the OAuth error code, if any)."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = field(default=NO_STORE)

    @property
    def error(self) -> str | None:
        value = self.body.get("error")
        return value if isinstance(value, str) else None


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, form: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in form:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request.method, request.url, headers=dict(request.headers))
        self.payload = _Payload(request.form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data


class BrokerlinkAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's server, FAPI 2.0 profile: PAR, PKCE S256, private_key_jwt, DPoP-bound JWT access tokens."""

    def __init__(
        self,
        endpoints: Endpoints,
        key: SigningKey,
        *,
        access_s: int,
        refresh_s: int,
        par_s: int,
        assertion_leeway_s: int,
        assertion_max_s: int,
    ) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.endpoints = endpoints
        self.key = key
        self.par_s = par_s
        self.register_client_auth_method(
            PRIVATE_KEY_JWT,
            PrivateKeyJwt(
                [endpoints.issuer, endpoints.token, endpoints.par],
                leeway_s=assertion_leeway_s,
                max_lifetime_s=assertion_max_s,
            ),
        )
        self.register_token_generator(
            "default", TokenIssuer(endpoints.issuer, key, access_s=access_s, refresh_s=refresh_s)
        )
        self.register_grant(CodeGrant, [S256CodeChallenge()])
        self.register_grant(RefreshGrant)
        self.register_grant(OwnResourcesGrant)
        self.register_endpoint(PushedAuthorization)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)

    # --- Authlib's integration points ------------------------------------------------------

    def query_client(self, client_id: str) -> OAuthClient | None:
        return current().clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        save_token(token, request)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib's signals; the service acts on the exchange instead, so nothing listens."""

    def create_oauth2_request(self, request: HttpRequest | OAuth2Request) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return _Request(request)

    def handle_response(self, status: int, body: Any, headers: Sequence[tuple[str, str]]) -> OAuthResponse:
        payload = dict(body) if isinstance(body, dict) else {}
        merged = dict(NO_STORE)
        merged.update({name: value for name, value in headers if name.lower() != "www-authenticate"})
        error = payload.get("error")
        if error == "invalid_client":
            # Always 401 (RFC 6749 section 5.2 allows it; SECURITY.md 2 asks for it), never a Basic challenge.
            status = 401
        if isinstance(error, str):
            current().error = error
        return OAuthResponse(status, payload, tuple(merged.items()))

    def authenticate_client(self, request: OAuth2Request, methods: list[str], endpoint: str = "token") -> OAuthClient:
        client: OAuthClient = super().authenticate_client(request, methods, endpoint)
        current().authenticated = client
        return client

    # --- entry points the service calls (inside ``models.running``) -------------------------

    def token(self, request: HttpRequest) -> OAuthResponse:
        """``POST /oauth/token``."""
        response: OAuthResponse = self.create_token_response(request)
        return response

    def push(self, request: HttpRequest) -> OAuthResponse:
        """``POST /oauth/par``."""
        response: OAuthResponse = self.create_endpoint_response(PushedAuthorization.ENDPOINT_NAME, request)
        return response

    def introspect(self, request: HttpRequest) -> OAuthResponse:
        """``POST /oauth/introspect``."""
        response: OAuthResponse = self.create_endpoint_response(Introspection.ENDPOINT_NAME, request)
        return response

    def revoke(self, request: HttpRequest) -> OAuthResponse:
        """``POST /oauth/revoke``."""
        response: OAuthResponse = self.create_endpoint_response(Revocation.ENDPOINT_NAME, request)
        return response


# --- endpoints ---------------------------------------------------------------------------------

_PAR_PARAMS = ("response_type", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method")


class PushedAuthorization(Endpoint):  # type: ignore[misc]
    """RFC 9126: the client pushes its authorization request and gets a short-lived ``request_uri``."""

    ENDPOINT_NAME = "pushed_authorization"

    def create_endpoint_response(self, request: OAuth2Request) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        server: BrokerlinkAuthorizationServer = self.server
        client: OAuthClient = server.authenticate_client(request, [PRIVATE_KEY_JWT], self.ENDPOINT_NAME)
        data = request.payload.data
        if "request_uri" in data:
            raise InvalidRequestError("request_uri must not be pushed (RFC 9126 section 2.1)")
        if data.get("client_id", client.id) != client.id:
            raise InvalidClientError(description="client_id does not match the authenticated client")
        for name, values in request.payload.datalist.items():
            if len(values) > 1:
                raise InvalidRequestError(f"parameter {name} given more than once")
            if len(values[0]) > MAX_PARAM_CHARS:
                raise InvalidRequestError(f"parameter {name} is too long")
        data.setdefault("client_id", client.id)
        if not data.get("response_type"):
            raise InvalidRequestError("response_type is required")
        if not data.get("scope"):
            raise InvalidRequestError("scope is required")
        try:
            grant = server.get_authorization_grant(request)
            redirect_uri = grant.validate_authorization_request()
        except OAuth2Error as error:
            # PAR answers the client directly: never a redirect to the (unvalidated) redirect URI.
            error.redirect_uri = None
            error.state = None
            raise
        exchange = current()
        params: dict[str, str | None] = {name: data.get(name) for name in _PAR_PARAMS}
        params["redirect_uri"] = redirect_uri
        params["scope"] = request.scope
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
        exchange.par = NewPar(
            id=new_id("par"),
            request_uri=request_uri,
            client_id=client.id,
            params=params,
            dpop_jkt=exchange.dpop_jkt,
            expires_at=exchange.now + timedelta(seconds=server.par_s),
        )
        return 201, {"request_uri": request_uri, "expires_in": server.par_s}, []


def _own_token(token: StoredToken | None, client: OAuthClient) -> StoredToken | None:
    return token if token is not None and token.client_id == client.id else None


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662 for the calling client's own tokens; anything else, and anything not live, is ``active: false``."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [PRIVATE_KEY_JWT]

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredToken | None:  # noqa: ARG002
        return current().presented

    def check_permission(self, token: StoredToken, client: OAuthClient, request: OAuth2Request) -> bool:  # noqa: ARG002
        return _own_token(token, client) is not None

    def introspect_token(self, token: StoredToken) -> dict[str, Any]:
        issuer = self.server.endpoints.issuer
        body: dict[str, Any] = {
            "active": True,
            "client_id": token.client_id,
            "scope": token.scope,
            "sub": token.user_id or token.client_id,
            "token_type": "DPoP" if token.kind == "access" else "refresh_token",
            "iss": issuer,
            "aud": issuer,
            "jti": token.id,
            "iat": int(token.created_at.timestamp()),
            "exp": int(token.expires_at.timestamp()),
        }
        if token.jkt:
            body["cnf"] = {"jkt": token.jkt}
        return body


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009: the client's own token, with what was issued from it (the service revokes the family)."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [PRIVATE_KEY_JWT]

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredToken | None:  # noqa: ARG002
        return current().presented

    def revoke_token(self, token: StoredToken, request: OAuth2Request) -> None:  # noqa: ARG002
        current().revoke = token


def authorization_redirect(redirect_uri: str, issuer: str, **params: str | None) -> str:
    """An authorization response URL: ``params`` (code, state or error...) plus ``iss`` (RFC 9207)."""
    parts = urlsplit(redirect_uri)
    values = [(k, v) for k, v in params.items() if v is not None] + [("iss", issuer)]
    query = "&".join(q for q in (parts.query, urlencode(values)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
