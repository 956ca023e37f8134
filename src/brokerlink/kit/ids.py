"""Identifiers: a short type prefix and a ULID (time-ordered, 128 bits, Crockford base32).

``ord_01JD3X...`` tells a reader (and a support engineer reading a log) what kind of object an id
names, and ids sort by creation time, which cursor pagination relies on.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{1,7}")
# 26 characters carry 130 bits; a ULID has 128, so the first character is at most 7.
_ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_RANDOM_BITS = 80

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_ulid(ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds since the epoch, then 80 random bits.

    Without an explicit ``ms``, ULIDs from this process are strictly increasing: within one
    millisecond (or if the wall clock steps back) the random part of the previous one is
    incremented, the ULID spec's monotonic mode. Cursor pagination orders by id and relies on it.
    """
    global _last_ms, _last_random  # noqa: PLW0603 - process-wide monotonic state, guarded by _lock
    if ms is not None:
        if not 0 <= ms < 2**48:
            raise ValueError("timestamp out of ULID range")
        return _encode((ms << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS), 26)
    with _lock:
        now = time.time_ns() // 1_000_000
        if now > _last_ms:
            _last_ms, _last_random = now, secrets.randbits(_RANDOM_BITS)
        else:
            _last_random += 1
            if _last_random >= 2**_RANDOM_BITS:  # 2**80 ids in one millisecond: borrow the next one
                _last_ms, _last_random = _last_ms + 1, secrets.randbits(_RANDOM_BITS - 1)
        return _encode((_last_ms << _RANDOM_BITS) | _last_random, 26)


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # the 1024 two-character endings, in order


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` new prefixed ids at once, as :func:`new_id` would make them one by one (the same
    process-wide monotonic order), at a fraction of the cost: a copy fan-out needs thousands."""
    global _last_ms, _last_random
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"id prefix must be 2-8 lowercase letters or digits: {prefix!r}")
    if count <= 0:
        return []
    with _lock:
        now = time.time_ns() // 1_000_000
        if now > _last_ms:
            _last_ms, first = now, secrets.randbits(_RANDOM_BITS - 1)  # half the range: room for the block
        else:
            first = _last_random + 1
        if first + count > 2**_RANDOM_BITS:  # the millisecond is used up: borrow the next one
            _last_ms, first = _last_ms + 1, secrets.randbits(_RANDOM_BITS - 1)
        ms, _last_random = _last_ms, first + count - 1
    # Consecutive values share all but their last two characters (10 bits): those come from a table.
    ids: list[str] = []
    value, end = first, first + count
    while value < end:
        high = value >> 10
        stop = min(end, (high + 1) << 10)
        head = f"{prefix}_{_encode((ms << 70) | high, 24)}"
        ids += [head + _PAIRS[low & 1023] for low in range(value, stop)]
        value = stop
    return ids


def new_id(prefix: str) -> str:
    """A new prefixed id, e.g. ``new_id("ord")`` -> ``"ord_01JD3X4T2W6N9Q8R7S5V4B3C2A"``."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"id prefix must be 2-8 lowercase letters or digits: {prefix!r}")
    return f"{prefix}_{new_ulid()}"


def is_id(value: str, prefix: str) -> bool:
    """Whether ``value`` has the shape of an id with this prefix."""
    head, sep, tail = value.partition("_")
    return sep == "_" and head == prefix and bool(_ULID_RE.fullmatch(tail))
