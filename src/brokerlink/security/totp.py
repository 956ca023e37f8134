"""TOTP multi-factor authentication (RFC 6238) with single-use recovery codes.

Codes are what every authenticator app computes: HMAC-SHA-1, 30-second steps, 6 digits. SHA-1
is kept on purpose: several widespread apps ignore the ``algorithm`` parameter of an otpauth URI
and would show wrong codes for SHA-256, and HMAC-SHA-1 has no known weakness that matters here.
A code of the step before or after the current one is accepted too (clock drift, and the seconds
it takes to type), and a step, once accepted, is never accepted again for that user, nor is any
earlier one: a code seen over a shoulder or in a proxy log cannot be replayed.

The shared secret (160 random bits, RFC 4226's recommendation) is sealed in the vault with the
authenticator's row id (``mfa_...``) as associated data, so it is stored nowhere in plaintext and
a sealed secret copied to another user's row fails to open. It is shown to the user exactly once,
when enrolment starts (as an ``otpauth://`` URI, a QR code and base32 text), and never again.

Recovery codes: ten per authenticator, 80 random bits each, shown once at confirmation. They are
stored as SHA-256 over a per-code random salt and the code, not with Argon2: a code is a random
80-bit string, not a human-chosen password, so a fast hash already leaves an offline search of
2**80 per code, and Argon2 would make each sign-in with a recovery code cost up to ten slow
verifications (a denial-of-service lever for anyone who knows a password). The salt keeps equal
codes from having equal hashes and defeats precomputation across users.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Literal

import msgspec
import pyotp
import segno
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import Conflict, Forbidden, InvalidCredentials, NotAuthenticated
from brokerlink.kit.ids import new_id
from brokerlink.security.vault import Vault
from brokerlink.store.models import TotpCredentialRow
from brokerlink.store.repositories.mfa import ACTIVE, PENDING, MfaRepository

DIGITS = 6
PERIOD_S = 30
DRIFT_STEPS = 1
"""Accept the steps this far before and after the current one."""
SECRET_BYTES = 20  # 160 bits
RECOVERY_CODES = 10
RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 characters
SALT_BYTES = 16
TOTP_SECRET_PURPOSE = "totp_secret"  # noqa: S105 - a label, not a secret
"""The vault ``purpose`` of a TOTP secret."""


class MfaPending(NotAuthenticated):
    """The session signed in with a password and must pass the MFA step before anything else."""

    code = "mfa_pending"
    title = "MFA step pending"


class InvalidMfaCode(InvalidCredentials):
    """A TOTP or recovery code that does not match, is stale, or was used already. Says no more."""

    code = "invalid_mfa_code"
    title = "Invalid MFA code"


class MfaRequired(Forbidden):
    """The action needs an MFA check more recent than this session's (``POST /v1/auth/mfa``)."""

    code = "mfa_required"
    title = "Recent MFA required"


class MfaEnrollmentRequired(Forbidden):
    """The action needs MFA, and the user has none enrolled (``POST /v1/me/mfa/totp``)."""

    code = "mfa_enrollment_required"
    title = "MFA enrolment required"


# --- codes (pure) ---------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh shared secret, base32 without padding (what authenticator apps take)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def time_step(when: datetime) -> int:
    """The RFC 6238 time step (``T``) that contains ``when``."""
    return int(when.timestamp()) // PERIOD_S


def code_at(secret: str, step: int) -> str:
    """The code of time step ``step``."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_S).generate_otp(step)


def matching_step(secret: str, code: str, when: datetime, *, drift: int = DRIFT_STEPS) -> int | None:
    """The step within ``drift`` of ``when`` whose code is ``code``, or None.

    Every candidate is compared (in constant time each), so the time taken does not say which
    step matched or how many digits did.
    """
    code = code.strip()
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now = time_step(when)
    found: int | None = None
    for step in range(now - drift, now + drift + 1):
        if hmac.compare_digest(code_at(secret, step), code) and found is None:
            found = step
    return found


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD_S).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no script, no external reference: fine under a strict CSP)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, border=4, svgclass="qr", lineclass=None))


def looks_like_totp(code: str) -> bool:
    """Whether ``code`` is shaped like a TOTP code (digits only) rather than a recovery code."""
    code = code.strip()
    return len(code) == DIGITS and code.isascii() and code.isdigit()


def new_recovery_code() -> str:
    """A random recovery code, grouped for reading: ``ABCD-EFGH-IJKL-MNOP``."""
    raw = base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode()
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalize_recovery_code(code: str) -> str:
    """What the user typed, as stored: dashes and spaces dropped, upper case."""
    return "".join(c for c in code.upper() if c not in "- ")


def hash_recovery_code(code: str, salt: bytes) -> str:
    """The stored form of a recovery code: SHA-256 (hex) over the salt and the normalized code."""
    return hashlib.sha256(salt + normalize_recovery_code(code).encode()).hexdigest()


# --- the service ----------------------------------------------------------------------------


class Enrolment(msgspec.Struct, frozen=True, kw_only=True):
    """A started enrolment: what the user needs to add the authenticator. Shown once."""

    secret: str
    uri: str
    qr_svg: str

    def __repr__(self) -> str:
        return "Enrolment(secret=<redacted>)"


class MfaStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a user has MFA, and how many recovery codes are left."""

    enrolled: bool
    pending: bool
    enrolled_at: datetime | None
    recovery_codes_left: int


class Verified(msgspec.Struct, frozen=True, kw_only=True):
    """A code that passed, and which kind it was."""

    method: Literal["totp", "recovery_code"]
    recovery_codes_left: int | None = None


class MfaService:
    """Enrol, confirm, verify and disable TOTP for a user. Flushes; the caller's boundary commits."""

    def __init__(self, session: AsyncSession, vault: Vault, clock: Clock) -> None:
        self.session = session
        self.vault = vault
        self.clock = clock
        self.repo = MfaRepository(session)

    async def status(self, user_id: str) -> MfaStatus:
        """The user's MFA state."""
        active = await self.repo.get(user_id, ACTIVE)
        pending = await self.repo.get(user_id, PENDING)
        left = await self.repo.count_unused_recovery_codes(active.id) if active is not None else 0
        return MfaStatus(
            enrolled=active is not None,
            pending=pending is not None,
            enrolled_at=active.confirmed_at if active is not None else None,
            recovery_codes_left=left,
        )

    async def is_enrolled(self, user_id: str) -> bool:
        """Whether the user has an active authenticator."""
        return await self.repo.get(user_id, ACTIVE) is not None

    async def start(self, user_id: str, *, account: str, issuer: str) -> Enrolment:
        """Begin enrolling a new authenticator (replacing an unconfirmed one). Nothing is active yet.

        A user who already has one may start another (a new phone): it replaces the old one only
        when confirmed. Callers require a recent MFA check in that case.
        """
        old = await self.repo.get(user_id, PENDING)
        if old is not None:
            await self._remove(old)
        secret = new_secret()
        totp_id = new_id("mfa")
        secret_id = await self.vault.put(
            self.session, owner_id=totp_id, purpose=TOTP_SECRET_PURPOSE, plaintext=secret.encode(), now=self.clock.now()
        )
        await self.repo.add_pending(totp_id=totp_id, user_id=user_id, secret_id=secret_id, now=self.clock.now())
        uri = provisioning_uri(secret, account=account, issuer=issuer)
        return Enrolment(secret=secret, uri=uri, qr_svg=qr_svg(uri))

    async def discard_pending(self, user_id: str) -> bool:
        """Drop an unconfirmed enrolment and its secret. Returns whether there was one."""
        pending = await self.repo.get(user_id, PENDING)
        if pending is None:
            return False
        await self._remove(pending)
        return True

    async def confirm(self, user_id: str, code: str) -> list[str]:
        """Activate the pending authenticator with a current code; returns its new recovery codes (shown once).

        409 when nothing is pending; :class:`InvalidMfaCode` when the code does not match.
        """
        pending = await self.repo.get(user_id, PENDING)
        if pending is None:
            raise Conflict("no MFA enrolment is waiting for confirmation: start one first")
        step = matching_step(await self._secret(pending), code, self.clock.now())
        if step is None:
            raise InvalidMfaCode("the code does not match: check the time on your device and try the next one")
        old = await self.repo.get(user_id, ACTIVE)
        if old is not None:
            # The old one's last step carries over, so a code accepted by it is not accepted again.
            if old.last_step is not None and old.last_step >= step:
                raise InvalidMfaCode("this code was already used: wait for the next one")
            await self._remove(old)
        await self.repo.activate(pending.id, step=step, now=self.clock.now())
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        hashes = []
        for code_text in codes:
            salt = secrets.token_bytes(SALT_BYTES)
            hashes.append((salt, hash_recovery_code(code_text, salt)))
        await self.repo.add_recovery_codes(user_id=user_id, totp_id=pending.id, hashes=hashes, now=self.clock.now())
        return codes

    async def verify(self, user_id: str, code: str) -> Verified:
        """Check a TOTP code (unused step, within the drift) or a recovery code (then spent).

        Raises :class:`InvalidMfaCode` for anything else, including a user without MFA.
        """
        active = await self.repo.get(user_id, ACTIVE)
        if active is None:
            raise InvalidMfaCode("the code does not match")
        if looks_like_totp(code):
            step = matching_step(await self._secret(active), code, self.clock.now())
            if step is None or not await self.repo.claim_step(active.id, step):
                raise InvalidMfaCode("the code does not match or was already used")
            return Verified(method="totp")
        typed = normalize_recovery_code(code)
        if not 1 <= len(typed) <= 64:
            raise InvalidMfaCode("the code does not match")
        match = None
        for row in await self.repo.unused_recovery_codes(active.id):
            if hmac.compare_digest(hash_recovery_code(typed, bytes(row.salt)), row.code_hash) and match is None:
                match = row
        if match is None or not await self.repo.use_recovery_code(match.id, self.clock.now()):
            raise InvalidMfaCode("the code does not match or was already used")
        left = await self.repo.count_unused_recovery_codes(active.id)
        return Verified(method="recovery_code", recovery_codes_left=left)

    async def disable(self, user_id: str, code: str) -> None:
        """Turn MFA off after checking a current TOTP or recovery code: authenticators, secrets and codes go."""
        await self.verify(user_id, code)
        await self.disable_verified(user_id)

    async def disable_verified(self, user_id: str) -> None:
        """Turn MFA off for a caller that has just verified a code itself (under the sign-in lockout)."""
        for row in await self.repo.list_for_user(user_id):
            await self._remove(row)
        await self.repo.forget_verifications(user_id)

    async def _secret(self, row: TotpCredentialRow) -> str:
        return (await self.vault.get(self.session, row.secret_id, owner_id=row.id)).decode()

    async def _remove(self, row: TotpCredentialRow) -> None:
        await self.repo.delete(row.id)
        await self.vault.delete(self.session, row.secret_id)
