"""DPoP (RFC 9449): checking proofs, server nonces, and reading the Authorization header.

A DPoP proof is a JWT the client signs with its own key for one HTTP request; the access token is
bound to that key (``cnf.jkt``, the key's RFC 7638 thumbprint), so a stolen token is useless
without the key. :func:`verify_proof` runs the checks of RFC 9449 section 4.3, in this order:

1. one compact JWS of bounded size, ``typ`` ``dpop+jwt``, no ``crit``;
2. ``alg`` in :data:`ALLOWED_ALGORITHMS` (ES256, PS256, EdDSA: FAPI 2.0's list; never ``none``,
   HMAC or RS256), and the ``jwk`` header a *public* key of the matching type: P-256 for ES256,
   Ed25519 for EdDSA, RSA of 2048 to 4096 bits for PS256 (SECURITY.md 18);
3. the signature verifies with that key;
4. ``htm`` equals the method, ``htu`` the request URL (both without query and fragment, after
   RFC 3986 syntax- and scheme-based normalisation) (SECURITY.md 14);
5. ``iat`` no older than ``max_age_s`` and no more than ``leeway_s`` ahead (SECURITY.md 14);
6. ``ath`` is the hash of the presented access token, and the key's thumbprint is the token's
   ``cnf.jkt`` (SECURITY.md 14);
7. ``nonce`` is a current server nonce, when the server asks for one (``use_dpop_nonce``);
8. ``jti`` was not seen within the window (the replay store, SECURITY.md 14). Last, so a proof
   refused for any other reason does not use up its ``jti``.

Every refusal is a :class:`DpopError` with a machine ``code`` and a fixed reason that names the
failed check and never repeats the proof or its claims. The errors render as 401 with a
``WWW-Authenticate: DPoP`` challenge (a resource server's answer); the token endpoint answers
``400`` with the same ``code`` instead (RFC 9449 section 5), which its adapter maps.

Nonces (:class:`NonceProvider`) are stateless: an HMAC of a time bucket under a server secret,
valid in the current and the previous bucket, so every process holding the secret issues and
accepts the same nonces with nothing shared at run time.

:func:`parse_authorization` reads ``Authorization`` and ``DPoP`` from the raw header list: DPoP
tokens only in the Authorization header, never in the query (SECURITY.md 16); a DPoP-bound token
never as ``Bearer``, and never without a proof (SECURITY.md 13).

ADR 0015 records the choices (algorithms, windows, nonce design, replay store).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar, Literal, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from joserfc import jwk
from joserfc.errors import JoseError
from joserfc.util import urlsafe_b64decode

from brokerlink.kit.errors import NotAuthenticated
from brokerlink.security.replay import ReplayStore

ALLOWED_ALGORITHMS: tuple[str, ...] = ("ES256", "PS256", "EdDSA")
DEFAULT_MAX_AGE_S = 60
DEFAULT_LEEWAY_S = 5
REPLAY_NAMESPACE = "dpop-jti"

# The key each algorithm may be used with: (kty, crv) for EC and OKP, ("RSA", None) for RSA.
_KEY_FOR_ALG: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "PS256": ("RSA", None),
    "EdDSA": ("OKP", "Ed25519"),
}
# Below 2048 bits RSA is breakable in reach (SECURITY.md 18, FAPI 2.0); above 4096 a proof costs
# the server milliseconds of CPU per verification for no gain, an easy lever for a flood.
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 4096
# JWK members that only a private (or symmetric) key has (RFC 7518 section 6).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_MAX_PROOF_CHARS = 8192
_MAX_JTI_CHARS = 256
_MAX_TOKEN_CHARS = 8192
_TOKEN68 = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# Bounds on the encoded segments (joserfc's defaults cap a header at 512 bytes, which an RSA 2048
# ``jwk`` header already exceeds; RSA 4096 needs about 1 KiB): 2 KiB of header, 4 KiB of claims and
# 1 KiB of signature once decoded.
_MAX_HEADER_B64 = 2732
_MAX_PAYLOAD_B64 = 5462
_MAX_SIGNATURE_B64 = 1366
_B64URL = re.compile(rb"^[A-Za-z0-9_-]*$")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


# --- errors ----------------------------------------------------------------------------------


class DpopError(NotAuthenticated):
    """A refused DPoP-protected request. ``code`` is the OAuth error code, ``reason`` says which check failed.

    The reason is one of a fixed set of sentences; it never contains the proof, the token or a claim
    value, so the error can be logged and returned as is.
    """

    code: ClassVar[str] = "invalid_dpop_proof"
    title: ClassVar[str] = "Invalid DPoP proof"

    def __init__(self, reason: str, *, headers: dict[str, str] | None = None) -> None:
        challenge = f'DPoP algs="{" ".join(ALLOWED_ALGORITHMS)}", error="{self.code}", error_description="{reason}"'
        super().__init__(reason, headers={"WWW-Authenticate": challenge, **(headers or {})})
        self.reason = reason


class InvalidDpopProof(DpopError):
    """The proof is missing, malformed, or fails a check of RFC 9449 section 4.3."""

    code = "invalid_dpop_proof"
    title = "Invalid DPoP proof"


class UseDpopNonce(DpopError):
    """The proof lacks the current server nonce; ``nonce`` is a fresh one for the ``DPoP-Nonce`` header."""

    code = "use_dpop_nonce"
    title = "DPoP nonce required"

    def __init__(self, reason: str, *, nonce: str) -> None:
        super().__init__(reason, headers={"DPoP-Nonce": nonce})
        self.nonce = nonce


class InvalidToken(DpopError):
    """The access token is presented the wrong way (query string, Bearer for a bound token, bad syntax)."""

    code = "invalid_token"
    title = "Invalid access token"


# --- nonces ----------------------------------------------------------------------------------


class NonceProvider:
    """Stateless server nonces: ``HMAC-SHA256(secret, context, bucket)``, truncated to 128 bits.

    A nonce is valid in the bucket it was issued in and the next one, so a client holds a usable
    nonce for between one and two ``bucket`` lengths. Every process with the same ``secret`` and
    ``context`` agrees without talking to the others. ``context`` separates servers sharing a
    secret (the authorization server and a resource server answer with different nonces).
    """

    def __init__(self, secret: bytes, *, bucket: timedelta = timedelta(minutes=5), context: str = "dpop") -> None:
        if len(secret) < 32:
            raise ValueError("the nonce secret must be at least 32 bytes")
        if bucket < timedelta(seconds=1):
            raise ValueError("the nonce bucket must be at least one second")
        self._secret = secret
        self.bucket = bucket
        self.context = context

    def _index(self, now: datetime) -> int:
        return (_aware(now) - _EPOCH) // self.bucket

    def _nonce(self, index: int) -> str:
        message = f"brokerlink-dpop-nonce\x00{self.context}\x00{index}".encode()
        return _b64url(hmac.new(self._secret, message, hashlib.sha256).digest()[:16])

    def issue(self, now: datetime) -> str:
        """The nonce to send in ``DPoP-Nonce`` now."""
        return self._nonce(self._index(now))

    def is_valid(self, nonce: str, now: datetime) -> bool:
        """Whether ``nonce`` was issued in the current or the previous bucket (constant-time compare)."""
        index = self._index(now)
        given = nonce.encode()
        # Both candidates are always compared, so the time taken does not say which bucket matched.
        current = hmac.compare_digest(given, self._nonce(index).encode())
        previous = hmac.compare_digest(given, self._nonce(index - 1).encode())
        return current or previous


# --- proofs ----------------------------------------------------------------------------------


class DpopProof(msgspec.Struct, frozen=True):
    """A verified proof: the key's RFC 7638 SHA-256 thumbprint (``cnf.jkt``), ``jti`` and ``iat``."""

    jkt: str
    jti: str
    iat: int


class _Claims(msgspec.Struct):
    jti: str
    htm: str
    htu: str
    iat: int | float
    ath: str | None = None
    nonce: str | None = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def access_token_hash(access_token: str) -> str:
    """The ``ath`` value for a token: base64url of SHA-256 over its (ASCII) bytes, RFC 9449 section 4.2."""
    return _b64url(hashlib.sha256(access_token.encode()).digest())


def _normalize_percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(0)[1:], 16))
    return char if char in _UNRESERVED else match.group(0).upper()


@lru_cache(maxsize=4096)  # pure; a server sees few distinct URLs per second, and the cache stays bounded
def normalize_htu(url: str) -> str:
    """``url`` without query and fragment, normalised for comparison (RFC 3986 sections 6.2.2 and 6.2.3).

    Scheme and host lower-case, the scheme's default port dropped, percent-escapes of unreserved
    characters decoded and the others upper-cased, an empty path made ``/``. Only http(s) URLs
    without user information are accepted; anything else raises ``ValueError``.
    """
    if any(ch <= " " or ch == "\x7f" for ch in url):
        raise ValueError("URL contains whitespace or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("URL scheme must be http or https")
    if "@" in parts.netloc:
        raise ValueError("URL must not carry user information")
    host = parts.hostname
    if not host:
        raise ValueError("URL has no host")
    port = parts.port  # raises ValueError when not a valid port number
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _PERCENT.sub(_normalize_percent, parts.path) or "/"
    return f"{scheme}://{netloc}{path}"


def _rsa_bits(modulus: object) -> int:
    """The size of an RSA JWK's modulus ``n``, in bits."""
    if not isinstance(modulus, str):
        raise InvalidDpopProof("jwk RSA modulus is malformed")
    try:
        return int.from_bytes(urlsafe_b64decode(modulus.encode("ascii")), "big").bit_length()
    except (ValueError, TypeError):
        raise InvalidDpopProof("jwk RSA modulus is malformed") from None


def _import_public_key(data: dict[str, Any], alg: str) -> jwk.Key:
    """``data`` as a public key that fits ``alg``; refuses private members and weak keys."""
    if _PRIVATE_MEMBERS & data.keys():
        raise InvalidDpopProof("jwk header must hold a public key only")
    kty, crv = _KEY_FOR_ALG[alg]
    if data.get("kty") != kty or data.get("crv") != crv:
        raise InvalidDpopProof("jwk key type does not match alg")
    if kty == "RSA":
        # Measured before joserfc imports the key: it only warns about small keys.
        bits = _rsa_bits(data.get("n"))
        if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
            raise InvalidDpopProof("jwk RSA key must have 2048 to 4096 bits")
    try:
        key = jwk.import_key(data)
        key.check_use("sig")
        key.check_alg(alg)
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidDpopProof("jwk header is not a valid key") from None
    if key.is_private:  # belt and braces: the member check above already refused these
        raise InvalidDpopProof("jwk header must hold a public key only")
    return key


class _KeyCache:
    """Keys already imported and checked, by ``alg`` and the ``jwk`` header's canonical JSON, with their
    thumbprints: a client signs every proof with the same key, and importing it (plus its RFC 7638
    thumbprint) costs more than verifying the signature. Only keys that passed every check are kept;
    the checks depend on nothing but the key's JSON and ``alg``, so a hit is as good as a fresh import.
    Bounded, least recently used first out."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._keys: OrderedDict[tuple[str, bytes], tuple[jwk.Key, str]] = OrderedDict()

    def get(self, header: dict[str, Any], alg: str) -> tuple[jwk.Key, str]:
        data = header.get("jwk")
        if not isinstance(data, dict):
            raise InvalidDpopProof("jwk header missing or not an object")
        try:
            name = (alg, msgspec.json.encode(data, order="sorted"))
        except (TypeError, msgspec.EncodeError):
            raise InvalidDpopProof("jwk header is not a valid key") from None
        found = self._keys.get(name)
        if found is not None:
            self._keys.move_to_end(name)
            return found
        key = _import_public_key(data, alg)
        found = (key, key.thumbprint())
        self._keys[name] = found
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return found


_KEYS = _KeyCache()

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_PSS_SHA256 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)  # RFC 7518 3.5: salt = hash size


def _der_integer(value: bytes) -> bytes:
    """One unsigned big-endian integer as a DER INTEGER: leading zero bytes dropped, one put back
    when the top bit is set (the value is positive); at most 33 bytes of content, so a short length."""
    value = value.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    return b"\x02" + bytes((len(value),)) + value


def _p256_der(signature: bytes) -> bytes:
    """A JWS ES256 signature (R || S, 32 bytes each) as the DER ``ECDSA-Sig-Value`` ``cryptography``
    verifies: what ``encode_dss_signature`` builds, without going through two Python ints."""
    body = _der_integer(signature[:32]) + _der_integer(signature[32:])
    return b"\x30" + bytes((len(body),)) + body


class _Verifier(NamedTuple):
    """A header that passed steps 1 and 2, ready to check signatures: its key's thumbprint and how to verify."""

    jkt: str
    verify: Callable[[bytes, bytes], None]
    """``verify(signature, signing_input)``; raises ``InvalidSignature`` (or ``ValueError``) when it does not verify."""


def _verifier(alg: str, key: jwk.Key, jkt: str) -> _Verifier:
    """Signature checking with ``cryptography`` directly, for the three algorithms (RFC 7518, RFC 8037)."""
    public = key.get_op_key("verify")
    if alg == "ES256" and isinstance(public, ec.EllipticCurvePublicKey):
        ec_key = public

        def verify_es256(signature: bytes, message: bytes) -> None:
            if len(signature) != 64:  # JWS carries R || S, 32 bytes each for P-256 (RFC 7518 3.4)
                raise InvalidSignature
            ec_key.verify(_p256_der(signature), message, _ECDSA_SHA256)

        return _Verifier(jkt, verify_es256)
    if alg == "PS256" and isinstance(public, rsa.RSAPublicKey):
        rsa_key = public

        def verify_ps256(signature: bytes, message: bytes) -> None:
            rsa_key.verify(signature, message, _PSS_SHA256, hashes.SHA256())

        return _Verifier(jkt, verify_ps256)
    if alg == "EdDSA" and isinstance(public, ed25519.Ed25519PublicKey):
        return _Verifier(jkt, public.verify)
    raise InvalidDpopProof("jwk key type does not match alg")


class _HeaderCache:
    """Verifiers by the proof's encoded header, exactly as sent: a client's proofs all carry the same
    header (``typ``, ``alg`` and its ``jwk``), so after its first proof neither decoding the header
    nor importing the key is repeated. Only headers that passed every check are kept, and the checks
    depend on nothing but the header's bytes, so a hit is as good as checking again. Bounded, least
    recently used first out."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._headers: OrderedDict[str, _Verifier] = OrderedDict()

    def get(self, encoded: str) -> _Verifier:
        found = self._headers.get(encoded)
        if found is not None:
            self._headers.move_to_end(encoded)
            return found
        found = _check_header(encoded)
        self._headers[encoded] = found
        if len(self._headers) > self.size:
            self._headers.popitem(last=False)
        return found


def _b64decode(segment: str, what: str) -> bytes:
    raw = segment.encode("ascii")
    if not _B64URL.match(raw):
        raise InvalidDpopProof(f"proof {what} is not base64url")
    try:
        # The alphabet is checked: mapped to the standard one, binascii decodes in one call.
        return binascii.a2b_base64(raw.translate(_FROM_URLSAFE) + b"=" * (-len(raw) % 4))
    except binascii.Error:
        raise InvalidDpopProof(f"proof {what} is not base64url") from None


def _check_header(encoded: str) -> _Verifier:
    """Steps 1 and 2 for a header not seen before: ``typ``, ``alg``, no ``crit``, and the key."""
    try:
        header = msgspec.json.decode(_b64decode(encoded, "header"))
    except msgspec.DecodeError:
        raise InvalidDpopProof("proof is not a compact JWS") from None
    if not isinstance(header, dict):
        raise InvalidDpopProof("proof is not a compact JWS")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() != "dpop+jwt":
        raise InvalidDpopProof("typ must be dpop+jwt")
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise InvalidDpopProof(f"alg must be one of {', '.join(ALLOWED_ALGORITHMS)}")
    if "crit" in header or "b64" in header:
        raise InvalidDpopProof("crit and b64 headers are not accepted")
    key, jkt = _KEYS.get(header, alg)
    return _verifier(alg, key, jkt)


_HEADERS = _HeaderCache()


def _check_signature(proof_jwt: str) -> tuple[str, _Claims]:
    """Steps 1 to 3: parse, check the header and the key, verify the signature. Returns (jkt, claims)."""
    if len(proof_jwt) > _MAX_PROOF_CHARS:
        raise InvalidDpopProof("proof is too large")
    if not proof_jwt.isascii():
        raise InvalidDpopProof("proof is not a compact JWS")
    segments = proof_jwt.split(".")
    if len(segments) != 3 or not segments[0] or not segments[1]:
        raise InvalidDpopProof("proof is not a compact JWS")
    header, payload, signature = segments
    if len(header) > _MAX_HEADER_B64 or len(payload) > _MAX_PAYLOAD_B64 or len(signature) > _MAX_SIGNATURE_B64:
        raise InvalidDpopProof("proof is too large")
    verifier = _HEADERS.get(header)
    try:
        verifier.verify(_b64decode(signature, "signature"), f"{header}.{payload}".encode("ascii"))
    except (InvalidSignature, InvalidDpopProof, ValueError):
        raise InvalidDpopProof("signature does not verify with the jwk header") from None
    try:
        claims = msgspec.json.decode(_b64decode(payload, "claims"), type=_Claims)
    except msgspec.DecodeError:  # ValidationError is a DecodeError too
        raise InvalidDpopProof("claims missing or of the wrong type (jti, htm, htu, iat)") from None
    return verifier.jkt, claims


def _check_request(claims: _Claims, *, method: str, url: str) -> None:
    """Step 4: the proof was made for this request (``jti`` well-formed, ``htm``, ``htu``)."""
    if not claims.jti or len(claims.jti) > _MAX_JTI_CHARS:
        raise InvalidDpopProof("jti must be a non-empty string of at most 256 characters")
    if claims.htm != method:
        raise InvalidDpopProof("htm does not match the request method")
    try:
        htu_matches = normalize_htu(claims.htu) == normalize_htu(url)
    except ValueError:
        htu_matches = False
    if not htu_matches:
        raise InvalidDpopProof("htu does not match the request URL")


def _check_iat(claims: _Claims, *, now: datetime, max_age_s: int, leeway_s: int) -> int:
    """Step 5: ``iat`` within ``[now - max_age_s, now + leeway_s]``, whole seconds, both edges included."""
    if not math.isfinite(claims.iat):
        raise InvalidDpopProof("iat is not a number")
    iat = math.floor(claims.iat)
    now_s = math.floor(now.timestamp())  # whole seconds since the epoch (``now`` is aware)
    if iat < now_s - max_age_s:
        raise InvalidDpopProof("iat is too old")
    if iat > now_s + leeway_s:
        raise InvalidDpopProof("iat is in the future")
    return iat


def _check_binding(claims: _Claims, jkt: str, *, ath: str | None, expected_jkt: str | None) -> None:
    """Step 6: ``ath`` is the presented token's hash, and the key is the one the token is bound to."""
    if ath is not None:
        if claims.ath is None:
            raise InvalidDpopProof("ath is required with an access token")
        if not hmac.compare_digest(claims.ath.encode(), ath.encode()):
            raise InvalidDpopProof("ath does not match the access token")
    if expected_jkt is not None and not hmac.compare_digest(jkt.encode(), expected_jkt.encode()):
        raise InvalidDpopProof("key does not match the token's cnf.jkt")


async def verify_proof(
    proof_jwt: str,
    *,
    method: str,
    url: str,
    now: datetime,
    replay: ReplayStore,
    access_token: str | None = None,
    access_token_ath: str | None = None,
    expected_jkt: str | None = None,
    nonce: NonceProvider | None = None,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    leeway_s: int = DEFAULT_LEEWAY_S,
) -> DpopProof:
    """Check a DPoP proof for one request (RFC 9449 section 4.3); the verified thumbprint, ``jti`` and ``iat``.

    ``method`` and ``url`` are the request as the server received it; build ``url`` from the
    configured public origin, not from the client's ``Host`` header. Pass ``access_token`` when the
    request carries one (``ath`` is then required; a caller that already hashed the token passes
    ``access_token_ath``, :func:`access_token_hash` of it, instead) and ``expected_jkt`` with the token's
    ``cnf.jkt``. Pass ``nonce`` to require a server nonce. ``jti`` values are remembered in
    ``replay`` for ``max_age_s + leeway_s + 1`` seconds, longer than any proof stays acceptable.

    Raises :class:`InvalidDpopProof`, or :class:`UseDpopNonce` carrying a fresh nonce;
    ``Unavailable`` when the replay store cannot answer.
    """
    now = _aware(now)
    jkt, claims = _check_signature(proof_jwt)
    _check_request(claims, method=method, url=url)
    iat = _check_iat(claims, now=now, max_age_s=max_age_s, leeway_s=leeway_s)
    if access_token_ath is None and access_token is not None:
        access_token_ath = access_token_hash(access_token)
    _check_binding(claims, jkt, ath=access_token_ath, expected_jkt=expected_jkt)

    if nonce is not None and (claims.nonce is None or not nonce.is_valid(claims.nonce, now)):
        raise UseDpopNonce("a current server nonce is required", nonce=nonce.issue(now))

    # Scoped by key: a replay is the same key with the same jti, and another client that happens to
    # pick the same jti cannot lock this one out.
    ttl = timedelta(seconds=max_age_s + leeway_s + 1)
    if not await replay.first_use(REPLAY_NAMESPACE, f"{jkt}:{claims.jti}", ttl=ttl, now=now):
        raise InvalidDpopProof("jti was already used")
    return DpopProof(jkt=jkt, jti=claims.jti, iat=iat)


# --- the Authorization header ------------------------------------------------------------------


class Authorization(NamedTuple):
    """What a request presents: the scheme, the access token, and the DPoP proof (None for Bearer without one)."""

    scheme: Literal["DPoP", "Bearer"]
    token: str
    proof: str | None


def _text(value: str | bytes) -> str:
    # ASGI gives raw header bytes; HTTP field values are at most Latin-1.
    return value.decode("latin-1") if isinstance(value, bytes) else value


_AUTHORIZATION = (b"authorization", "authorization")
_DPOP = (b"dpop", "dpop")
_WANTED_HEADERS = frozenset(_AUTHORIZATION + _DPOP)


def _credentials(authorization: str) -> tuple[Literal["DPoP", "Bearer"], str]:
    """``scheme SP token68`` (RFC 9110 section 11.4); the scheme is case-insensitive."""
    scheme_text, _, token = authorization.partition(" ")
    token = token.strip()
    if not token or len(token) > _MAX_TOKEN_CHARS or not _TOKEN68.match(token):
        raise InvalidToken("malformed access token")
    match scheme_text.lower():
        case "dpop":
            return "DPoP", token
        case "bearer":
            return "Bearer", token
        case _:
            raise InvalidToken("unsupported authorization scheme")


def parse_authorization(
    headers: Iterable[tuple[str | bytes, str | bytes]],
    *,
    query_string: str | bytes = "",
    bound: bool = False,
) -> Authorization:
    """Read the access token and the DPoP proof of a request from its raw header list.

    ``headers`` is every header line, repeats included (ASGI ``scope["headers"]`` or a multi-dict's
    items), so repeated headers are seen. ``bound`` says the token is DPoP-bound; a resource
    server that accepts only sender-constrained tokens (FAPI 2.0) always passes True, one that
    learns it from the token calls this again once it knows.

    Refuses (all 401): an ``access_token`` in the query string (SECURITY.md 16); no or several
    Authorization headers, an unknown scheme or a malformed token; a bound token sent as ``Bearer``
    (SECURITY.md 13); several ``DPoP`` headers, or ``DPoP`` scheme without a proof (SECURITY.md 13).
    """
    query = _text(query_string)
    if "access_token" in query and any(name == "access_token" for name, _ in parse_qsl(query, keep_blank_values=True)):
        raise InvalidToken("access tokens are accepted only in the Authorization header")

    authorizations: list[str] = []
    proofs: list[str] = []
    for raw_name, raw_value in headers:
        # ASGI names are lower-case bytes already (any other bytes name is not one of ours); a
        # multi-dict's may be str in any case.
        if raw_name in _WANTED_HEADERS:
            name = raw_name
        elif isinstance(raw_name, bytes) and raw_name.islower():
            continue
        else:
            name = _text(raw_name).lower()
        if name in _AUTHORIZATION:
            authorizations.append(_text(raw_value).strip())
        elif name in _DPOP:
            proofs.append(_text(raw_value).strip())
    if not authorizations:
        raise NotAuthenticated(
            "an access token is required", headers={"WWW-Authenticate": f'DPoP algs="{" ".join(ALLOWED_ALGORITHMS)}"'}
        )
    if len(authorizations) > 1:
        raise InvalidToken("more than one Authorization header")
    scheme, token = _credentials(authorizations[0])

    if len(proofs) > 1 or any("," in proof for proof in proofs):
        raise InvalidDpopProof("more than one DPoP header")
    proof = proofs[0] if proofs and proofs[0] else None
    if scheme == "Bearer" and bound:
        raise InvalidToken("a DPoP-bound token must be sent with the DPoP scheme")
    if scheme == "DPoP" and proof is None:
        raise InvalidDpopProof("DPoP proof missing")
    return Authorization(scheme=scheme, token=token, proof=proof)
