"""The baseline of bench/rest.py: a bare Starlette "hello" (one JSON route, no middleware), served by granian."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request: Request) -> JSONResponse:  # noqa: ARG001 - Starlette's handler signature
    return JSONResponse({"hello": "world"})


app = Starlette(routes=[Route("/", hello)])
