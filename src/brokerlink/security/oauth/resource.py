"""The resource server: an API request's DPoP-bound access token, checked (issue 5, ADR 0025).

A request presents ``Authorization: DPoP <token>`` and a ``DPoP`` proof. :class:`ResourceServer`
accepts it when:

1. the header is well-formed (:func:`~brokerlink.security.dpop.parse_authorization`: never in the
   query string, never ``Bearer``, never without a proof; SECURITY.md 13, 16);
2. SHA-256 of the token is an ``access`` row of ``oauth_tokens`` (a forged or tampered JWT has
   no row, so the JWT's own signature is not checked here: the hash lookup authenticates it);
3. the proof passes :func:`~brokerlink.security.dpop.verify_proof` for this request, with ``ath``
   and the key the row is bound to (``jkt``), its ``jti`` recorded in the replay store;
4. the row's consent is authorised and unexpired (else 403, SECURITY.md 22);
5. the row is neither revoked nor expired, and its client not disabled (else 401, SECURITY.md 17).

The proof is checked before the row's state is revealed: only the key holder learns whether a
token was revoked or its consent withdrawn.

Lookups are cached in memory for a few seconds (:class:`TokenCache`), so a busy client costs one
signature verification per request and no query. Revocation empties the cache at once: every
process follows :data:`~brokerlink.security.oauth.revocation.REVOCATION_TOPIC`
(:class:`RevocationFollower`) and drops the revoked tokens; a lookup that raced a revocation is not
cached (a generation counter). A process that misses the message refuses the token once its entry
ages out, so the database stays the authority.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.bus.base import EventBus
from brokerlink.config import Settings
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import Forbidden, Unavailable
from brokerlink.kit.ids import new_ulid
from brokerlink.logs import get_logger
from brokerlink.security.dpop import InvalidToken, NonceProvider, parse_authorization, verify_proof
from brokerlink.security.oauth.revocation import REVOCATION_TOPIC, TokensRevoked, decode_revocation
from brokerlink.security.principal import Principal
from brokerlink.security.replay import MemoryReplayStore, RedisReplayStore, ReplayStore
from brokerlink.store.models_oauth import (
    ConsentStatus,
    OAuthClientRow,
    OAuthConsentRow,
    OAuthTokenRow,
    TokenKind,
)

__all__ = [
    "Authenticated",
    "ConsentInactive",
    "ResourceServer",
    "RevocationFollower",
    "TokenCache",
    "TokenGrant",
    "TokenLookup",
    "lookup_token",
    "token_hash",
]

_log = get_logger("brokerlink.oauth.resource")

STATE_KEY = "resource_server"
"""Where the app's state keeps the process's :class:`ResourceServer`."""
_NONCE_CONTEXT = "resource"


class ConsentInactive(Forbidden):
    """The token's consent was revoked, has expired, or was never authorised (SECURITY.md 22)."""

    code = "consent_inactive"
    title = "Consent not active"


def token_hash(token: str) -> str:
    """The stored form of an access token: hex SHA-256 of the whole token string."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenGrant(msgspec.Struct, frozen=True, kw_only=True):
    """What an access token grants, as stored: its client, user, consent, scopes, accounts and key."""

    token_id: str
    client_id: str
    user_id: str | None
    consent_id: str | None
    scopes: frozenset[str]
    account_ids: frozenset[str]
    jkt: str | None
    expires_at: datetime
    """The earlier of the token's and its consent's expiry."""

    def principal(self) -> Principal:
        """The client principal acting under this grant.

        A client-credentials token has no user: its ``user_id`` is the client id, which owns no
        user data, and it reaches no account.
        """
        return Principal(
            kind="client",
            user_id=self.user_id or self.client_id,
            client_id=self.client_id,
            consent_id=self.consent_id,
            scopes=self.scopes,
            account_ids=self.account_ids,
        )


class TokenLookup(msgspec.Struct, frozen=True, kw_only=True):
    """A token row found by its hash, and whether it and its consent are in force right now."""

    grant: TokenGrant
    token_active: bool
    """Not revoked, not expired, and its client not disabled."""
    consent_active: bool
    """Authorised and unexpired (always True for a client-credentials token, which has none)."""


def _json_set(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    try:
        values = msgspec.json.decode(text, type=list[str])
    except msgspec.DecodeError:
        _log.error("oauth_token_row_malformed_json")
        return frozenset()
    return frozenset(values)


async def lookup_token(session: AsyncSession, digest: str, now: datetime) -> TokenLookup | None:
    """The access token stored as ``digest`` with its consent and client, in one query; None if unknown."""
    stmt = (
        select(OAuthTokenRow, OAuthConsentRow, OAuthClientRow.disabled_at)
        .join(OAuthClientRow, OAuthClientRow.id == OAuthTokenRow.client_id)
        .outerjoin(OAuthConsentRow, OAuthConsentRow.id == OAuthTokenRow.consent_id)
        .where(OAuthTokenRow.token_hash == digest, OAuthTokenRow.kind == TokenKind.ACCESS.value)
    )
    found = (await session.execute(stmt)).first()
    if found is None:
        return None
    token, joined, client_disabled_at = found
    consent: OAuthConsentRow | None = joined  # an outer join: None for a client-credentials token
    expires_at = token.expires_at
    consent_active = True
    account_ids: frozenset[str] = frozenset()
    if token.consent_id is not None:
        if consent is None:  # pragma: no cover - the foreign key keeps them together
            return None
        expires_at = min(expires_at, consent.expires_at)
        consent_active = consent.status == ConsentStatus.AUTHORISED.value and consent.expires_at > now
        account_ids = _json_set(consent.account_ids)
    grant = TokenGrant(
        token_id=token.id,
        client_id=token.client_id,
        user_id=token.user_id,
        consent_id=token.consent_id,
        scopes=_json_set(token.scopes),
        account_ids=account_ids,
        jkt=token.jkt,
        expires_at=expires_at,
    )
    token_active = token.revoked_at is None and token.expires_at > now and client_disabled_at is None
    return TokenLookup(grant=grant, token_active=token_active, consent_active=consent_active)


class TokenCache:
    """Live grants by token hash, for at most ``ttl`` each and ``max_entries`` in all (oldest go first).

    Only grants in force are cached; :meth:`forget` drops revoked ones and bumps a generation, so a
    lookup that started before a revocation does not put the token back (:meth:`put` with the
    generation read before the lookup).
    """

    def __init__(self, *, ttl: timedelta, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.ttl = ttl
        self.max_entries = max_entries
        self.generation = 0
        self._entries: OrderedDict[str, tuple[TokenGrant, datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str, now: datetime) -> TokenGrant | None:
        """The cached grant, if cached within ``ttl`` and not expired by now."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        grant, until = entry
        if now >= until or now >= grant.expires_at:
            del self._entries[digest]
            return None
        return grant

    def put(self, digest: str, grant: TokenGrant, now: datetime, *, generation: int) -> None:
        """Cache ``grant`` unless a revocation arrived since ``generation`` was read."""
        if self.ttl <= timedelta(0) or generation != self.generation:
            return
        self._entries[digest] = (grant, now + self.ttl)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, token_ids: Iterable[str], consent_id: str | None = None) -> int:
        """Drop the grants of these tokens (and of this consent); returns how many were cached."""
        self.generation += 1
        ids = set(token_ids)
        gone = [
            digest
            for digest, (grant, _) in self._entries.items()
            if grant.token_id in ids or (consent_id is not None and grant.consent_id == consent_id)
        ]
        for digest in gone:
            del self._entries[digest]
        return len(gone)


class Authenticated(msgspec.Struct, frozen=True, kw_only=True):
    """A request's verified token: the principal it acts as, and the token's id."""

    principal: Principal
    token_id: str
    expires_at: datetime
    """When the grant ends (the token's or its consent's expiry, whichever is first)."""


def resource_origin(settings: Settings) -> str:
    """The public origin DPoP proofs name in ``htu``: configured, else the issuer, else host and port."""
    # oauth_issuer belongs to the authorization server's settings (issue 5, H5a).
    issuer = getattr(settings, "oauth_issuer", None)
    origin = settings.resource_origin or (issuer if isinstance(issuer, str) and issuer else None)
    return (origin or f"http://{settings.host}:{settings.port}").rstrip("/")


class ResourceServer:
    """Authenticates API requests by DPoP-bound access token (module docstring)."""

    def __init__(
        self,
        clock: Clock,
        replay: ReplayStore,
        *,
        origin: str,
        cache: TokenCache,
        nonce: NonceProvider | None = None,
        owns_replay: bool = False,
    ) -> None:
        self.clock = clock
        self.replay = replay
        self.origin = origin.rstrip("/")
        self.cache = cache
        self.nonce = nonce
        self._owns_replay = owns_replay

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> ResourceServer:
        """The resource server ``settings`` describe (replay store, nonces, cache, origin)."""
        replay: ReplayStore
        if settings.resource_replay_backend == "redis":
            if not settings.redis_url:
                raise ValueError("resource_replay_backend 'redis' needs BROKERLINK_REDIS_URL")
            replay = RedisReplayStore(settings.redis_url, prefix="brokerlink-rs")
        else:
            replay = MemoryReplayStore(prefix="brokerlink-rs")
        nonce = None
        if settings.resource_dpop_nonce:
            secret = hashlib.sha256(b"brokerlink-resource-nonce\x00" + settings.effective_secret_key.encode()).digest()
            nonce = NonceProvider(secret, context=_NONCE_CONTEXT)
        return cls(
            clock,
            replay,
            origin=resource_origin(settings),
            cache=TokenCache(
                ttl=timedelta(seconds=settings.resource_token_cache_s), max_entries=settings.resource_token_cache_size
            ),
            nonce=nonce,
            owns_replay=True,
        )

    def url_for(self, path: str) -> str:
        """The ``htu`` a proof for ``path`` must name (a WebSocket's is its http(s) form, RFC 9449)."""
        return self.origin + path

    async def lookup(self, session: AsyncSession, token: str) -> TokenLookup | None:
        """The token's grant from the cache, else from the database (and cached when in force)."""
        return await self._lookup(session, token_hash(token), self.clock.now())

    async def _lookup(self, session: AsyncSession, digest: str, now: datetime) -> TokenLookup | None:
        cached = self.cache.get(digest, now)
        if cached is not None:
            return TokenLookup(grant=cached, token_active=True, consent_active=True)
        generation = self.cache.generation
        found = await lookup_token(session, digest, now)
        if found is not None and found.token_active and found.consent_active:
            self.cache.put(digest, found.grant, now, generation=generation)
        return found

    async def authenticate(
        self,
        session: AsyncSession,
        *,
        method: str,
        path: str,
        headers: Iterable[tuple[bytes, bytes]],
        query_string: bytes = b"",
    ) -> Authenticated:
        """Check the request's token and proof; the principal, or a 401 (``DpopError``) or 403."""
        authorization = parse_authorization(headers, query_string=query_string, bound=True)
        now = self.clock.now()
        # One SHA-256 of the token serves both its stored form (hex) and the proof's ``ath`` (base64url).
        sha256 = hashlib.sha256(authorization.token.encode()).digest()
        found = await self._lookup(session, sha256.hex(), now)
        if found is None:
            raise InvalidToken("the access token is not known")
        grant = found.grant
        if grant.jkt is None:  # every token is DPoP-bound (FAPI 2.0); a row without a key is refused
            raise InvalidToken("the access token is not DPoP-bound")
        if authorization.proof is None:  # parse_authorization refuses this already; for the type checker
            raise InvalidToken("DPoP proof missing")
        await verify_proof(
            authorization.proof,
            method=method,
            url=self.url_for(path),
            now=now,
            replay=self.replay,
            access_token_ath=base64.urlsafe_b64encode(sha256).rstrip(b"=").decode("ascii"),
            expected_jkt=grant.jkt,
            nonce=self.nonce,
        )
        if not found.consent_active:
            raise ConsentInactive("the consent behind this token was revoked or has expired")
        if not found.token_active:
            raise InvalidToken("the access token was revoked or has expired")
        return Authenticated(principal=grant.principal(), token_id=grant.token_id, expires_at=grant.expires_at)

    def revoked(self, message: TokensRevoked) -> None:
        """Drop revoked tokens from the cache (a :class:`RevocationFollower` listener)."""
        self.cache.forget(message.token_ids, message.consent_id)

    async def close(self) -> None:
        """Close the replay store's connection if this server opened it."""
        if self._owns_replay and isinstance(self.replay, RedisReplayStore):
            await self.replay.close()


RevocationListener = Callable[[TokensRevoked], object]


class RevocationFollower:
    """Follows :data:`REVOCATION_TOPIC` in a consumer group of this process's own (each process sees
    every message), starting at the latest, and hands each message to the listeners."""

    def __init__(self, bus: EventBus, *, node: str | None = None, retry_s: float = 1.0) -> None:
        self.bus = bus
        self.group = f"resource-revocations-{node or new_ulid().lower()}"
        self.retry_s = retry_s
        self.ready = asyncio.Event()
        """Set once the group exists: revocations published after it are seen."""
        self._listeners: list[RevocationListener] = []
        self._task: asyncio.Task[None] | None = None

    def listen(self, listener: RevocationListener) -> None:
        """Call ``listener`` with every revocation from now on (synchronously; it must not block)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Start following; returns once the group exists."""
        self._task = asyncio.create_task(self._follow(), name="resource-revocations")
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        consumer = self.bus.consumer(REVOCATION_TOPIC, self.group, "resource", start="latest")
        block_ms = 0  # the first read creates the group at once
        while True:
            try:
                messages = await consumer.read(max_count=100, block_ms=block_ms)
            except Unavailable as exc:
                _log.warning("revocation_follower_bus_unavailable", error=str(exc))
                await asyncio.sleep(self.retry_s)
                continue
            except Exception:  # noqa: BLE001 - revocations must keep flowing after a bad read; logged
                _log.exception("revocation_follower_read_failed")
                await asyncio.sleep(self.retry_s)
                continue
            self.ready.set()
            block_ms = 1000
            for message in messages:
                self._deliver(message.payload)
            if messages:
                await consumer.ack(*messages)

    def _deliver(self, payload: bytes) -> None:
        try:
            revoked = decode_revocation(payload)
        except msgspec.DecodeError:
            _log.error("revocation_message_malformed")
            return
        for listener in self._listeners:
            try:
                listener(revoked)
            except Exception:  # noqa: BLE001 - one listener's bug must not keep the others from closing
                _log.exception("revocation_listener_failed")
