"""Deterministic client order ids for copies: the same (subscription, provider execution, action), the same id.

The id is what makes a copy exactly-once: the order intent carries it into the outbox, a replay
after a crash sends the same id again, and the venue (or the engine's lookup) recognises it.

Format: ``cp-`` and 32 base32 characters (lower case, no padding): the first 160 bits of
SHA-256 over a versioned, length-prefixed encoding of the three inputs. 35 characters of
``[a-z0-9-]``, which fits the tightest common venue limit (36) and is safe where venues compare
ids case-insensitively. With 160 bits, a collision among even 10^12 ids has probability about
10^24 / 2^161, below 10^-24. Length prefixes make the encoding injective: ``("a:b", "c")`` and
``("a", "b:c")`` hash different bytes.
"""

from __future__ import annotations

import functools
import hashlib

PREFIX = "cp-"
ID_BITS = 160
_DOMAIN = b"brokerlink/copy-order-id/v1"


def copy_client_order_id(subscription_id: str, provider_trade_id: str, action: str) -> str:
    """The follower's client order id for ``action`` (``open``, ``close``, ...) on one provider execution.

    Pure and stable across processes and versions of Python: change any input and the id
    changes; change nothing and it never does. Empty inputs are refused, since an empty
    provider trade id would make every such copy the same order.
    """
    parts = (subscription_id, provider_trade_id, action)
    if not all(parts):
        raise ValueError("subscription_id, provider_trade_id and action must all be non-empty")
    digest = _prefix(subscription_id).copy()
    for part in (provider_trade_id, action):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    # 160 bits are exactly 32 base32 characters (5 bits each), so no padding is produced: RFC 4648's
    # alphabet in lower case, two characters (10 bits) at a time (``base64.b32encode`` costs twice as much).
    bits = int.from_bytes(digest.digest()[: ID_BITS // 8], "big")
    return PREFIX + "".join([_PAIRS[(bits >> shift) & 1023] for shift in _SHIFTS])


_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_PAIRS = [_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024)]
_SHIFTS = tuple(range(ID_BITS - 10, -1, -10))


@functools.lru_cache(maxsize=65536)
def _prefix(subscription_id: str) -> hashlib._Hash:
    """The hash state after the domain and the subscription: a fan-out hashes only what differs per fill
    (copied, never updated in place)."""
    digest = hashlib.sha256()
    digest.update(_DOMAIN)
    data = subscription_id.encode("utf-8")
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)
    return digest
