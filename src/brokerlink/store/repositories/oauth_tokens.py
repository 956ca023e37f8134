"""OAuth tokens: revocation, shared by every path that ends a grant (issue 5, ADR 0023).

Tokens are stored as SHA-256 hashes (:mod:`brokerlink.store.models_oauth`). A token issued from
another carries the same ``code_id`` and ``consent_id`` as its ancestor and the ancestor's id in
``parent_id``, so one statement per criterion finds a whole family: a consent's tokens, the tokens
issued from one code (revoked when the code is redeemed twice), or a refresh token and the access
tokens refreshed with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.store.models_oauth import OAuthTokenRow


class OAuthTokenRepository:
    """Queries over ``oauth_tokens`` that more than one part of the authorization server needs."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def revoke(
        self,
        *,
        now: datetime,
        consent_id: str | None = None,
        code_id: str | None = None,
        token_ids: list[str] | None = None,
    ) -> list[str]:
        """Revoke the live tokens matching any criterion given, and the tokens issued from them.

        Returns the ids revoked by this call (already revoked tokens are left as they were, so
        revoking twice is harmless and reports nothing the second time). At least one criterion is
        required: revoking everything by accident is not an option.
        """
        criteria = []
        if consent_id is not None:
            criteria.append(OAuthTokenRow.consent_id == consent_id)
        if code_id is not None:
            criteria.append(OAuthTokenRow.code_id == code_id)
        if token_ids:
            criteria.append(OAuthTokenRow.id.in_(token_ids))
            criteria.append(OAuthTokenRow.parent_id.in_(token_ids))
        if not criteria:
            raise ValueError("revoke needs a consent_id, a code_id or token_ids")
        live = OAuthTokenRow.revoked_at.is_(None)
        ids = list((await self.session.scalars(select(OAuthTokenRow.id).where(live, or_(*criteria)))).all())
        if ids:
            await self.session.execute(
                update(OAuthTokenRow).where(OAuthTokenRow.id.in_(ids), live).values(revoked_at=now)
            )
        return ids
