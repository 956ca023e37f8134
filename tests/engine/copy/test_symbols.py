"""Symbol resolution at the follower's broker: filter, map, canonical, venue spelling, broker suffixes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Instrument
from brokerlink.engine.copy import (
    CopySettings,
    Skip,
    SkipReason,
    SymbolIndex,
    mapped_symbol,
    resolve_symbol,
    symbol_key,
)


def inst(symbol: str, venue: str, asset_class: AssetClass = AssetClass.FX, *, tradable: bool = True) -> Instrument:
    return Instrument(
        symbol=symbol,
        venue_symbol=venue,
        asset_class=asset_class,
        base="X",
        quote="USD",
        tick_size=Decimal("0.01"),
        qty_step=Decimal("0.01"),
        min_qty=Decimal("0.01"),
        tradable=tradable,
    )


EURUSD = inst("EUR/USD", "EURUSD.m")
GBPUSD_RAW = inst("GBPUSD.m", "GBPUSD.m")  # an adapter that does not know the canonical name
USDJPY_PRO = inst("USDJPY.pro", "USDJPY.pro")
USDJPY_ECN = inst("USDJPY.ecn", "USDJPY.ecn")
XAUUSD = inst("XAU/USD", "GOLD", AssetClass.CFD)
BRK_A = inst("BRK.A", "BRK.A", AssetClass.EQUITY)
AAPL = inst("AAPL", "AAPL", AssetClass.EQUITY)
HALTED = inst("TSLA", "TSLA", AssetClass.EQUITY, tradable=False)
BROKER = [EURUSD, GBPUSD_RAW, USDJPY_PRO, USDJPY_ECN, XAUUSD, BRK_A, AAPL, HALTED]
AS_MAPPING = {i.symbol: i for i in BROKER}
INDEX = SymbolIndex(BROKER)


def resolve(settings: CopySettings, symbol: str) -> Instrument | Skip:
    """Resolve through the index and through a plain mapping; both must agree."""
    by_index = resolve_symbol(settings, symbol, INDEX)
    assert resolve_symbol(settings, symbol, AS_MAPPING) == by_index
    return by_index


@pytest.mark.parametrize(
    ("provider_symbol", "expected"),
    [
        pytest.param("EUR/USD", EURUSD, id="canonical"),
        pytest.param("EURUSD.m", EURUSD, id="venue spelling"),
        pytest.param("EURUSD", EURUSD, id="separators ignored"),
        pytest.param("eur_usd", EURUSD, id="case ignored"),
        pytest.param("GBP/USD", GBPUSD_RAW, id="broker suffix dropped"),
        pytest.param("XAU/USD", XAUUSD, id="canonical with a different venue name"),
        pytest.param("AAPL", AAPL, id="equity"),
    ],
)
def test_found(provider_symbol: str, expected: Instrument) -> None:
    assert resolve(CopySettings(), provider_symbol) == expected


@pytest.mark.parametrize(
    ("provider_symbol", "reason"),
    [
        pytest.param("USD/CHF", SkipReason.SYMBOL_UNKNOWN_AT_BROKER, id="not listed"),
        pytest.param("USD/JPY", SkipReason.SYMBOL_AMBIGUOUS, id="two suffixed accounts"),
        pytest.param("BRK", SkipReason.SYMBOL_UNKNOWN_AT_BROKER, id="a share class is not a suffix"),
        pytest.param("TSLA", SkipReason.SYMBOL_NOT_TRADABLE, id="not tradable"),
    ],
)
def test_not_found(provider_symbol: str, reason: SkipReason) -> None:
    result = resolve(CopySettings(), provider_symbol)
    assert isinstance(result, Skip)
    assert result.reason is reason
    assert provider_symbol in result.detail


def test_the_symbol_map_settles_ambiguity_and_renames() -> None:
    s = CopySettings(symbol_map={"USD/JPY": "USDJPY.ecn", "xau/usd": "GOLD"})
    assert resolve(s, "USD/JPY") == USDJPY_ECN
    assert mapped_symbol(s, "XAUUSD") == "GOLD"  # map keys compare by symbol_key too
    assert resolve(s, "XAU/USD") == XAUUSD
    missing = resolve(CopySettings(symbol_map={"EUR/USD": "EURUSD.raw"}), "EUR/USD")
    assert isinstance(missing, Skip)
    assert missing.reason is SkipReason.SYMBOL_UNKNOWN_AT_BROKER
    assert "mapped to EURUSD.raw" in missing.detail


def test_deny_and_allow_lists_name_provider_or_mapped_symbols() -> None:
    denied = resolve(CopySettings(deny_symbols=("eurusd",)), "EUR/USD")
    assert isinstance(denied, Skip)
    assert denied.reason is SkipReason.SYMBOL_DENIED
    not_allowed = resolve(CopySettings(allow_symbols=("AAPL",)), "EUR/USD")
    assert isinstance(not_allowed, Skip)
    assert not_allowed.reason is SkipReason.SYMBOL_NOT_ALLOWED
    assert resolve(CopySettings(allow_symbols=("AAPL", "EURUSD")), "EUR/USD") == EURUSD
    # Denying the follower-side name of a mapped symbol denies it as well.
    mapped_denied = resolve(CopySettings(symbol_map={"XAU/USD": "GOLD"}, deny_symbols=("GOLD",)), "XAU/USD")
    assert isinstance(mapped_denied, Skip)
    assert mapped_denied.reason is SkipReason.SYMBOL_DENIED
    assert resolve(CopySettings(symbol_map={"XAU/USD": "GOLD"}, allow_symbols=("GOLD",)), "XAU/USD") == XAUUSD


def test_symbol_key() -> None:
    assert symbol_key("eur/usd") == symbol_key("EUR_USD") == symbol_key("EURUSD") == "EURUSD"
    assert symbol_key("EURUSD.m") == "EURUSDM"  # suffixes are not dropped by the key
