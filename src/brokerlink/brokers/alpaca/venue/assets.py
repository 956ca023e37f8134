"""What the Alpaca test venue lists: a few US stocks and the crypto pairs BTC/USD and ETH/USD.

Each asset pairs a sim instrument (the venue core's grid, market and market maker) with what
Alpaca's assets API says of it. Stock rules follow Alpaca's documented ones (cent prices, fractional
quantities to 9 decimals, $1 minimum for fractions); crypto rules are what ``GET /v2/assets``
publishes as ``min_order_size``, ``min_trade_increment`` and ``price_increment``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Literal

import msgspec

from brokerlink.brokers.sim.instruments import SimInstrument, SimParams
from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Instrument

_NAMESPACE = uuid.UUID("5f0c3a53-3c1e-4a8e-9d0b-6a4d2f5c7e11")
_FRACTION = Decimal("0.000000001")


def venue_uuid(kind: str, name: str) -> str:
    """A stable UUID for a venue object (assets, accounts): the same on every start."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{name}"))


class ListedAsset(msgspec.Struct, frozen=True, kw_only=True):
    """One asset of the venue: the core's instrument and the assets API's description of it."""

    sim: SimInstrument
    asset_class: Literal["us_equity", "crypto"]
    exchange: str
    name: str
    fractionable: bool = True
    marginable: bool = False
    shortable: bool = False

    @property
    def symbol(self) -> str:
        """Alpaca's spelling: ``AAPL``, ``BTC/USD``."""
        return self.sim.instrument.venue_symbol

    @property
    def id(self) -> str:
        """The asset's UUID."""
        return venue_uuid("asset", self.symbol)

    @property
    def is_crypto(self) -> bool:
        """Crypto pairs trade 24/7, gtc or ioc, without shorting."""
        return self.asset_class == "crypto"

    @property
    def position_symbol(self) -> str:
        """Positions name crypto pairs without the slash (``BTCUSD``), as Alpaca's reference shows."""
        return self.symbol.replace("/", "")


def _stock(symbol: str, name: str, exchange: str, price: str, vol: str) -> ListedAsset:
    instrument = Instrument(
        symbol=symbol,
        venue_symbol=symbol,
        asset_class=AssetClass.EQUITY,
        base=symbol,
        quote="USD",
        tick_size=Decimal("0.01"),
        qty_step=_FRACTION,
        min_qty=_FRACTION,
        min_notional=Decimal(1),
    )
    params = SimParams(
        initial_price=Decimal(price),
        drift=Decimal("0.08"),
        volatility=Decimal(vol),
        spread_ticks=2,
        top_qty=Decimal(100),
    )
    return ListedAsset(
        sim=SimInstrument(instrument=instrument, params=params),
        asset_class="us_equity",
        exchange=exchange,
        name=name,
        marginable=True,
        shortable=True,
    )


def _crypto(base: str, name: str, price: str, tick: str, step: str, vol: str, top: str) -> ListedAsset:  # noqa: PLR0917
    instrument = Instrument(
        symbol=f"{base}/USD",
        venue_symbol=f"{base}/USD",
        asset_class=AssetClass.CRYPTO,
        base=base,
        quote="USD",
        tick_size=Decimal(tick),
        qty_step=Decimal(step),
        min_qty=Decimal(step),
    )
    params = SimParams(initial_price=Decimal(price), volatility=Decimal(vol), spread_ticks=2, top_qty=Decimal(top))
    return ListedAsset(
        sim=SimInstrument(instrument=instrument, params=params), asset_class="crypto", exchange="CRYPTO", name=name
    )


ALPACA_ASSETS: tuple[ListedAsset, ...] = (
    _stock("AAPL", "Apple Inc. Common Stock", "NASDAQ", "190.00", "0.25"),
    _stock("MSFT", "Microsoft Corporation Common Stock", "NASDAQ", "410.00", "0.22"),
    _stock("NVDA", "NVIDIA Corporation Common Stock", "NASDAQ", "880.00", "0.50"),
    _stock("SPY", "SPDR S&P 500 ETF Trust", "ARCA", "510.00", "0.15"),
    _crypto("BTC", "Bitcoin", "65000.0", "0.1", "0.0001", "0.60", "0.5"),
    _crypto("ETH", "Ethereum", "3200.00", "0.01", "0.001", "0.70", "5"),
)
"""The venue's assets: four US stocks and ETFs, and two crypto pairs against USD."""
