"""An audit stamp: who asked for a change and from where, carried into the transaction that makes it.

A service that writes in its own transaction (linking a broker, placing an order) takes a
:class:`Stamp` from its caller and records the change in that transaction, so the record exists
exactly when the change does (SECURITY.md 33). The copy engine stamps its own orders with the
system actor :data:`COPY_ENGINE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.security.audit import Actor, AuditContext, DetailValue, record

COPY_ENGINE = Actor(kind="system", id="copy_engine")
CLI = Actor(kind="system", id="cli")
"""An operator's command at the host (``brokerlink user create``, ``brokerlink vault rotate``)."""


class Stamp(msgspec.Struct, frozen=True, kw_only=True):
    """The actor and request context for the audit record of a change made elsewhere."""

    actor: Actor
    context: AuditContext | None = None

    async def record(
        self,
        session: AsyncSession,
        *,
        action: str,
        target: str,
        now: datetime,
        outcome: Literal["success", "failure", "denied"] = "success",
        details: Mapping[str, DetailValue] | None = None,
    ) -> int:
        """Record ``action`` on ``target`` in ``session``'s transaction; returns the sequence."""
        return await record(
            session,
            actor=self.actor,
            action=action,
            target=target,
            now=now,
            outcome=outcome,
            context=self.context,
            details=details,
        )
