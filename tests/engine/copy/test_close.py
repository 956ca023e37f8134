"""Closing copies: the provider's fraction of what the follower holds, never more, flat with the provider."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.engine.copy import close_qty
from brokerlink.kit.money import is_multiple_of

D = Decimal
STEP = D("0.01")


@pytest.mark.parametrize(
    ("held", "before", "closed", "min_qty", "expected"),
    [
        # The provider closes 1 of 3: keep 0.30 x 2/3 = 0.20, close 0.10.
        pytest.param("0.30", "3", "1", "0", "0.10", id="a third"),
        # Closes 1 of 2: keep 0.03 x 1/2 = 0.015 -> 0.01 (down), close 0.02: never more exposed than the share.
        pytest.param("0.03", "2", "1", "0", "0.02", id="half, remainder rounded down"),
        # Closes 1 of 100: keep 0.05 x 0.99 = 0.0495 -> 0.04, close 0.01 (a close always reduces something).
        pytest.param("0.05", "100", "1", "0", "0.01", id="a small fraction still closes a step"),
        # Closes half: keep 0.15 x 1/2 = 0.075 -> 0.07, below the 0.10 minimum: close all 0.15.
        pytest.param("0.15", "4", "2", "0.10", "0.15", id="a dust remainder is closed too"),
        # Keep 0.40 x 1/2 = 0.20 >= 0.10 minimum: close 0.20.
        pytest.param("0.40", "4", "2", "0.10", "0.20", id="a remainder at or above the minimum stays"),
        pytest.param("0.37", "5", "5", "0", "0.37", id="provider flat: close all"),
        pytest.param("0.37", "5", "8", "0", "0.37", id="provider reversed: close all, the rest is a new copy"),
        pytest.param("0.37", "0", "0", "0", "0.37", id="provider already flat: close the orphan"),
        pytest.param("0.37", "5", "0", "0", "0", id="nothing closed"),
        pytest.param("0", "5", "2", "0", "0", id="nothing held"),
    ],
)
def test_close_scenarios(held: str, before: str, closed: str, min_qty: str, expected: str) -> None:
    assert close_qty(D(held), D(before), D(closed), STEP, min_qty=D(min_qty)) == D(expected)


def test_negative_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="held"):
        close_qty(D(-1), D(1), D(1), STEP)
    with pytest.raises(ValueError, match="provider_closed"):
        close_qty(D(1), D(1), D(-1), STEP)


STEPS = [D("0.0001"), D("0.01"), D("0.1"), D(1), D(5)]


@st.composite
def positions(draw: st.DrawFn) -> tuple[Decimal, Decimal, Decimal]:
    """(step, follower held on the step grid, venue minimum on the step grid)."""
    step = draw(st.sampled_from(STEPS))
    held = step * draw(st.integers(0, 100_000))
    return step, held, step * draw(st.integers(0, 50))


_QTY = st.decimals(min_value=D(0), max_value=D(10_000), places=4)


@given(positions(), _QTY, _QTY)
def test_close_never_overshoots_and_keeps_at_most_the_share(
    position: tuple[Decimal, Decimal, Decimal], before: Decimal, closed: Decimal
) -> None:
    step, held, min_qty = position
    c = close_qty(held, before, closed, step, min_qty=min_qty)
    assert 0 <= c <= held  # never negative, never flips the follower
    assert is_multiple_of(c, step)
    kept = held - c
    if closed >= before:
        assert kept == 0  # provider flat: follower flat
        return
    if held > 0 and closed > 0:
        assert c > 0  # a provider close always reduces the copy
    if closed == 0:
        assert c == 0  # nothing closed, nothing to do (even when what is held is already below the minimum)
        return
    if kept > 0:
        share = Fraction(held) * Fraction(before - closed) / Fraction(before)
        assert kept >= min_qty
        assert Fraction(kept) <= share < Fraction(kept) + Fraction(step)


@given(positions(), st.integers(1, 10_000), st.lists(st.integers(1, 100), min_size=1, max_size=12))
def test_partial_closes_down_to_flat_leave_the_follower_flat(
    position: tuple[Decimal, Decimal, Decimal], provider_units: int, cuts: list[int]
) -> None:
    step, held, min_qty = position
    provider = D(provider_units) * D("0.01")
    for cut in cuts:
        closed = min(provider, provider * cut / 100).quantize(D("0.0001"))
        c = close_qty(held, provider, closed, step, min_qty=min_qty)
        assert 0 <= c <= held
        held -= c
        provider -= closed
        assert held >= 0
        if provider == 0:
            break
    # The provider's last close takes whatever it has left.
    held -= close_qty(held, provider, provider, step, min_qty=min_qty)
    assert held == 0
