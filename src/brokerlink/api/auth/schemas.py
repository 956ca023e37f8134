"""Bodies of the auth routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.domain.enums import Role

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, examples=["alice@example.com"])]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024, examples=["correct horse battery staple"])]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, examples=["Alice"])]


class RegisterRequest(RequestBody, kw_only=True):
    """Create an account and sign in."""

    email: Email
    password: Password
    display_name: DisplayName


class LoginRequest(RequestBody, kw_only=True):
    """Sign in with email and password."""

    email: Email
    password: Password


class UserResponse(ResponseBody, kw_only=True):
    """A user as the user sees themself."""

    id: str
    email: str
    display_name: str
    role: Role
    created_at: datetime


class SessionResponse(ResponseBody, kw_only=True):
    """The signed-in user and when the session ends at the latest."""

    user: UserResponse
    expires_at: datetime


class CsrfResponse(ResponseBody, kw_only=True):
    """The token to send back in the ``X-CSRF-Token`` header on state-changing requests."""

    csrf_token: str
