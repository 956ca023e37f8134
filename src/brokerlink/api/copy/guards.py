"""``/v1/subscriptions/{id}/paused-symbols``: the follower symbols repeated refusals paused, and resuming them.

A symbol whose copy orders the follower's broker kept refusing is paused for the subscription
(:mod:`brokerlink.engine.copy.rejects`): no copies open in it, closes still go out. The follower
sees the pauses here and lifts one with ``DELETE``, which copies into the symbol again from the
provider's next trade. The symbol in the path is the follower broker's symbol, in any spelling that
compares equal (``EURUSD.m``, ``eurusd.m``; ``EUR/USD`` as ``EURUSD``, since a path cannot carry a
slash). Another user's subscription answers 404 exactly like a missing one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, delete, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.audit import audited
from brokerlink.api.deps import AppClock, CurrentPrincipal, DbSession
from brokerlink.api.paging import After, Limit, checked_symbol, key_cursor, page_of
from brokerlink.api.paging import Symbol as SymbolFilter
from brokerlink.api.schemas import ResponseBody
from brokerlink.api.scopes import needs
from brokerlink.domain.copy import Subscription
from brokerlink.engine.copy import rejects
from brokerlink.kit.errors import NotFound
from brokerlink.security.principal import Principal
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

SubscriptionId = Annotated[str, Parameter(description="Subscription id (sub_...)", max_length=40)]
Symbol = Annotated[
    str,
    Parameter(description="The follower broker's symbol, e.g. EURUSD (compared without punctuation)", max_length=64),
]


class PausedSymbolResponse(ResponseBody, kw_only=True):
    """A follower symbol paused after ``rejects`` refused copy orders in a row; ``reason`` is the last refusal."""

    symbol: str
    rejects: int
    reason: str
    paused_at: datetime | None


class PausedSymbolList(ResponseBody, kw_only=True):
    """A page of the subscription's paused symbols, by symbol."""

    data: list[PausedSymbolResponse]
    next_after: str | None


async def _subscription(db: AsyncSession, principal: Principal, subscription_id: str) -> Subscription:
    subscription = await SubscriptionRepository(db).get_for_user(principal.user_id, subscription_id)
    if subscription is None or not principal.can_reach_account(subscription.account_id):
        raise NotFound("subscription not found")
    return subscription


@get("/{subscription_id:str}/paused-symbols", summary="A subscription's paused symbols", opt=needs("copy:read"))
async def list_paused_symbols(  # noqa: PLR0917 - injected parameters
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Limit = 50,
    after: After = None,
    symbol: SymbolFilter = None,
) -> PausedSymbolList:
    """The follower symbols in which no copies open, because the broker refused the last ones in a row."""
    cursor, wanted = key_cursor(after), checked_symbol(symbol)
    await _subscription(db, principal, subscription_id)
    paused = [p for p in await rejects.list_paused(db, subscription_id) if wanted in (None, p.symbol)]
    page, next_after = page_of(paused, lambda p: p.symbol, limit=limit, after=cursor)
    return PausedSymbolList(data=[PausedSymbolResponse.of(p) for p in page], next_after=next_after)


@delete(
    "/{subscription_id:str}/paused-symbols/{symbol:str}",
    summary="Resume a paused symbol",
    status_code=204,
    opt=needs("copy:manage"),
)
async def resume_paused_symbol(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    subscription_id: SubscriptionId,
    symbol: Symbol,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
) -> None:
    """Copy into the symbol again from the provider's next trade (a ``resumed`` copy event records it;
    the count of refusals starts over). 404 when the symbol is not paused."""
    await _subscription(db, principal, subscription_id)
    await rejects.resume_symbol(db, subscription_id, symbol, now=clock.now())
    await audited(
        request, db, action="subscription.symbol_resume", target=subscription_id, now=clock.now(),
        details={"symbol": symbol},
    )  # fmt: skip


GUARD_HANDLERS = [list_paused_symbols, resume_paused_symbol]
"""Registered on the subscriptions router (:mod:`brokerlink.api.copy.routes`)."""
