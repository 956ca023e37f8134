"""Which broker endpoints a link may reach: loopback test venues over http or https, and the
configured broker hosts over https only; anything else is refused before any connection is tried
(SSRF, SECURITY.md 30)."""

from __future__ import annotations

from typing import Any

import pytest

from brokerlink.config import Settings
from brokerlink.engine.links.service import LOOPBACK_HOSTS, BrokerLinks
from brokerlink.kit.errors import InvalidInput


def links(hosts: frozenset[str]) -> BrokerLinks:
    unused: Any = None  # _check_endpoint needs no database, bus or vault
    return BrokerLinks(unused, unused, unused, unused, allowed_hosts=LOOPBACK_HOSTS | hosts)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8101", "https://localhost:8443/v2", "https://paper-api.alpaca.markets"]
)
def test_loopback_and_configured_broker_hosts_are_reached(url: str) -> None:
    links(frozenset(Settings().broker_hosts))._check_endpoint(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://paper-api.alpaca.markets",  # a real broker only over https
        "https://paper-api.alpaca.markets.evil.example",
        "https://api.kraken.com",  # not configured
        "ftp://127.0.0.1/",
    ],
)
def test_anything_else_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="base_url"):
        links(frozenset(Settings().broker_hosts))._check_endpoint(url)


def test_the_default_broker_hosts_are_the_built_in_brokers_official_api_hosts() -> None:
    assert {"api.alpaca.markets", "api-fxtrade.oanda.com", "api.binance.com"} <= set(Settings().broker_hosts)
