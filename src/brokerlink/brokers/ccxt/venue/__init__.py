"""A Binance spot test venue: Binance's documented REST and user-data-stream protocol over the sim venue core."""

from brokerlink.brokers.ccxt.venue.app import BinanceVenue, create_binance_venue_app, default_config

__all__ = ["BinanceVenue", "create_binance_venue_app", "default_config"]
