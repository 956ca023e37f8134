"""The scopes a third-party app may ask for, and what each means in plain words.

The descriptions are shown on the consent page, so they say what the app will be able to do, not
how the API is shaped. ``parse_scopes`` is the one place a scope string from outside is read:
unknown scopes are refused, never silently dropped (an app that asks for something we do not
offer learns so at once instead of getting less than it thinks).
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

__all__ = [
    "ACCOUNT_SCOPES",
    "SCOPES",
    "SCOPE_DESCRIPTIONS",
    "UnknownScopeError",
    "describe",
    "format_scopes",
    "parse_scopes",
]

SCOPES: tuple[str, ...] = (
    "accounts:read",
    "balances:read",
    "positions:read",
    "orders:read",
    "orders:write",
    "copy:read",
    "copy:manage",
    "ledger:read",
    "webhooks:manage",  # apps' webhook endpoints (engine/webhooks/consents.py)
)
"""Every scope, in the order the consent page lists them."""

SCOPE_DESCRIPTIONS: MappingProxyType[str, str] = MappingProxyType(
    {
        "accounts:read": "See which broker accounts you have linked and their names",
        "balances:read": "See the cash balances of the selected accounts",
        "positions:read": "See the positions (holdings) in the selected accounts",
        "orders:read": "See the orders and trades of the selected accounts",
        "orders:write": "Place and cancel orders in the selected accounts",
        "copy:read": "See your copy-trading subscriptions and their results",
        "copy:manage": "Start, change and stop copy-trading subscriptions for you",
        "ledger:read": "See the ledger, fees and statements of the selected accounts",
        "webhooks:manage": "Be notified at its own server of what it may see in the selected accounts",
    }
)
"""Plain-words description of each scope, for the consent page."""

ACCOUNT_SCOPES: frozenset[str] = frozenset(
    {"accounts:read", "balances:read", "positions:read", "orders:read", "orders:write", "ledger:read"}
)
"""Scopes that act on particular accounts: a consent that grants any of them names at least one account."""


class UnknownScopeError(ValueError):
    """A scope string named something that is not in :data:`SCOPES`."""

    def __init__(self, unknown: Iterable[str]) -> None:
        self.unknown = tuple(sorted(unknown))
        super().__init__(f"unknown scope: {' '.join(self.unknown)}")


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """The scopes in a space-separated ``scope`` value (or an iterable of scope names).

    Raises :class:`UnknownScopeError` when any name is not in :data:`SCOPES`. An empty value gives
    an empty set; callers decide whether that is acceptable.
    """
    names = text.split() if isinstance(text, str) else [str(name).strip() for name in text]
    scopes = frozenset(name for name in names if name)
    unknown = scopes.difference(SCOPES)
    if unknown:
        raise UnknownScopeError(unknown)
    return scopes


def format_scopes(scopes: Iterable[str]) -> str:
    """A space-separated scope value in the canonical order of :data:`SCOPES`."""
    chosen = set(scopes)
    return " ".join(scope for scope in SCOPES if scope in chosen)


def describe(scopes: Iterable[str]) -> list[tuple[str, str]]:
    """``(scope, plain words)`` pairs in the canonical order, for display."""
    chosen = set(scopes)
    return [(scope, SCOPE_DESCRIPTIONS[scope]) for scope in SCOPES if scope in chosen]
