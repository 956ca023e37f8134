"""HTTP details of the copy routes: a subscription's ETag and ``If-Match``, and request bodies checked
with their nested fields named.

**ETag.** A subscription's ``version`` grows with every change of its settings or status, so the
quoted version (``"3"``) is a strong validator of both of its representations (the subscription
and its settings alone); the comparison is :mod:`brokerlink.api.etags`'s, as for every object.

**Bodies.** Litestar turns a body error at a path equal to the name of a dependency into a 500
(it takes the error for a broken dependency): ``settings`` is both the app's settings dependency
and a subscription's settings field, so an unknown field inside ``settings`` would be a server
error. :func:`checked_body` validates such bodies before Litestar does, and names the nested field
(``settings.fixed_qty``) in the same ``errors`` list Litestar's own 422s carry.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, Response

from brokerlink.api.etags import PreconditionFailed, PreconditionRequired, check_if_match, version_tag
from brokerlink.api.etags import with_etag as tagged
from brokerlink.api.guards import BeforeRequest, require_json_body
from brokerlink.domain.copy import Subscription
from brokerlink.kit.errors import InvalidInput

__all__ = ["PreconditionFailed", "PreconditionRequired", "checked_body", "etag", "expected_version", "with_etag"]


def etag(subscription: Subscription) -> str:
    """The subscription's ETag: its version, quoted."""
    return version_tag(subscription.version)


def expected_version(if_match: str | None, current: Subscription, *, required: bool) -> int | None:
    """The version a change must start from, per ``If-Match``; None when any version will do.

    Raises :class:`PreconditionRequired` without the header when ``required``, and
    :class:`PreconditionFailed` when it names no current version.
    """
    given = check_if_match(if_match, etag(current), required=required, what="subscription")
    if not given or (if_match is not None and if_match.strip() == "*"):
        return None
    return current.version


def with_etag(subscription: Subscription, content: Any, status_code: int = 200) -> Response[Any]:
    """A response carrying the subscription's ETag (and, for a 201, its ``Location``)."""
    location = f"/v1/subscriptions/{subscription.id}" if status_code == 201 else None
    return tagged(content, etag(subscription), status_code, location=location)


_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(r"(?:unknown|missing required) field `([^`]*)`")


def _invalid(field: str, message: str) -> InvalidInput:
    """A 422 shaped like Litestar's (``errors``), plus ``field`` like the engine's own checks."""
    errors = [{"field": field, "source": "body", "message": message}]
    return InvalidInput(f"{field}: {message}", extra={"field": field, "errors": errors})


def checked_body(schema: type[Any], *, nested_in: str = "") -> BeforeRequest:
    """A before-request hook: the JSON media type check of every write, then ``schema`` over the body.

    A checked value that refuses itself (``CopySettings`` raising :class:`InvalidInput` naming
    ``fixed_qty``) is reported under ``nested_in`` (``settings.fixed_qty``). A body that is not JSON
    at all, or missing, is left to Litestar, which answers as on every other route.
    """
    prefix = f"{nested_in}." if nested_in else ""

    async def check(request: Request[Any, Any, Any]) -> None:
        await require_json_body(request)
        if request.method not in {"POST", "PUT", "PATCH"}:
            return
        body = await request.body()
        if not body.strip():
            return
        try:
            msgspec.json.decode(body)  # the syntax first: typed decoding stops at the first wrong field
        except msgspec.DecodeError:
            return  # malformed JSON: Litestar's 400, as everywhere
        try:
            msgspec.json.decode(body, type=schema)
        except msgspec.ValidationError as exc:
            raise _from_validation_error(str(exc)) from None
        except InvalidInput as exc:
            field = exc.extra.get("field")
            if not isinstance(field, str):
                raise
            raise _invalid(prefix + field, exc.detail.removeprefix(f"{field}: ")) from None

    return check


def _from_validation_error(text: str) -> InvalidInput:
    """``Object contains unknown field `x` - at `$.settings``` -> field ``settings.x``."""
    parts = _AT_PATH.match(text)
    message, path = (parts["message"], parts["path"] or "") if parts else (text, "")
    named = _NAMED.search(message)
    if named is not None:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return _invalid(path or "body", message)
