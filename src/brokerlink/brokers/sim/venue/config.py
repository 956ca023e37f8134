"""How a sim venue is started: instrument set, seed, accounts, auth mode, limits and timers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from brokerlink.brokers.sim.gate import DEFAULT_RATE_LIMITS, RateLimitRule
from brokerlink.domain.enums import AccountMode

VenueMode = Literal["normal", "test", "demo"]
"""``test`` and ``demo`` mount the fault-injection control API; ``normal`` does not."""

PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]


class AccountConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One venue account and the API key that trades it."""

    account_id: str
    api_key: str
    api_secret: str
    cash: Decimal = Decimal(100_000)
    currency: str = "USD"
    mode: AccountMode = AccountMode.NETTING

    def __repr__(self) -> str:
        return f"AccountConfig(account_id={self.account_id!r}, api_key={self.api_key[:4]}..., currency={self.currency})"


DEFAULT_ACCOUNTS = (
    AccountConfig(account_id="sim-1", api_key="sim-key-1", api_secret="sim-secret-1"),  # noqa: S106 - a paper demo key
)
"""A single demo account, so ``brokerlink sim serve`` works without a config file (loopback only)."""


class VenueConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything a venue is started with; loadable from JSON (:meth:`load`).

    Timers are float seconds (they never touch money). ``background`` runs the market data loop in
    the app's lifespan; tests turn it off and call :meth:`Venue.step` themselves.
    """

    instrument_set: Literal["fx", "equities", "crypto"] = "fx"
    seed: int = 1
    accounts: tuple[AccountConfig, ...] = DEFAULT_ACCOUNTS
    signed: bool = False
    rate_limits: tuple[RateLimitRule, ...] = DEFAULT_RATE_LIMITS
    tick_interval_s: PositiveSeconds = 0.25
    heartbeat_interval_s: PositiveSeconds = 10.0
    connection_lifetime_s: PositiveSeconds = 86_400.0
    ws_queue_size: Annotated[int, msgspec.Meta(ge=1)] = 1_000
    mode: VenueMode = "normal"
    background: bool = True

    def __post_init__(self) -> None:
        ids = [a.account_id for a in self.accounts]
        keys = [a.api_key for a in self.accounts]
        if len(set(ids)) != len(ids) or len(set(keys)) != len(keys):
            raise ValueError("account ids and API keys must be unique")

    @property
    def control_enabled(self) -> bool:
        """Whether the ``/_control`` fault-injection API is mounted."""
        return self.mode in {"test", "demo"}

    @classmethod
    def load(cls, path: Path) -> VenueConfig:
        """Read a JSON config file (unknown fields are an error)."""
        return msgspec.json.decode(path.read_bytes(), type=cls)
