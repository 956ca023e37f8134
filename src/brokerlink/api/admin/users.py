"""``/v1/admin/users``: admins list users and grant roles (``provider`` publishes strategies).

Admins only (403 otherwise; auditors read the audit trail, not the users). A role change takes
effect on the user's next request: sessions read the role from the user row each time. An admin
cannot take their own admin role away, so the last admin cannot lock everyone out by accident.
Lists are oldest first and paged by cursor (``limit``, ``after`` = the previous ``next_after``). A
user carries an ETag; a role change takes an optional ``If-Match`` (412 when the user changed since).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Response, Router, get, patch
from litestar.params import JSONBody, Parameter

from brokerlink.api.audit import audited, unchanged
from brokerlink.api.deps import AppClock, CurrentPrincipal, DbSession
from brokerlink.api.etags import ETAG_HEADER, IfMatch, check_if_match, content_tag, lock_if_matched, with_etag
from brokerlink.api.paging import After, Limit, id_cursor
from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.api.scopes import require_roles
from brokerlink.domain.enums import Role
from brokerlink.kit.errors import Conflict, NotFound
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.users import UserRepository

UserId = Annotated[str, Parameter(description="User id (usr_...)", max_length=40)]
ADMINS_ONLY = [require_roles(Role.ADMIN)]


class OwnAdminRole(Conflict):
    """An admin tried to take away their own admin role (another admin can)."""

    code = "own_admin_role"
    title = "Cannot remove your own admin role"


class UserResponse(ResponseBody, kw_only=True):
    """A user as an admin sees them (never the password hash)."""

    id: str
    email: str
    display_name: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserList(ResponseBody, kw_only=True):
    """One page of users, oldest first."""

    data: list[UserResponse]
    next_after: str | None


class UserUpdate(RequestBody, kw_only=True):
    """The change to make: the user's role."""

    role: Role


async def _user(db: DbSession, user_id: str) -> UserRow:
    user = await UserRepository(db).get(user_id)
    if user is None:
        raise NotFound("user not found")
    return user


@get("/", summary="List users", guards=ADMINS_ONLY)
async def list_users(db: DbSession, limit: Limit = 100, after: After = None) -> UserList:
    """Every user, oldest first. Admins only."""
    page = await UserRepository(db).list_page(limit=limit, after=id_cursor(after, "usr"))
    return UserList(data=[UserResponse.of(u) for u in page.items], next_after=page.next_after)


def _tagged(user: UserRow) -> Response[UserResponse]:
    body = UserResponse.of(user)
    return with_etag(body, content_tag(body))


@get("/{user_id:str}", summary="Get a user", response_headers=ETAG_HEADER, guards=ADMINS_ONLY)
async def get_user(user_id: UserId, db: DbSession) -> Response[UserResponse]:
    """One user, with its ETag. Admins only."""
    return _tagged(await _user(db, user_id))


@patch("/{user_id:str}", summary="Change a user's role", response_headers=ETAG_HEADER, guards=ADMINS_ONLY)
async def update_user(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    user_id: UserId,
    data: JSONBody[UserUpdate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    if_match: IfMatch = None,
) -> Response[UserResponse]:
    """Grant a role (``user``, ``provider``, ``admin``, ``auditor``). 409 ``own_admin_role`` for an
    admin's own admin role; with ``If-Match``, 412 when the user changed since that ETag."""
    await lock_if_matched(db, if_match, UserRow, user_id)
    user = await _user(db, user_id)
    check_if_match(if_match, content_tag(UserResponse.of(user)), what="user")
    if user.role == data.role.value:
        unchanged(request)
        return _tagged(user)
    if user.id == principal.user_id and user.role == Role.ADMIN.value:
        raise OwnAdminRole("you cannot take away your own admin role; another admin can", extra={"field": "role"})
    before = user.role
    await UserRepository(db).set_role(user.id, data.role, now=clock.now())
    await audited(
        request, db, action="user.role", target=user.id, now=clock.now(),
        details={"from": before, "to": data.role.value},
    )  # fmt: skip
    return _tagged(user)


admin_users_router = Router(path="/admin/users", route_handlers=[list_users, get_user, update_user], tags=["admin"])
