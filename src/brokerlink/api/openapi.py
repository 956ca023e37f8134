"""``/openapi.json``: the machine-readable description of every route, at the conventional path."""

from __future__ import annotations

from typing import Any

from litestar import Request, get


@get("/openapi.json", include_in_schema=False, summary="OpenAPI document")
async def openapi_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document Litestar generates from the route handlers and their msgspec schemas."""
    return request.app.openapi_schema.to_schema()
