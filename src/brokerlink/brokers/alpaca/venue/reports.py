"""The Alpaca test venue's read-only views in Alpaca's forms: account, assets, positions, latest quotes.

Values come from the venue core; money is shown to the cent (half-even), ratios to ten decimals,
and crypto positions under the slash-less symbol (``BTCUSD``) as Alpaca's reference shows them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from brokerlink.brokers.alpaca.venue.assets import venue_uuid
from brokerlink.brokers.alpaca.wire import Account, Asset, LatestQuote, Position

if TYPE_CHECKING:
    from brokerlink.brokers.alpaca.venue.state import AlpacaVenue

_CENT = Decimal("0.01")
_RATIO = Decimal("0.0000000001")


def money(value: Decimal) -> Decimal:
    """Rounded half-even to cents, as Alpaca shows account values."""
    return value.quantize(_CENT, ROUND_HALF_EVEN)


def account(venue: AlpacaVenue, account_id: str) -> Account:
    """``GET /v2/account``."""
    body = venue.core.account_body(account_id)
    held = positions(venue, account_id)
    long_value = sum((p.market_value or Decimal(0) for p in held if p.side == "long"), Decimal(0))
    short_value = sum((p.market_value or Decimal(0) for p in held if p.side == "short"), Decimal(0))
    initial = next(a.cash for a in venue.config.accounts if a.account_id == account_id)
    return Account(
        id=venue_uuid("account", account_id),
        account_number=account_id,
        status="ACTIVE",
        crypto_status="ACTIVE",
        currency=body.currency,
        cash=money(body.cash),
        equity=money(body.equity),
        portfolio_value=money(body.equity),
        buying_power=money(body.buying_power),
        regt_buying_power=money(body.buying_power),
        non_marginable_buying_power=money(body.cash),
        long_market_value=money(long_value),
        short_market_value=money(short_value),
        initial_margin=money(body.margin_used),
        maintenance_margin=money(body.margin_used),
        last_maintenance_margin=Decimal(0),
        last_equity=initial,
        sma=Decimal(0),
        multiplier=Decimal(2),
        shorting_enabled=True,
        created_at=venue.now(),
    )


def assets(venue: AlpacaVenue, *, status: str | None = None, asset_class: str | None = None) -> list[Asset]:
    """``GET /v2/assets``: stocks carry no increments; crypto assets publish theirs."""
    out = []
    for asset in venue.assets.values():
        if asset_class and asset.asset_class != asset_class:
            continue
        if status and status != "active":
            continue
        inst = asset.sim.instrument
        out.append(
            Asset(
                id=asset.id,
                asset_class=asset.asset_class,
                exchange=asset.exchange,
                symbol=asset.symbol,
                name=asset.name,
                status="active",
                tradable=inst.tradable,
                marginable=asset.marginable,
                shortable=asset.shortable,
                easy_to_borrow=asset.shortable,
                fractionable=asset.fractionable,
                min_order_size=inst.min_qty if asset.is_crypto else None,
                min_trade_increment=inst.qty_step if asset.is_crypto else None,
                price_increment=inst.tick_size if asset.is_crypto else None,
            )
        )
    return out


def positions(venue: AlpacaVenue, account_id: str) -> list[Position]:
    """``GET /v2/positions``: marked at the close-out side of the current quote."""
    out = []
    for body in venue.core.positions(account_id):
        asset = venue.assets[body.symbol]
        quote = venue.core.quote(body.symbol)
        price = quote.bid if body.qty > 0 else quote.ask
        start = asset.sim.params.initial_price
        cost = (body.qty * body.avg_price).quantize(_CENT, ROUND_HALF_EVEN)
        value = (body.qty * price).quantize(_CENT, ROUND_HALF_EVEN)
        ratio = (body.unrealized_pnl / abs(cost)).quantize(_RATIO) if cost else Decimal(0)
        out.append(
            Position(
                asset_id=asset.id,
                symbol=asset.position_symbol,
                exchange=asset.exchange,
                asset_class=asset.asset_class,
                avg_entry_price=body.avg_price,
                qty=body.qty,
                qty_available=body.qty,
                side="long" if body.qty > 0 else "short",
                market_value=value,
                cost_basis=cost,
                unrealized_pl=body.unrealized_pnl,
                unrealized_plpc=ratio,
                unrealized_intraday_pl=body.unrealized_pnl,
                unrealized_intraday_plpc=ratio,
                current_price=price,
                lastday_price=start,
                change_today=((price - start) / start).quantize(_RATIO),
            )
        )
    return out


def latest_quote(venue: AlpacaVenue, symbol: str) -> LatestQuote:
    """The top of the book now, as ``.../latest/quotes`` answers it."""
    asset = venue.asset(symbol)
    body = venue.core.quote(asset.symbol)
    stock = not asset.is_crypto
    return LatestQuote(
        bp=body.bid,
        bs=body.bid_size,
        ap=body.ask,
        ask_size=body.ask_size,
        t=body.ts,
        bx="V" if stock else None,
        ax="V" if stock else None,
        c=["R"] if stock else None,
        z="C" if stock else None,
    )
