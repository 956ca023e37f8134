"""What the consent routes and pages share: who may use them, the issuer, and finishing ended consents.

``issuer_of`` is the authorization server's (``security/oauth/runtime.py``): the ``iss`` of every
authorization response must equal the metadata document's issuer (SECURITY.md 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.audit import audited
from brokerlink.bus.base import EventBus
from brokerlink.domain.enums import Role
from brokerlink.kit.errors import Forbidden
from brokerlink.logs import get_logger
from brokerlink.security.oauth.consents import Ended
from brokerlink.security.oauth.revocation import TokensRevoked, publish_revocation
from brokerlink.security.oauth.runtime import issuer_of

__all__ = ["finish_ended", "issuer_of", "publish_after_commit", "require_admin", "require_user"]
from brokerlink.security.principal import Principal
from brokerlink.store.repositories.webhooks import WebhookEndpointRepository

_log = get_logger("brokerlink.consents")


def require_user(principal: Principal) -> Principal:
    """403 for an app's token: consents are managed by the person who gave them, not by apps."""
    if principal.kind != "user":
        raise Forbidden("consents are managed by the account holder, not by apps")
    return principal


def require_admin(principal: Principal) -> Principal:
    """403 unless a signed-in admin (an app's token never registers apps, whoever consented to it)."""
    require_user(principal)
    principal.require_role(Role.ADMIN)
    return principal


async def publish_after_commit(
    request: Request[Any, Any, Any], db: AsyncSession, messages: Sequence[TokensRevoked]
) -> None:
    """Commit the request's transaction now, then tell every process which tokens died.

    The request boundary would commit anyway; committing first means no process drops a token
    that a failed commit would have left valid, and no token outlives its consent by more than the
    time the message takes.
    """
    if not messages:
        return
    await db.commit()
    bus: EventBus = request.app.state.bus
    for message in messages:
        try:
            await publish_revocation(bus, message)
        except Exception:  # noqa: BLE001 - the database already refuses the tokens; caches expire in seconds
            _log.exception("revocation_publish_failed", consent_id=message.consent_id, tokens=len(message.token_ids))


async def finish_ended(request: Request[Any, Any, Any], db: AsyncSession, ended: Sequence[Ended]) -> None:
    """Audit each consent that changed (revoked, or found expired), disable the webhook endpoints the
    app registered under it (ADR 0033), commit, and publish the revocations."""
    endpoints = WebhookEndpointRepository(db)
    for item in ended:
        if item.action is not None:
            how = "revoked" if item.action == "consent.revoke" else "expired"
            # Part of ending the consent (its one audit record); the webhook service also refuses, per
            # event, a consent that ended without passing here (one whose time ran out unnoticed).
            await endpoints.disable_for_consent(
                item.consent.id, reason=f"the consent it was registered under was {how}", now=item.at
            )
            await audited(
                request, db, action=item.action, target=item.consent.id, now=item.at,
                details={"client_id": item.consent.client_id, "revoked": len(item.token_ids)},
            )  # fmt: skip
    await publish_after_commit(request, db, [m for m in (e.revocation for e in ended) if m is not None])
