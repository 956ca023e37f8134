"""Schema base for request and response bodies: msgspec structs that refuse unknown fields."""

from __future__ import annotations

from typing import Self

import msgspec


class RequestBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body. A field not in the schema is a 422, never silently ignored
    (so ``owner_id``, ``role`` or ``balance`` smuggled into a write cannot take effect)."""


class ResponseBody(msgspec.Struct, kw_only=True):
    """Base of every response body: only the fields declared are ever serialized."""

    @classmethod
    def of(cls, source: object) -> Self:
        """Build from any object with attributes of the same names (a row, a domain struct).

        Only the declared fields are read, and their types are checked, so a row's other columns
        (a password hash, a credentials reference) cannot leak into a response by accident.
        """
        return msgspec.convert(source, cls, from_attributes=True)
