"""Standard Webhooks signing (https://www.standardwebhooks.com), shared by alert and user webhooks.

The secret is ``whsec_`` + base64 of 32 random bytes. Each attempt carries ``webhook-id`` (the same
on every retry and replay, so receivers deduplicate), ``webhook-timestamp`` (Unix seconds of this
attempt) and ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256, keyed with the secret's decoded
bytes, over ``{webhook-id}.{webhook-timestamp}.{body}``. Receivers' existing Standard Webhooks (or
Svix) libraries verify what we send; the tests reproduce the specification's published vector.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping

__all__ = ["SECRET_PREFIX", "new_secret", "sign", "signed_headers", "verify"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form, ``whsec_<base64>``."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    mac = hmac.new(_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether a received delivery is signed with ``secret`` (what a receiver does; used by the tests).

    ``webhook-signature`` may list several space-separated signatures (a secret being rotated).
    """
    try:
        expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    except (KeyError, ValueError):
        return False
    return any(hmac.compare_digest(expected, given) for given in headers.get("webhook-signature", "").split())
