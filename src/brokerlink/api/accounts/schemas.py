"""Bodies of the account and connection routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.domain.enums import AccountMode, ConnectionState


class AccountResponse(ResponseBody, kw_only=True):
    """A linked trading account."""

    id: str
    connection_id: str
    broker: str
    venue_account_id: str
    name: str
    currency: str
    mode: AccountMode
    connection_status: ConnectionState
    created_at: datetime


class AccountList(ResponseBody, kw_only=True):
    """The user's accounts."""

    data: list[AccountResponse]
    next_after: str | None
    """The cursor of the next page (``after``); null on the last page."""


class AccountUpdate(RequestBody, kw_only=True):
    """Rename an account (the name is the user's label; the broker's id never changes)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, examples=["Swing FX"])]


class ConnectionResponse(ResponseBody, kw_only=True):
    """A link to a broker. Credentials are never part of it."""

    id: str
    broker: str
    label: str
    status: ConnectionState
    created_at: datetime
    updated_at: datetime


class ConnectionList(ResponseBody, kw_only=True):
    """The user's broker connections."""

    data: list[ConnectionResponse]
    next_after: str | None
    """The cursor of the next page (``after``); null on the last page."""


CredentialName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
CredentialValue = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class ConnectionCreate(RequestBody, kw_only=True):
    """Link an account at a broker. The credentials are checked by connecting before anything is
    stored, kept only sealed in the vault, and never returned or logged."""

    broker: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$", examples=["sim"])]
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=100, examples=["Sim FX"])]
    base_url: Annotated[
        str, msgspec.Meta(min_length=1, max_length=500, pattern=r"^https?://", examples=["http://127.0.0.1:8101"])
    ]
    credentials: Annotated[
        dict[CredentialName, CredentialValue],
        msgspec.Meta(min_length=1, max_length=10, examples=[{"api_key": "...", "api_secret": "..."}]),
    ]
    venue_account_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    account_name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


class LinkResponse(ResponseBody, kw_only=True):
    """The new connection and the account it reaches."""

    connection: ConnectionResponse
    account: AccountResponse
