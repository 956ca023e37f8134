"""ETags and ``If-Match`` for every object whose settings can be changed (RFC 9110 section 13, ADR 0033).

A ``GET`` of such an object, and every change of it, answers with an ``ETag``; a change sent with
``If-Match`` runs only if the object is still at that tag: 412 ``precondition_failed`` otherwise
(with the current tag in the problem's ``etag``), so two editors cannot undo each other's changes
unseen. A route that must never overwrite blindly (replacing a subscription's settings as a whole)
requires the header: 428 ``precondition_required`` without it. Elsewhere it is optional.

Two kinds of tag, both strong (``If-Match`` compares strongly: a weak tag never matches, ``*``
matches any):

* :func:`version_tag`: an object with a stored version (a subscription) is tagged with it, ``"3"``;
* :func:`content_tag`: any other object is tagged with a digest of its representation, so the tag
  changes exactly when something a client can see changes (its ``updated_at`` included).

The check runs in the request's transaction, right before the write it guards, on the object's row
locked first (:func:`lock_if_matched`), so two changes sent with the same tag cannot both pass.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Annotated, Any

import msgspec
from litestar import Response
from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.errors import BrokerlinkError
from brokerlink.store.repositories.locks import RowLocks

__all__ = [
    "ETAG_HEADER",
    "IfMatch",
    "PreconditionFailed",
    "PreconditionRequired",
    "check_if_match",
    "content_tag",
    "lock_if_matched",
    "version_tag",
    "with_etag",
]


class PreconditionFailed(BrokerlinkError):
    """``If-Match`` names a version the object is no longer at: read it again, then retry."""

    status = 412
    code = "precondition_failed"
    title = "Precondition failed"


class PreconditionRequired(BrokerlinkError):
    """The change needs ``If-Match`` (the ETag last read), so that it cannot undo a change not seen."""

    status = 428
    code = "precondition_required"
    title = "Precondition required"


IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="if-match",
        description='The ETag last read, e.g. "3": the change runs only if the object is still at it (412 '
        "otherwise); * matches any version",
        max_length=200,
    ),
]
ETAG_HEADER = [
    ResponseHeader(
        name="ETag", description="The object's current version: send it back in If-Match", documentation_only=True
    )
]
_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')
_ENCODER = msgspec.json.Encoder(decimal_format="string", order="sorted")


def version_tag(version: int) -> str:
    """The tag of an object with a stored version: the version, quoted."""
    return f'"{version}"'


def content_tag(representation: Any) -> str:
    """The tag of an object without a stored version: a digest of its JSON representation, quoted."""
    digest = hashlib.sha256(_ENCODER.encode(representation)).digest()
    return '"' + base64.urlsafe_b64encode(digest[:18]).decode() + '"'


def matches(if_match: str, current: str) -> bool:
    """Whether an ``If-Match`` value (``*`` or a list of tags) strongly matches the tag ``current``."""
    if if_match.strip() == "*":
        return True
    strong = {f'"{value}"' for weak, value in _ENTITY_TAG.findall(if_match) if not weak}
    return current in strong


def check_if_match(if_match: str | None, current: str, *, required: bool = False, what: str = "object") -> bool:
    """Refuse a change that does not start from ``current``; True when ``If-Match`` was given.

    Raises :class:`PreconditionRequired` without the header when ``required``, and
    :class:`PreconditionFailed` when it names another version.
    """
    if if_match is None or not if_match.strip():
        if required:
            raise PreconditionRequired(f"send If-Match with the ETag last read (now {current})")
        return False
    if not matches(if_match, current):
        raise PreconditionFailed(
            f"the {what} changed: it is at {current}, not {if_match.strip()}; read it again",
            extra={"etag": current},
        )
    return True


def with_etag(content: Any, tag: str, status_code: int = 200, *, location: str | None = None) -> Response[Any]:
    """A response carrying ``tag`` (and, when given, a ``Location``)."""
    headers = {"ETag": tag}
    if location is not None:
        headers["Location"] = location
    return Response(content, status_code=status_code, headers=headers)


async def lock_if_matched(db: AsyncSession, if_match: str | None, model: Any, row_id: str) -> None:
    """Before a change guarded by ``If-Match``: lock the object's row, so that the tag compared is the
    tag of what the change replaces (:class:`~brokerlink.store.repositories.locks.RowLocks`).
    Call it before the object is first read in the request."""
    if if_match is not None and if_match.strip():
        await RowLocks(db).lock(model, row_id)
