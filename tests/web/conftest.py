"""The web pages use the same app fixtures as the API tests."""

from tests.api.conftest import app, client, clock, make_client, settings

__all__ = ["app", "client", "clock", "make_client", "settings"]
