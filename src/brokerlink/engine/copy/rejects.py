"""A rejected order does not loop: repeated refusals in one symbol pause that symbol for the subscription.

Without this, a follower whose broker refuses a symbol (not enabled for the account, a margin rule,
a market closed at that broker) would send, and have refused, a copy of every trade the provider
makes in it. Each refused copy order is counted per subscription and *follower* symbol (the symbol
the follower's broker refused) in the transaction that records the refusal; a fill in the symbol
ends the run. At the subscription's ``pause_symbol_after_rejects`` consecutive refusals the symbol
is paused: the planner skips opens and increases in it with ``symbol_paused`` (closes and
reductions still go out: a follower can always get out), and a ``guard_tripped`` copy event with
reason ``symbol_paused`` tells the follower, naming the symbol and the last refusal. That event is
the alert for now. The follower lifts the pause through the API
(``DELETE /v1/subscriptions/{id}/paused-symbols/{symbol}``), which counts from zero again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import CopyEvent, CopyEventKind, CopyIntent
from brokerlink.engine.copy.reasons import SkipReason
from brokerlink.engine.copy.settings import decode_settings, symbol_key
from brokerlink.kit.errors import InvalidInput, NotFound
from brokerlink.kit.ids import new_id
from brokerlink.logs import get_logger
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_symbol_pauses import CopySymbolPauseRepository, SymbolRejects
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

_log = get_logger("brokerlink.engine.copy")

SYMBOL_RESUMED = "symbol_resumed"
"""The reason on the ``resumed`` event of a symbol the follower resumed."""


async def record_reject(session: AsyncSession, intent: CopyIntent, reason: str, *, now: datetime) -> bool:
    """Count a refused copy order of ``intent``'s subscription in its symbol; pause the symbol at the threshold.

    Runs in the caller's transaction (the one that marks the intent rejected). Returns whether this
    refusal paused the symbol. A subscription with ``pause_symbol_after_rejects: 0`` counts nothing.
    """
    subscription = await SubscriptionRepository(session).get_by_id(intent.subscription_id)
    if subscription is None:
        return False
    try:
        threshold = decode_settings(subscription.settings).pause_symbol_after_rejects
    except InvalidInput:
        return False  # settings stored before a rule tightened: never block recording the refusal
    if threshold == 0:
        return False
    pauses = CopySymbolPauseRepository(session)
    run = await pauses.count_reject(intent.subscription_id, intent.symbol, reason=reason, now=now)
    if run.rejects < threshold or not await pauses.pause(intent.subscription_id, intent.symbol, now=now):
        return False
    await CopyEventRepository(session).add(
        CopyEvent(
            id=new_id("cpe"),
            subscription_id=intent.subscription_id,
            kind=CopyEventKind.GUARD_TRIPPED,
            reason=SkipReason.SYMBOL_PAUSED.value,
            detail=(
                f"{intent.symbol} paused after {run.rejects} rejected copy orders in a row (last: {reason}); "
                "no new copies in it until you resume it"
            ),
            intent_id=intent.id,
            created_at=now,
        )
    )
    _log.warning(
        "copy_symbol_paused",
        subscription_id=intent.subscription_id,
        symbol=intent.symbol,
        rejects=run.rejects,
        reason=reason,
    )
    return True


async def record_fill(session: AsyncSession, intent: CopyIntent) -> None:
    """A copy order of ``intent`` filled: its symbol's run of refusals (if not paused yet) is over."""
    await CopySymbolPauseRepository(session).end_run(intent.subscription_id, intent.symbol)


async def paused_symbols(session: AsyncSession, subscription_ids: Iterable[str]) -> dict[str, frozenset[str]]:
    """Each subscription's paused follower symbols (absent: none), for ``Follower.paused_symbols``."""
    return await CopySymbolPauseRepository(session).paused_symbols(subscription_ids)


async def list_paused(session: AsyncSession, subscription_id: str) -> list[SymbolRejects]:
    """The subscription's paused symbols, with the count and the last refusal that paused each."""
    return await CopySymbolPauseRepository(session).list_paused(subscription_id)


async def resume_symbol(session: AsyncSession, subscription_id: str, symbol: str, *, now: datetime) -> SymbolRejects:
    """Lift the pause on ``symbol`` (given as stored, or in any spelling :func:`symbol_key` equates).

    Writes a ``resumed`` copy event (reason ``symbol_resumed``). 404 when the symbol is not paused.
    The caller has checked that the subscription is the caller's; the caller commits.
    """
    pauses = CopySymbolPauseRepository(session)
    wanted = symbol_key(symbol)
    found = next((p for p in await pauses.list_paused(subscription_id) if symbol_key(p.symbol) == wanted), None)
    if found is None or not await pauses.resume(subscription_id, found.symbol):
        raise NotFound(f"{symbol} is not paused for this subscription")
    await CopyEventRepository(session).add(
        CopyEvent(
            id=new_id("cpe"),
            subscription_id=subscription_id,
            kind=CopyEventKind.RESUMED,
            reason=SYMBOL_RESUMED,
            detail=f"{found.symbol} resumed: copies open in it again",
            created_at=now,
        )
    )
    _log.info("copy_symbol_resumed", subscription_id=subscription_id, symbol=found.symbol)
    return found
