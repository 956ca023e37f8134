"""``/v1/strategies`` and ``/v1/subscriptions``: publishing strategies, following them, and watching the copies.

Another user's subscription, and another user's private strategy, answer 404 exactly like missing
ones; a principal narrowed to some accounts (a third-party grant) reaches only the subscriptions
and strategies of those accounts. Public and unlisted strategies are readable by every signed-in
user, without their backing account.

A subscription's ``version`` is its ETag (:mod:`brokerlink.api.copy.http`). Replacing the settings
needs ``If-Match`` with it: 428 without one, 412 when the subscription changed since. The status
commands accept ``If-Match`` too, and do not need it. Stopping is final and idempotent. A strategy
carries an ETag too (a digest of what you see, :mod:`brokerlink.api.etags`); changing it takes an
optional ``If-Match``. Creating a strategy or a subscription takes an ``Idempotency-Key``.
Every list is newest first and paged by cursor (``limit``, ``after`` = the previous ``next_after``),
and filtered by time and symbol where its items have them (:mod:`brokerlink.api.paging`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any, Protocol, TypeVar

import msgspec
from litestar import Request, Response, Router, get, patch, post, put
from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter, JSONBody, Parameter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.audit import audited, unchanged
from brokerlink.api.copy.guards import GUARD_HANDLERS
from brokerlink.api.copy.http import (
    PreconditionFailed,
    checked_body,
    expected_version,
    with_etag,
)
from brokerlink.api.copy.schemas import (
    CopyEventList,
    CopyEventResponse,
    CopyIntentList,
    CopyIntentResponse,
    CopyLinkList,
    CopyLinkResponse,
    StopRequest,
    StrategyCreate,
    StrategyList,
    StrategyResponse,
    StrategyUpdate,
    SubscriptionCreate,
    SubscriptionList,
    SubscriptionResponse,
)
from brokerlink.api.deps import AppClock, Copy, CurrentPrincipal, DbSession
from brokerlink.api.etags import ETAG_HEADER as OBJECT_ETAG_HEADER
from brokerlink.api.etags import check_if_match, content_tag, lock_if_matched
from brokerlink.api.etags import with_etag as tagged
from brokerlink.api.idempotency import IdempotencyKey, idempotent
from brokerlink.api.paging import After, Limit, Since, Symbol, Until, checked_symbol, id_cursor, time_range
from brokerlink.api.scopes import first_party, needs, require_roles
from brokerlink.domain.copy import (
    CopyEventKind,
    CopyIntent,
    Strategy,
    StrategyStatus,
    StrategyVisibility,
    Subscription,
    SubscriptionStatus,
)
from brokerlink.domain.enums import Role
from brokerlink.engine.copy import manage
from brokerlink.engine.copy.settings import CopySettings, decode_settings
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import Conflict, InvalidInput, NotFound
from brokerlink.security.principal import Principal
from brokerlink.store.models import StrategyRow
from brokerlink.store.repositories._common import Page
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import StaleVersion, SubscriptionRepository

StrategyId = Annotated[str, Parameter(description="Strategy id (stg_...)", max_length=40)]
SubscriptionId = Annotated[str, Parameter(description="Subscription id (sub_...)", max_length=40)]
KindFilter = Annotated[CopyEventKind | None, Parameter(description="Only events of this kind (e.g. skipped)")]
IfMatch = Annotated[
    str | None,
    HeaderParameter(name="if-match", description='The ETag last read, e.g. "3" (or * for any version)', max_length=200),
]
ETAG_HEADER = [
    ResponseHeader(name="ETag", description='The subscription\'s version, e.g. "3"', documentation_only=True)
]


# --- strategies ------------------------------------------------------------------------------------


def _mine(principal: Principal, strategy: Strategy) -> bool:
    return strategy.provider_user_id == principal.user_id and principal.can_reach_account(strategy.account_id)


def _min_equity(value: Decimal | None) -> Decimal | None:
    if value is not None and (not value.is_finite() or value < 0):
        raise InvalidInput("min_follower_equity must be zero or more", extra={"field": "min_follower_equity"})
    return value


def _text(value: str, field: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise InvalidInput(f"{field} must not be blank", extra={"field": field})
    return stripped


async def _own_strategy(db: AsyncSession, principal: Principal, strategy_id: str) -> Strategy:
    strategy = await StrategyRepository(db).get_for_user(principal.user_id, strategy_id)
    if strategy is None or not principal.can_reach_account(strategy.account_id):
        raise NotFound("strategy not found")
    return strategy


@idempotent
@post(
    "/",
    summary="Publish a strategy",
    status_code=201,
    response_headers=OBJECT_ETAG_HEADER,
    opt=first_party(),
    guards=[require_roles(Role.PROVIDER, Role.ADMIN)],
)
async def create_strategy(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    data: JSONBody[StrategyCreate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> Response[StrategyResponse]:
    """Publish a strategy backed by one of your accounts (404 for an account that is not yours, 409
    for a name you already use). Its account's fills from now on are the signals; the positions it
    holds now are its starting point and are not copied as new trades."""
    principal.require_account(data.account_id)
    strategy = await manage.create_strategy(
        db,
        provider_user_id=principal.user_id,
        account_id=data.account_id,
        name=_text(data.name, "name"),
        description=data.description.strip(),
        visibility=data.visibility,
        min_follower_equity=_min_equity(data.min_follower_equity),
        now=clock.now(),
    )
    await audited(
        request, db, action="strategy.create", target=strategy.id, now=clock.now(),
        details={"account_id": strategy.account_id, "visibility": strategy.visibility.value},
    )  # fmt: skip
    body = StrategyResponse.render(strategy, mine=True)
    return tagged(body, content_tag(body), 201, location=f"/v1/strategies/{strategy.id}")


@get("/", summary="List my strategies", opt=needs("copy:read"))
async def list_strategies(
    principal: CurrentPrincipal, db: DbSession, limit: Limit = 50, after: After = None
) -> StrategyList:
    """The strategies you provide, newest first."""
    cursor = id_cursor(after, "stg")
    mine = [s for s in await StrategyRepository(db).list_for_user(principal.user_id) if _mine(principal, s)]
    newest = sorted(mine, key=lambda s: s.id, reverse=True)
    if cursor is not None:
        newest = [s for s in newest if s.id < cursor]
    page = newest[:limit]
    next_after = page[-1].id if len(newest) > limit else None
    return StrategyList(data=[StrategyResponse.render(s, mine=True) for s in page], next_after=next_after)


@get("/public", summary="The strategy directory", opt=needs("copy:read"))
async def list_public_strategies(
    principal: CurrentPrincipal, db: DbSession, limit: Limit = 50, after: After = None
) -> StrategyList:
    """Active public strategies, anyone's, newest first."""
    page = await StrategyRepository(db).list_public(limit=limit, after=id_cursor(after, "stg"), descending=True)
    return StrategyList(
        data=[StrategyResponse.render(s, mine=_mine(principal, s)) for s in page.items], next_after=page.next_after
    )


@get("/{strategy_id:str}", summary="Get a strategy", response_headers=OBJECT_ETAG_HEADER, opt=needs("copy:read"))
async def get_strategy(
    strategy_id: StrategyId, principal: CurrentPrincipal, db: DbSession
) -> Response[StrategyResponse]:
    """Your strategy, or anyone's public or unlisted one, with its ETag. 404 for someone else's private strategy."""
    strategy = await StrategyRepository(db).get_visible(principal.user_id, strategy_id)
    if strategy is None:
        raise NotFound("strategy not found")
    mine = _mine(principal, strategy)
    if not mine and strategy.visibility is StrategyVisibility.PRIVATE:
        raise NotFound("strategy not found")  # the provider's own, but outside the principal's grant
    body = StrategyResponse.render(strategy, mine=mine)
    return tagged(body, content_tag(body))


@patch(
    "/{strategy_id:str}", summary="Change or close a strategy", response_headers=OBJECT_ETAG_HEADER, opt=first_party()
)
async def update_strategy(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    strategy_id: StrategyId,
    data: JSONBody[StrategyUpdate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    if_match: IfMatch = None,
) -> Response[StrategyResponse]:
    """Rename, describe, change visibility or the minimum follower equity, or close (final: 409 for
    any later change). Its followers keep their subscriptions; a closed strategy sends no more signals.
    With ``If-Match``, only if the strategy is still at that ETag (412 otherwise)."""
    await lock_if_matched(db, if_match, StrategyRow, strategy_id)
    current = await _own_strategy(db, principal, strategy_id)
    check_if_match(if_match, content_tag(StrategyResponse.render(current, mine=True)), what="strategy")
    wanted: dict[str, Any] = {
        name: value for name in StrategyUpdate.__struct_fields__ if (value := getattr(data, name)) is not msgspec.UNSET
    }
    if "name" in wanted:
        wanted["name"] = _text(wanted["name"], "name")
    if "description" in wanted:
        wanted["description"] = wanted["description"].strip()
    if "min_follower_equity" in wanted:
        wanted["min_follower_equity"] = _min_equity(wanted["min_follower_equity"])
    if "status" in wanted:
        wanted["status"] = StrategyStatus(wanted["status"])
    changes = {name: value for name, value in wanted.items() if getattr(current, name) != value}
    if not changes:
        unchanged(request)
        body = StrategyResponse.render(current, mine=True)
        return tagged(body, content_tag(body))
    if current.status is StrategyStatus.CLOSED:
        raise Conflict("the strategy is closed: it no longer changes")
    updated = msgspec.structs.replace(current, **changes, updated_at=clock.now())
    try:
        async with db.begin_nested():
            await StrategyRepository(db).update(updated)
    except IntegrityError:
        raise Conflict(f"you already have a strategy named {updated.name!r}", extra={"field": "name"}) from None
    await audited(
        request, db, action="strategy.update", target=strategy_id, now=clock.now(),
        details={"changed": ",".join(sorted(changes))},
    )  # fmt: skip
    body = StrategyResponse.render(updated, mine=True)
    return tagged(body, content_tag(body))


# --- subscriptions ---------------------------------------------------------------------------------


async def _subscription(db: AsyncSession, principal: Principal, subscription_id: str) -> Subscription:
    subscription = await SubscriptionRepository(db).get_for_user(principal.user_id, subscription_id)
    if subscription is None or not principal.can_reach_account(subscription.account_id):
        raise NotFound("subscription not found")
    return subscription


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_HasId)


async def _scoped_page(
    fetch: Callable[[str | None], Awaitable[Page[T]]], keep: Callable[[T], bool], *, limit: int, after: str | None
) -> tuple[list[T], str | None]:
    """A page of ``limit`` items that ``keep`` accepts, reading as many stored pages as that takes.

    The cursor is always the id of an item returned, never of one the principal may not see.
    """
    kept: list[T] = []
    cursor = after
    while True:
        page = await fetch(cursor)
        for i, item in enumerate(page.items):
            if not keep(item):
                continue
            kept.append(item)
            if len(kept) == limit:
                more = i < len(page.items) - 1 or page.next_after is not None
                return kept, item.id if more else None
        if page.next_after is None:
            return kept, None
        cursor = page.next_after


@idempotent
@post(
    "/",
    summary="Follow a strategy",
    status_code=201,
    response_headers=ETAG_HEADER,
    before_request=checked_body(SubscriptionCreate, nested_in="settings"),
    opt=needs("copy:manage"),
)
async def create_subscription(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    data: JSONBody[SubscriptionCreate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    copy_engine: Copy,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> Response[SubscriptionResponse]:
    """Copy a strategy into one of your accounts with these settings. Copies start with the
    provider's next trade; the provider's positions already open follow ``settings.on_subscribe``.
    404 for a strategy you cannot see or an account that is not yours; 422
    for invalid settings (naming the field), for the account backing the strategy itself, or an
    account below the strategy's minimum equity; 409 if the account already follows it."""
    principal.require_account(data.account_id)
    subscription = await manage.subscribe(
        db,
        follower_user_id=principal.user_id,
        strategy_id=data.strategy_id,
        account_id=data.account_id,
        settings=data.settings,
        now=clock.now(),
    )
    await audited(
        request, db, action="subscription.create", target=subscription.id, now=clock.now(),
        details={"strategy_id": data.strategy_id, "account_id": data.account_id},
    )  # fmt: skip
    await db.commit()  # the engine reads it through its own session
    await copy_engine.copy_open_positions(subscription.id)
    return with_etag(subscription, SubscriptionResponse.render(subscription), 201)


@get("/", summary="List my subscriptions", opt=needs("copy:read"))
async def list_subscriptions(
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Limit = 50,
    after: After = None,
    strategy_id: Annotated[
        str | None, Parameter(description="Only those following this strategy", max_length=40)
    ] = None,
) -> SubscriptionList:
    """The subscriptions of your accounts (stopped ones included), newest first."""
    cursor = id_cursor(after, "sub")
    repo = SubscriptionRepository(db)

    async def fetch(cursor: str | None) -> Page[Subscription]:
        return await repo.list_for_user(
            principal.user_id, strategy_id=strategy_id, limit=limit, after=cursor, descending=True
        )

    items, next_after = await _scoped_page(
        fetch, lambda s: principal.can_reach_account(s.account_id), limit=limit, after=cursor
    )
    return SubscriptionList(data=[SubscriptionResponse.render(s) for s in items], next_after=next_after)


@get("/{subscription_id:str}", summary="Get a subscription", response_headers=ETAG_HEADER, opt=needs("copy:read"))
async def get_subscription(
    subscription_id: SubscriptionId, principal: CurrentPrincipal, db: DbSession
) -> Response[SubscriptionResponse]:
    """One subscription with its settings; the ETag header carries its version."""
    subscription = await _subscription(db, principal, subscription_id)
    return with_etag(subscription, SubscriptionResponse.render(subscription))


@get(
    "/{subscription_id:str}/settings",
    summary="Get a subscription's settings",
    response_headers=ETAG_HEADER,
    opt=needs("copy:read"),
)
async def get_settings(
    subscription_id: SubscriptionId, principal: CurrentPrincipal, db: DbSession
) -> Response[CopySettings]:
    """The copy settings alone, with the subscription's ETag (send it back in ``If-Match`` to change them)."""
    subscription = await _subscription(db, principal, subscription_id)
    return with_etag(subscription, decode_settings(subscription.settings))


@put(
    "/{subscription_id:str}/settings",
    summary="Replace a subscription's settings",
    response_headers=ETAG_HEADER,
    before_request=checked_body(CopySettings),
    opt=needs("copy:manage"),
)
async def replace_settings(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    subscription_id: SubscriptionId,
    data: JSONBody[CopySettings],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    if_match: IfMatch = None,
) -> Response[CopySettings]:
    """Replace the settings as a whole; they apply from the provider's next trade. ``If-Match`` is
    required: 428 without it, 412 when the subscription changed since that ETag. 409 once stopped."""
    current = await _subscription(db, principal, subscription_id)
    expected = expected_version(if_match, current, required=True)
    try:
        changed = await manage.update_settings(
            db,
            user_id=principal.user_id,
            subscription_id=subscription_id,
            settings=data,
            expected_version=expected,
            now=clock.now(),
        )
    except StaleVersion as exc:
        raise PreconditionFailed(str(exc)) from None
    await audited(
        request, db, action="subscription.settings", target=subscription_id, now=clock.now(),
        details={"version": changed.version},
    )  # fmt: skip
    return with_etag(changed, decode_settings(changed.settings))


async def _change_status(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    principal: Principal,
    clock: Clock,
    subscription_id: str,
    *,
    status: SubscriptionStatus,
    if_match: str | None,
    close_copies: bool = False,
) -> tuple[Subscription, list[CopyIntent]]:
    current = await _subscription(db, principal, subscription_id)
    expected = expected_version(if_match, current, required=False)
    try:
        changed, intents = await manage.set_status(
            db,
            user_id=principal.user_id,
            subscription_id=subscription_id,
            status=status,
            close_copies=close_copies,
            expected_version=expected,
            now=clock.now(),
        )
    except StaleVersion as exc:
        if expected is None:
            raise  # a concurrent change, not a precondition the caller set: 409
        raise PreconditionFailed(str(exc)) from None
    if changed.version == current.version and not intents:
        unchanged(request)
    else:
        await audited(
            request, db, action=f"subscription.{status.value}", target=subscription_id, now=clock.now(),
            details={"from": current.status.value, "closing_orders": len(intents)},
        )  # fmt: skip
    return changed, intents


@post(
    "/{subscription_id:str}/pause",
    summary="Pause a subscription",
    status_code=200,
    response_headers=ETAG_HEADER,
    opt=needs("copy:manage"),
)
async def pause_subscription(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    if_match: IfMatch = None,
) -> Response[SubscriptionResponse]:
    """No new copies (each skipped trade is an event with reason ``paused``); open copies stay open
    and still follow the provider's closes. Pausing a paused subscription changes nothing; 409 once stopped."""
    changed, _ = await _change_status(
        request, db, principal, clock, subscription_id, status=SubscriptionStatus.PAUSED, if_match=if_match
    )
    return with_etag(changed, SubscriptionResponse.render(changed))


@post(
    "/{subscription_id:str}/resume",
    summary="Resume a subscription",
    status_code=200,
    response_headers=ETAG_HEADER,
    opt=needs("copy:manage"),
)
async def resume_subscription(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    if_match: IfMatch = None,
) -> Response[SubscriptionResponse]:
    """Copy everything again from the provider's next trade (what was missed is not caught up). 409 once stopped."""
    changed, _ = await _change_status(
        request, db, principal, clock, subscription_id, status=SubscriptionStatus.ACTIVE, if_match=if_match
    )
    return with_etag(changed, SubscriptionResponse.render(changed))


@post(
    "/{subscription_id:str}/close-only",
    summary="Copy only closes",
    status_code=200,
    response_headers=ETAG_HEADER,
    opt=needs("copy:manage"),
)
async def close_only_subscription(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    if_match: IfMatch = None,
) -> Response[SubscriptionResponse]:
    """Copy the provider's reductions and closes, not its opens or increases. 409 once stopped."""
    changed, _ = await _change_status(
        request, db, principal, clock, subscription_id, status=SubscriptionStatus.CLOSE_ONLY, if_match=if_match
    )
    return with_etag(changed, SubscriptionResponse.render(changed))


@post(
    "/{subscription_id:str}/stop",
    summary="Stop a subscription",
    status_code=200,
    response_headers=ETAG_HEADER,
    opt=needs("copy:manage"),
)
async def stop_subscription(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    copy_engine: Copy,
    data: JSONBody[StopRequest | None] = None,
    if_match: IfMatch = None,
) -> Response[SubscriptionResponse]:
    """Stop for good (the body is optional). With ``close_copies`` every open copy is closed at market;
    without it the follower keeps the positions, no longer linked to the provider's. Stopping a stopped
    subscription is idempotent (200, unchanged); with ``close_copies`` it closes copies still open."""
    changed, intents = await _change_status(
        request,
        db,
        principal,
        clock,
        subscription_id,
        status=SubscriptionStatus.STOPPED,
        if_match=if_match,
        close_copies=data is not None and data.close_copies,
    )
    if intents:
        await db.commit()  # the closing orders are in the outbox before any is sent
        await copy_engine.dispatch_pending()
    return with_etag(changed, SubscriptionResponse.render(changed))


@get("/{subscription_id:str}/events", summary="A subscription's copy events", opt=needs("copy:read"))
async def list_events(  # noqa: PLR0917 - injected parameters
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Limit = 50,
    after: After = None,
    kind: KindFilter = None,
    since: Since = None,
    until: Until = None,
) -> CopyEventList:
    """What happened, newest first: copies, skips and rejections with their reason, status changes;
    ``kind`` (e.g. ``skipped``), ``since`` and ``until`` narrow them."""
    cursor, period = id_cursor(after, "cpe"), time_range(since, until)
    await _subscription(db, principal, subscription_id)
    page = await CopyEventRepository(db).page_filtered(
        subscription_id,
        kinds=None if kind is None else [kind.value],
        since=period.since,
        until=period.until,
        limit=limit,
        after=cursor,
    )
    return CopyEventList(data=[CopyEventResponse.of(e) for e in page.items], next_after=page.next_after)


@get("/{subscription_id:str}/intents", summary="A subscription's copy orders", opt=needs("copy:read"))
async def list_intents(  # noqa: PLR0917 - injected parameters
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Limit = 50,
    after: After = None,
    symbol: Symbol = None,
    since: Since = None,
    until: Until = None,
) -> CopyIntentList:
    """Every order the subscription placed or will place, newest first, with latencies and slippage;
    ``symbol`` (the follower's), ``since`` and ``until`` narrow them."""
    cursor, wanted, period = id_cursor(after, "cpi"), checked_symbol(symbol), time_range(since, until)
    await _subscription(db, principal, subscription_id)
    page = await CopyIntentRepository(db).page_filtered(
        subscription_id, symbol=wanted, since=period.since, until=period.until, limit=limit, after=cursor
    )
    return CopyIntentList(data=[CopyIntentResponse.of(i) for i in page.items], next_after=page.next_after)


@get("/{subscription_id:str}/links", summary="A subscription's copied positions", opt=needs("copy:read"))
async def list_links(  # noqa: PLR0917 - injected parameters
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Limit = 50,
    after: After = None,
    symbol: Symbol = None,
    since: Since = None,
    until: Until = None,
) -> CopyLinkList:
    """Each follower position and the provider position it copies, open and closed, newest first;
    ``symbol`` (provider's or follower's), ``since`` and ``until`` (opening time) narrow them."""
    cursor, wanted, period = id_cursor(after, "lnk"), checked_symbol(symbol), time_range(since, until)
    await _subscription(db, principal, subscription_id)
    page = await CopyLinkRepository(db).page_filtered(
        subscription_id, symbol=wanted, since=period.since, until=period.until, limit=limit, after=cursor
    )
    return CopyLinkList(data=[CopyLinkResponse.of(link) for link in page.items], next_after=page.next_after)


strategies_router = Router(
    path="/strategies",
    route_handlers=[create_strategy, list_strategies, list_public_strategies, get_strategy, update_strategy],
    tags=["copy"],
)
subscriptions_router = Router(
    path="/subscriptions",
    route_handlers=[
        create_subscription,
        list_subscriptions,
        get_subscription,
        get_settings,
        replace_settings,
        pause_subscription,
        resume_subscription,
        close_only_subscription,
        stop_subscription,
        list_events,
        list_intents,
        list_links,
        *GUARD_HANDLERS,
    ],
    tags=["copy"],
)
