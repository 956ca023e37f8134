"""Who is making a request, and what they may reach.

Every request that reaches a protected route carries exactly one :class:`Principal`. Today it is
always a first-party user signed in with a session. The shape already has room for third-party
apps (OAuth clients acting for a user under a consent): ``scopes`` and ``account_ids`` narrow what a
principal may do, and ``None`` means "not narrowed" (a user acting for themself).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from brokerlink.domain.enums import Role
from brokerlink.kit.errors import Forbidden, NotFound


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated party behind a request."""

    kind: Literal["user", "client"]
    user_id: str
    """The user whose data this principal acts on (for a client: the consenting user)."""
    role: Role = Role.USER
    session_id: str | None = None
    client_id: str | None = None
    consent_id: str | None = None
    scopes: frozenset[str] | None = None
    """Granted scopes; ``None`` for a first-party session, which is not narrowed by scopes."""
    account_ids: frozenset[str] | None = None
    """Accounts a consent covers; ``None`` means all of the user's accounts."""

    def has_scope(self, scope: str) -> bool:
        """Whether this principal may act with ``scope``."""
        return self.scopes is None or scope in self.scopes

    def require_role(self, *roles: Role) -> None:
        """Raise 403 unless the principal has one of ``roles``."""
        if self.role not in roles:
            raise Forbidden("this action needs one of the roles: " + ", ".join(sorted(roles)))

    def can_reach_account(self, account_id: str) -> bool:
        """Whether the principal's grant covers ``account_id`` (ownership is checked by the repository)."""
        return self.account_ids is None or account_id in self.account_ids

    def require_account(self, account_id: str) -> None:
        """Raise 404 (not 403: existence is not revealed) when the account is outside the grant."""
        if not self.can_reach_account(account_id):
            raise NotFound("account not found")
