"""Copy client order ids: deterministic, short, venue-safe, and different whenever any input differs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.engine.copy import copy_client_order_id

_FORMAT = re.compile(r"cp-[a-z2-7]{32}")


def test_pinned_value() -> None:
    # Pinned: changing the derivation would give a restarted engine new ids for intents already
    # sent, and the venue could no longer deduplicate them. Change it only with a migration plan.
    assert copy_client_order_id("sub_1", "T-1001", "open") == "cp-w3677jby5rqnhbuiersbxrjdauuwyzna"


@given(st.text(min_size=1), st.text(min_size=1), st.sampled_from(["open", "increase", "reduce", "close"]))
def test_format_and_determinism(subscription: str, trade: str, action: str) -> None:
    cid = copy_client_order_id(subscription, trade, action)
    assert _FORMAT.fullmatch(cid)
    assert len(cid) == 35
    assert copy_client_order_id(subscription, trade, action) == cid


@given(st.tuples(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1)), st.data())
def test_any_changed_input_changes_the_id(parts: tuple[str, str, str], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, 2))
    other = data.draw(st.text(min_size=1).filter(lambda text: text != parts[i]))
    changed = list(parts)
    changed[i] = other
    assert copy_client_order_id(*changed) != copy_client_order_id(*parts)


def test_field_boundaries_cannot_be_shifted() -> None:
    assert copy_client_order_id("a:b", "c", "open") != copy_client_order_id("a", "b:c", "open")
    assert copy_client_order_id("ab", "c", "open") != copy_client_order_id("a", "bc", "open")


def test_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        copy_client_order_id("sub_1", "", "open")
