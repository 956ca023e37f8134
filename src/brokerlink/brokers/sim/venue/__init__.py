"""The sim venue: a real ASGI server speaking ADR 0006's REST and WebSocket protocol."""

from brokerlink.brokers.sim.venue.app import create_venue_app
from brokerlink.brokers.sim.venue.config import AccountConfig, VenueConfig
from brokerlink.brokers.sim.venue.state import Venue

__all__ = ["AccountConfig", "Venue", "VenueConfig", "create_venue_app"]
