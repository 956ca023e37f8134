"""The Alpaca test venue: Alpaca's documented REST and WebSocket protocol over the sim venue core."""

from brokerlink.brokers.alpaca.venue.app import create_alpaca_venue_app, default_config
from brokerlink.brokers.alpaca.venue.state import AlpacaVenue

__all__ = ["AlpacaVenue", "create_alpaca_venue_app", "default_config"]
