"""The chart of accounts: validated, hierarchical account codes.

A code is ``<type>:<segment>[:<segment>...]`` with lowercase ``[a-z0-9_-]`` segments, e.g.
``assets:cash:acc_01j...``. The first segment is the account type and fixes the account's normal
side (debit-normal: assets, expenses; credit-normal: liabilities, equity, income), which is how
:func:`brokerlink.ledger.journal.balance` signs balances. Codes embed the owning broker account or
user id (lowercased: ULIDs are case-insensitive), so a user's accounts are found by prefix and
never collide with another user's.

Builders below are the only way the rest of the code names accounts; nothing assembles codes by
hand, so a typo cannot create a new account silently.
"""

from __future__ import annotations

import functools
import re
from typing import Final, Literal, get_args

from brokerlink.kit.errors import InvalidInput

AccountType = Literal["assets", "liabilities", "equity", "income", "expenses"]

ACCOUNT_TYPES: Final[frozenset[str]] = frozenset(get_args(AccountType))
DEBIT_NORMAL: Final[frozenset[str]] = frozenset({"assets", "expenses"})
FEE_KINDS: Final[frozenset[str]] = frozenset({"performance", "management", "volume"})
MAX_CODE_LENGTH: Final = 200

_SEGMENT = re.compile(r"[a-z0-9_-]{1,64}")


class InvalidAccountCode(InvalidInput):
    """An account code that is not in the chart's grammar (422)."""

    code = "invalid_account_code"
    title = "Invalid account code"


def validate_code(code: str) -> AccountType:
    """Check ``code`` against the grammar and return its account type.

    Raises :class:`InvalidAccountCode` for an unknown type, a missing second segment, an empty or
    upper-case segment, or a code longer than :data:`MAX_CODE_LENGTH`. Valid codes are remembered
    (a poster names the same few accounts in every batch).
    """
    if not isinstance(code, str) or len(code) > MAX_CODE_LENGTH:
        raise InvalidAccountCode(f"account code too long or not a string: {code!r}")
    return _checked_code(code)


@functools.lru_cache(maxsize=8192)
def _checked_code(code: str) -> AccountType:
    segments = code.split(":")
    if len(segments) < 2:
        raise InvalidAccountCode(f"account code needs a type and a name: {code!r}")
    kind = segments[0]
    if kind not in ACCOUNT_TYPES:
        raise InvalidAccountCode(f"unknown account type {kind!r} in {code!r}")
    for segment in segments[1:]:
        if not _SEGMENT.fullmatch(segment):
            raise InvalidAccountCode(f"invalid segment {segment!r} in {code!r}")
    return kind  # type: ignore[return-value]  # checked against ACCOUNT_TYPES above


def account_type(code: str) -> AccountType:
    """The type of an already valid code (alias of :func:`validate_code`, for readability)."""
    return validate_code(code)


def is_debit_normal(code: str) -> bool:
    """True for assets and expenses, whose balance is debits minus credits."""
    return code.split(":", 1)[0] in DEBIT_NORMAL


def _id(value: str) -> str:
    """An id as a code segment: ids are prefixed ULIDs, case-insensitive, so lowercase them."""
    segment = value.lower()
    if not _SEGMENT.fullmatch(segment):
        raise InvalidAccountCode(f"not usable in an account code: {value!r}")
    return segment


def _fee_kind(kind: str) -> str:
    if kind not in FEE_KINDS:
        raise InvalidAccountCode(f"unknown fee kind {kind!r}")
    return kind


def cash(account_id: str) -> str:
    """Cash held at the broker for one linked account."""
    return f"assets:cash:{_id(account_id)}"


def positions_at_cost(account_id: str) -> str:
    """Cash accounts only: holdings valued at what was paid for them (not marked to market)."""
    return f"assets:positions:{_id(account_id)}"


def commissions(account_id: str) -> str:
    """Broker commissions paid by one linked account."""
    return f"expenses:commissions:{_id(account_id)}"


def realized_pnl(account_id: str) -> str:
    """Realized trading profit (credit) or loss (debit) of one linked account."""
    return f"income:trading:{_id(account_id)}"


def opening_balance(account_id: str) -> str:
    """Counterpart of the cash the broker reported when the account was first seen."""
    return f"equity:opening:{_id(account_id)}"


def owner_capital(account_id: str) -> str:
    """Counterpart of deposits (credit) and withdrawals (debit)."""
    return f"equity:capital:{_id(account_id)}"


def fee_expense(user_id: str, kind: str) -> str:
    """Fees a follower owes, by kind (performance, management, volume)."""
    return f"expenses:fees:{_fee_kind(kind)}:{_id(user_id)}"


def fees_payable(user_id: str) -> str:
    """Fees a follower has been charged and not yet paid."""
    return f"liabilities:fees-payable:{_id(user_id)}"


def fee_income(user_id: str, kind: str) -> str:
    """Fees a provider earns, by kind."""
    return f"income:fees:{_fee_kind(kind)}:{_id(user_id)}"


def fees_receivable(user_id: str) -> str:
    """Fees a provider has earned and not yet received."""
    return f"assets:fees-receivable:{_id(user_id)}"


def platform_fee_income(kind: str) -> str:
    """The platform's share of fees, by kind."""
    return f"income:platform:{_fee_kind(kind)}"
