"""How an OANDA test venue is started: its accounts (each with the token that reaches it), seed and timers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec

from brokerlink.brokers.sim.venue.config import VenueMode

PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]


class OandaAccountConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One v20 account (id like ``101-004-1435156-001``) and the personal access token that reaches it.

    Several accounts may share a token: ``GET /v3/accounts`` lists every account of the token.
    """

    account_id: str
    token: str
    alias: str = "Primary"
    currency: str = "USD"
    cash: Decimal = Decimal(100_000)
    hedging: bool = False

    def __repr__(self) -> str:
        return (
            f"OandaAccountConfig(account_id={self.account_id!r}, token={self.token[:4]}..., currency={self.currency})"
        )


DEFAULT_ACCOUNTS = (
    OandaAccountConfig(account_id="101-001-0000001-001", token="oanda-practice-token"),  # noqa: S106 - a test venue's token
)


class OandaVenueConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything an OANDA test venue is started with (timers in float seconds: they never touch money).

    ``rate_limit_per_s`` is OANDA's documented 120 requests per second per client IP; ``heartbeat_interval_s``
    the streams' heartbeat (5 s at OANDA; tests use less).
    """

    seed: int = 1
    accounts: tuple[OandaAccountConfig, ...] = DEFAULT_ACCOUNTS
    user_id: int = 1435156
    rate_limit_per_s: Annotated[int, msgspec.Meta(ge=1)] = 120
    tick_interval_s: PositiveSeconds = 0.25
    heartbeat_interval_s: PositiveSeconds = 5.0
    stream_queue_size: Annotated[int, msgspec.Meta(ge=1)] = 1_000
    mode: VenueMode = "normal"
    background: bool = True

    def __post_init__(self) -> None:
        ids = [a.account_id for a in self.accounts]
        if len(set(ids)) != len(ids):
            raise ValueError("account ids must be unique")
