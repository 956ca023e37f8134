"""Password hashing with Argon2id (argon2-cffi's defaults follow RFC 9106's recommendations)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from brokerlink.kit.errors import InvalidInput

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # long enough for any passphrase, short enough not to be a hashing DoS

_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the response time the same, so a
# login attempt cannot tell registered emails from unknown ones by timing.
_DUMMY_HASH = _hasher.hash("brokerlink-dummy-password-for-timing")


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Refuse passwords that are too short, too long, or trivially guessable (NIST SP 800-63B style)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD_LENGTH} characters", extra={"field": "password"})
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be at most {MAX_PASSWORD_LENGTH} characters", extra={"field": "password"})
    if len(set(password)) < 4:
        raise InvalidInput("password is too repetitive", extra={"field": "password"})
    if email and password.casefold() in {email.casefold(), email.split("@")[0].casefold()}:
        raise InvalidInput("password must not be your email address", extra={"field": "password"})


def hash_password(password: str) -> str:
    """Hash a password for storage."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``. With no hash, spends the same time and says no."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's and should be replaced at login."""
    return _hasher.check_needs_rehash(password_hash)
