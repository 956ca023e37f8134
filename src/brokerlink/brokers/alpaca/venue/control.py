"""Fault injection for the Alpaca test venue: ``/_control/faults`` in the sim venue's shape.

The faults are the venue core's (:class:`brokerlink.brokers.sim.venue.faults.Faults`); this API
accepts the ones that make sense for Alpaca: no ``depth_gap`` (Alpaca has no depth stream with
update ids) and no ``clock_skew_ms`` (Alpaca requests are not signed). ``rate_limit_next`` answers
in Alpaca's own form (429, ``{"code": 42910000}``, ``X-Ratelimit-Remaining: 0`` and a reset one
second ahead); ``drop_connections`` closes every trading and market data stream with 1012.
Mounted only in ``test`` and ``demo`` mode, and the venue listens on loopback only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post

from brokerlink.brokers.alpaca.venue.orders import AlpacaError
from brokerlink.brokers.alpaca.wire import ErrorCode
from brokerlink.brokers.sim.venue.faults import DROP_CLOSE_CODE, Count, FaultPatch, Probability, StepRequest

if TYPE_CHECKING:
    from brokerlink.brokers.alpaca.venue.state import AlpacaVenue


class AlpacaFaultPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /_control/faults``: fields given replace the current value; ``drop_connections`` acts now."""

    latency_ms: Count | None = None
    fail_after_accept: Count | None = None
    duplicate_events: Probability | None = None
    reorder_events: Probability | None = None
    reject_next: Count | None = None
    rate_limit_next: Count | None = None
    drop_connections: bool = False


INJECTABLE_FAULTS = tuple(AlpacaFaultPatch.__struct_fields__)
"""Every fault setting the control API accepts."""


def _venue(request: Request[Any, Any, Any]) -> AlpacaVenue:
    venue: AlpacaVenue = request.app.state.venue
    return venue


def _json(body: object) -> Response[bytes]:
    return Response(msgspec.json.encode(body), media_type="application/json")


def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body or b"{}", type=kind)
    except msgspec.DecodeError as exc:
        raise AlpacaError(400, ErrorCode.INVALID_REQUEST, f"invalid control request: {exc}") from None


@get("/faults")
async def get_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The faults in force."""
    return _json(_venue(request).faults.settings)


@post("/faults", status_code=200)
async def set_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Set faults; ``drop_connections`` closes every stream now."""
    venue = _venue(request)
    patch: AlpacaFaultPatch = _decode(await request.body(), AlpacaFaultPatch)
    fields = {name: getattr(patch, name) for name in INJECTABLE_FAULTS if name != "drop_connections"}
    settings = venue.faults.apply(FaultPatch(**fields))
    if patch.drop_connections:
        venue.close_connections(DROP_CLOSE_CODE, "connection dropped (injected fault)")
    return _json(settings)


@delete("/faults", status_code=200)
async def reset_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Clear every fault."""
    return _json(_venue(request).faults.reset())


@post("/step", status_code=200)
async def step_market(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Advance market data by hand (a venue started without its background loop)."""
    venue = _venue(request)
    step: StepRequest = _decode(await request.body(), StepRequest)
    dt = None if step.dt_ms is None else timedelta(milliseconds=step.dt_ms)
    for _ in range(step.steps):
        venue.step(dt)
    return _json({"steps": step.steps})


def control_router() -> Router:
    """The ``/_control`` routes (test and demo mode only)."""
    return Router(path="/_control", route_handlers=[get_faults, set_faults, reset_faults, step_market])
