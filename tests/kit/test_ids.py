"""kit.ids: prefixed, time-ordered ULIDs."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.kit.ids import is_id, new_id, new_ulid

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_RE = re.compile(r"ord_[0-9A-HJKMNP-TV-Z]{26}")


def decode_ms(ulid: str) -> int:
    """The 48-bit millisecond timestamp in a ULID's first 10 characters."""
    value = 0
    for char in ulid[:10]:
        value = value * 32 + ALPHABET.index(char)
    return value


def test_new_id_has_prefix_and_ulid() -> None:
    value = new_id("ord")
    assert ID_RE.fullmatch(value)
    assert is_id(value, "ord")
    assert not is_id(value, "acc")


def test_new_ids_are_unique() -> None:
    ids = {new_id("ord") for _ in range(2000)}
    assert len(ids) == 2000


@pytest.mark.parametrize("prefix", ["o", "toolongpx", "Ord", "1ord", "or_d", "", "ord-"])
def test_new_id_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_id(prefix)


def test_new_id_refuses_prefix_with_trailing_newline() -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_id("ord\n")


@given(st.integers(0, 2**48 - 1))
def test_ulid_encodes_its_timestamp(ms: int) -> None:
    ulid = new_ulid(ms)
    assert len(ulid) == 26
    assert set(ulid) <= set(ALPHABET)
    assert decode_ms(ulid) == ms


@given(st.integers(0, 2**48 - 2), st.integers(1, 2**20))
def test_ulids_sort_by_creation_time(ms: int, later_by: int) -> None:
    later = min(ms + later_by, 2**48 - 1)
    assert new_ulid(ms) < new_ulid(later)


@pytest.mark.parametrize("ms", [-1, 2**48])
def test_ulid_refuses_out_of_range_timestamps(ms: int) -> None:
    with pytest.raises(ValueError, match="range"):
        new_ulid(ms)


def test_ulid_defaults_to_now() -> None:
    before = time.time_ns() // 1_000_000
    ms = decode_ms(new_ulid())
    after = time.time_ns() // 1_000_000
    assert before <= ms <= after


@pytest.mark.parametrize(
    "value",
    [
        "ord01J00000000000000000000000",  # no separator
        "ord_01J0000000000000000000000",  # 25 characters
        "ord_01J000000000000000000000000",  # 27 characters
        "ord_01J0000000000000000000000I",  # I is not Crockford base32
        "ord_01j00000000000000000000000",  # lowercase
        "acc_01J00000000000000000000000",  # other prefix
    ],
)
def test_is_id_refuses_malformed_ids(value: str) -> None:
    assert not is_id(value, "ord")


def test_ids_from_one_process_strictly_increase_even_within_a_millisecond() -> None:
    ids = [new_ulid() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "value", ["ord_01ARZ3NDEKTSV4RRFFQ69G5FAV\n", "ord_81ARZ3NDEKTSV4RRFFQ69G5FAV", "ord_01arz3ndektsv4rrffq69g5fav"]
)
def test_is_id_refuses_near_misses(value: str) -> None:
    assert not is_id(value, "ord")
