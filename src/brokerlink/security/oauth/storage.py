"""The authorization server's queries over the ``oauth_*`` tables (flushes only; the request commits).

Revocation by consent, code or token family is shared with the consent pages and lives in
:class:`~brokerlink.store.repositories.oauth_tokens.OAuthTokenRepository`.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.store.models_oauth import (
    OAuthClientRow,
    OAuthCodeRow,
    OAuthConsentRow,
    OAuthParRow,
    OAuthTokenRow,
)

__all__ = ["AuthorizationStore", "json_list"]


class AuthorizationStore:
    """Reads and writes of one request, in the caller's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def client(self, client_id: str) -> OAuthClientRow | None:
        """A client that is not disabled."""
        row = await self.session.get(OAuthClientRow, client_id)
        return row if row is not None and row.disabled_at is None else None

    async def code(self, code_hash: str) -> OAuthCodeRow | None:
        return (await self.session.scalars(select(OAuthCodeRow).where(OAuthCodeRow.code_hash == code_hash))).first()

    async def consent(self, consent_id: str) -> OAuthConsentRow | None:
        return await self.session.get(OAuthConsentRow, consent_id)

    async def token(self, token_hash: str) -> OAuthTokenRow | None:
        return (await self.session.scalars(select(OAuthTokenRow).where(OAuthTokenRow.token_hash == token_hash))).first()

    async def redeem_code(self, code_id: str, now: datetime) -> bool:
        """Mark the code used; False when another request already did (the loser of a race is a reuse)."""
        result = await self.session.execute(
            update(OAuthCodeRow).where(OAuthCodeRow.id == code_id, OAuthCodeRow.used_at.is_(None)).values(used_at=now)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def add_token(self, row: OAuthTokenRow) -> None:
        self.session.add(row)
        await self.session.flush()

    async def add_par(self, row: OAuthParRow) -> None:
        self.session.add(row)
        await self.session.flush()

    async def par(self, request_uri_hash: str) -> OAuthParRow | None:
        return (
            await self.session.scalars(select(OAuthParRow).where(OAuthParRow.request_uri_hash == request_uri_hash))
        ).first()


def json_list(text: str | None) -> list[str]:
    """A JSON array column as a list of strings (anything else is an empty list)."""
    if not text:
        return []
    value = json.loads(text)
    return [str(item) for item in value] if isinstance(value, list) else []
