"""The OANDA v20 test venue: v20's REST API and streams, built on the sim venue's core."""

from brokerlink.brokers.oanda.venue.app import create_oanda_venue_app
from brokerlink.brokers.oanda.venue.config import OandaAccountConfig, OandaVenueConfig
from brokerlink.brokers.oanda.venue.core import OandaCore

__all__ = ["OandaAccountConfig", "OandaCore", "OandaVenueConfig", "create_oanda_venue_app"]
