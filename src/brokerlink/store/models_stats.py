"""Tables for statistics: equity snapshots (issue 9).

Imported at the end of :mod:`brokerlink.store.models`, so ``Base.metadata`` is complete."""

from __future__ import annotations

from brokerlink.store.models import Base

__all__ = ["Base"]
