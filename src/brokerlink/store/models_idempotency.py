"""Idempotency keys: the first response to a request made with an ``Idempotency-Key`` (issue 5, ADR 0026).

Imported at the end of :mod:`brokerlink.store.models`, so ``Base.metadata`` is complete.

A row belongs to one principal (``owner``: the user, or the client acting for a user) and one key,
kept as the SHA-256 of the key so the unique index is small whatever the client sends. It holds
only what a retry needs: the hash of the first request (method, path, canonical body), and once the
request finished its response (status, the headers that matter, body). While the first request runs
``status`` is ``None`` and ``locked_until`` bounds how long it may hold the key; a request that died
without answering frees the key once the lease is over. Rows expire (``expires_at``) and are purged
by the retention service (:mod:`brokerlink.engine.retention`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from brokerlink.store.models import ID, Base

__all__ = ["IdempotencyKeyRow"]

HASH = String(64)
"""A hex SHA-256."""


class IdempotencyKeyRow(Base):
    """One principal's idempotency key, its request fingerprint and its first response."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key_hash"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    """``user:<user id>``, or ``client:<client id>:<user id>`` for an app acting under a consent."""
    key_hash: Mapped[str] = mapped_column(HASH)
    request_hash: Mapped[str] = mapped_column(HASH)
    """SHA-256 of the method, the path and the canonical body of the first request."""
    status: Mapped[int | None]
    """The first response's status; ``None`` while the first request is still running."""
    response_headers: Mapped[str | None] = mapped_column(Text)
    """JSON array of ``[name, value]`` pairs: only headers a retry must see again (content type, location)."""
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    """While the first request runs: when another request may take the key over (it died unanswered)."""
    expires_at: Mapped[datetime] = mapped_column(index=True)
