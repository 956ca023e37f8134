"""Fault injection: what real venues do to clients, on demand, and the ``/_control`` API that sets it.

The control API is mounted only when the venue runs in ``test`` or ``demo`` mode
(:attr:`VenueConfig.control_enabled`). Randomized faults (duplicated and reordered
``trade_updates``) draw from a RNG seeded with the venue's seed, so a run is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
from litestar import Request, Response, Router, delete, get, post

from brokerlink.brokers.sim.gate import WireError
from brokerlink.brokers.sim.wire import ErrorCode

if TYPE_CHECKING:
    from brokerlink.brokers.sim.venue.state import Venue

T = TypeVar("T")
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Count = Annotated[int, msgspec.Meta(ge=0)]

DROP_CLOSE_CODE = 1012
"""WebSocket close code for ``drop_connections`` ("service restart": the client should reconnect)."""


class FaultSettings(msgspec.Struct, kw_only=True):
    """The faults in force (``GET /_control/faults``)."""

    latency_ms: Count = 0
    """Added before every REST response."""
    fail_after_accept: Count = 0
    """The next N order requests (new, amend, cancel) are executed, then answered 500."""
    duplicate_events: Probability = 0.0
    """Probability that a ``trade_updates`` message is sent twice."""
    reorder_events: Probability = 0.0
    """Probability that a ``trade_updates`` message is held back and sent after the next one."""
    depth_gap: Count = 0
    """The next N depth diffs are skipped (their update ids never reach subscribers)."""
    reject_next: Count = 0
    """The next N new orders are refused as ``invalid_order``."""
    clock_skew_ms: int = 0
    """Added to the venue's clock for signature receive-window checks."""
    rate_limit_next: Count = 0
    """The next N REST requests are answered 429 with ``Retry-After: 1`` before anything else happens."""


class FaultPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /_control/faults``: fields given replace the current value; ``drop_connections`` acts now."""

    latency_ms: Count | None = None
    fail_after_accept: Count | None = None
    duplicate_events: Probability | None = None
    reorder_events: Probability | None = None
    depth_gap: Count | None = None
    reject_next: Count | None = None
    clock_skew_ms: int | None = None
    rate_limit_next: Count | None = None
    drop_connections: bool = False


class Faults:
    """The venue's fault state; the venue asks it at each point where a fault can strike."""

    def __init__(self, *, seed: int, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.settings = FaultSettings()
        self._seed = seed
        self._rng = random.Random(f"faults:{seed}")  # noqa: S311 - a simulation, not secrets
        self._sleep = sleep
        self._held: Any = None

    def apply(self, patch: FaultPatch) -> FaultSettings:
        """Merge a patch into the settings (``drop_connections`` is the caller's to act on)."""
        changes = {
            name: getattr(patch, name) for name in FaultSettings.__struct_fields__ if getattr(patch, name) is not None
        }
        self.settings = msgspec.structs.replace(self.settings, **changes)
        return self.settings

    def reset(self) -> FaultSettings:
        """No faults; the RNG restarts from the seed, so a test sequence replays identically."""
        self.settings = FaultSettings()
        self._rng = random.Random(f"faults:{self._seed}")  # noqa: S311
        return self.settings

    def skew_ms(self) -> int:
        """Clock skew for the gate's receive-window check."""
        return self.settings.clock_skew_ms

    async def delay(self) -> None:
        """Sleep for the injected latency, if any."""
        if self.settings.latency_ms:
            await self._sleep(self.settings.latency_ms / 1000)

    def _take(self, name: str) -> bool:
        left: int = getattr(self.settings, name)
        if not left:
            return False
        self.settings = msgspec.structs.replace(self.settings, **{name: left - 1})
        return True

    def take_reject(self) -> bool:
        """Whether to refuse this new order (counts one ``reject_next`` down)."""
        return self._take("reject_next")

    def take_fail_after_accept(self) -> bool:
        """Whether to answer this executed order request with a 500 (counts one down)."""
        return self._take("fail_after_accept")

    def take_rate_limit(self) -> bool:
        """Whether to answer this REST request 429 (counts one ``rate_limit_next`` down)."""
        return self._take("rate_limit_next")

    def take_depth_gap(self) -> bool:
        """Whether to swallow this depth diff (counts one down)."""
        return self._take("depth_gap")

    def shape(self, item: T) -> list[T]:
        """What to send for one ``trade_updates`` message: held back, duplicated, or with a held one after it."""
        settings = self.settings
        if self._held is None and settings.reorder_events and self._rng.random() < settings.reorder_events:
            self._held = item
            return []
        out = [item]
        if settings.duplicate_events and self._rng.random() < settings.duplicate_events:
            out.append(item)
        if self._held is not None:
            out.append(self._held)
            self._held = None
        return out

    def flush(self) -> list[Any]:
        """A message still held back (sent at the next market data step at the latest)."""
        held, self._held = self._held, None
        return [] if held is None else [held]


# --- the control API ----------------------------------------------------------------------------


class StepRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /_control/step``: advance market data ``steps`` ticks of ``dt_ms`` (default: the tick interval)."""

    steps: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    dt_ms: Annotated[int, msgspec.Meta(ge=1)] | None = None


def _venue(request: Request[Any, Any, Any]) -> Venue:
    venue: Venue = request.app.state.venue
    return venue


def _json(body: object, status: int = 200) -> Response[bytes]:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body or b"{}", type=kind)
    except msgspec.DecodeError as exc:
        raise WireError(400, ErrorCode.INVALID_ORDER, f"invalid control request: {exc}") from None


@get("/faults")
async def get_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The faults in force."""
    return _json(_venue(request).faults.settings)


@post("/faults", status_code=200)
async def set_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Set faults; ``drop_connections`` closes every WebSocket now."""
    venue = _venue(request)
    patch = _decode(await request.body(), FaultPatch)
    settings = venue.faults.apply(patch)
    if patch.drop_connections:
        venue.hub.close_all(DROP_CLOSE_CODE, "connection dropped (injected fault)")
    return _json(settings)


@delete("/faults", status_code=200)
async def reset_faults(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Clear every fault."""
    return _json(_venue(request).faults.reset())


@post("/step", status_code=200)
async def step_market(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Advance market data by hand (a venue started without its background loop)."""
    venue = _venue(request)
    step = _decode(await request.body(), StepRequest)
    dt = None if step.dt_ms is None else timedelta(milliseconds=step.dt_ms)
    for _ in range(step.steps):
        venue.step(dt)
    return _json({"steps": step.steps})


class RevokeKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /_control/keys/revoke``: the account holder revoked this API key at the broker."""

    api_key: str


@post("/keys/revoke", status_code=200)
async def revoke_key(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Forget an API key, as a broker does when its holder revokes it: every request with it is refused
    401 from now on, and open WebSockets are dropped (they reconnect, and are refused)."""
    venue = _venue(request)
    revoke = _decode(await request.body(), RevokeKey)
    found = venue.gate.keys.pop(revoke.api_key, None) is not None
    if found:
        venue.hub.close_all(DROP_CLOSE_CODE, "connection dropped (API key revoked)")
    return _json({"revoked": found})


@post("/session/end", status_code=200)
async def end_session(request: Request[Any, Any, Any]) -> Response[bytes]:
    """End the trading session now: every DAY order expires."""
    return _json({"expired": _venue(request).end_session()})


def control_router() -> Router:
    """The ``/_control`` routes (mount only in test and demo mode)."""
    return Router(
        path="/_control", route_handlers=[get_faults, set_faults, reset_faults, step_market, end_session, revoke_key]
    )
