"""``/v1/admin/audit``: the audit trail for admins and auditors (ADR 0016).

Read-only: the trail is written by the code that makes each change (``brokerlink.security.audit``),
never through the API. Only the ``admin`` and ``auditor`` roles get in; anyone else gets 403. The
list is newest first and paged by sequence like every list (``limit``, ``after`` = the previous
``next_after``, a sequence number as a string); ``before``/``next_before`` (integers) are the same
cursor under their first names, kept for clients written before issue 8.
``/verify`` walks the whole chain and its checkpoints with this server's public key, the same check
as ``brokerlink audit verify``; a broken chain is an answer (``ok: false``), not an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Router, get
from litestar.params import Parameter

from brokerlink.api.deps import AppSettings, CurrentPrincipal, DbSession
from brokerlink.api.paging import After, Limit, Since, Until, invalid_cursor, time_range
from brokerlink.api.schemas import ResponseBody
from brokerlink.domain.enums import Role
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.security.audit_verify import verify
from brokerlink.store.repositories.audit import AuditRepository, RecordFilter, StoredRecord

Before = Annotated[
    int | None, Parameter(description="Deprecated: the same cursor as after, as an integer (next_before)", ge=1)
]


class AuditRecordResponse(ResponseBody, kw_only=True):
    """One audit record, with the hashes that chain it."""

    seq: int
    at: datetime
    actor_kind: str
    actor_id: str
    action: str
    target: str
    outcome: str
    request_id: str | None
    source_ip: str | None
    details: dict[str, str | int | bool | None]
    prev_hash: str
    hash: str

    @classmethod
    def of_stored(cls, stored: StoredRecord) -> AuditRecordResponse:
        """From a stored record (``details`` decoded from its JSON text)."""
        fields = msgspec.structs.asdict(stored)
        fields["details"] = msgspec.json.decode(stored.details)
        return cls(**fields)


class AuditRecordList(ResponseBody, kw_only=True):
    """One page of records, newest first; pass ``next_before`` as ``before`` for the next page."""

    data: list[AuditRecordResponse]
    next_after: str | None
    """The cursor of the next page (``after``); null on the last page."""
    next_before: int | None
    """The same cursor as an integer (deprecated: use ``next_after``)."""


class AuditVerifyResponse(ResponseBody, kw_only=True):
    """The result of walking the chain and its checkpoints."""

    ok: bool
    records_checked: int
    checkpoints_checked: int
    start_sequence: int
    head_sequence: int
    head_hash: str
    first_bad_sequence: int | None
    reason: str | None
    key_id: str


def _sequence_cursor(after: str | None, before: int | None) -> int | None:
    if after is None:
        return before
    if not after.isdigit() or int(after) < 1 or (before is not None and int(after) != before):
        raise invalid_cursor("not a cursor of this list (expected the next_after of its previous page)")
    return int(after)


@get("", summary="List audit records")
async def list_audit_records(  # noqa: PLR0917 - Litestar injects by name
    principal: CurrentPrincipal,
    db: DbSession,
    actor: Annotated[
        str | None, Parameter(description="Actor id (usr_..., a client id, a system name)", max_length=64)
    ] = None,
    action: Annotated[
        str | None, Parameter(description="Action or action prefix, e.g. auth. or order.place", max_length=64)
    ] = None,
    target: Annotated[str | None, Parameter(description="Target, exactly (e.g. ord_...)", max_length=200)] = None,
    outcome: Annotated[Literal["success", "failure", "denied"] | None, Parameter(description="Outcome")] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    after: After = None,
    before: Before = None,
) -> AuditRecordList:
    """Audit records matching every filter given, newest first. Admins and auditors only."""
    principal.require_role(Role.ADMIN, Role.AUDITOR)
    cursor, period = _sequence_cursor(after, before), time_range(since, until)
    where = RecordFilter(
        actor_id=actor,
        action_prefix=action,
        target=target,
        outcome=outcome,
        since=period.since,
        until=period.until,
    )
    page = await AuditRepository(db).page(where, limit=limit, before=cursor)
    return AuditRecordList(
        data=[AuditRecordResponse.of_stored(r) for r in page.items],
        next_after=None if page.next_before is None else str(page.next_before),
        next_before=page.next_before,
    )


@get("/verify", summary="Verify the audit trail")
async def verify_audit_trail(principal: CurrentPrincipal, db: DbSession, settings: AppSettings) -> AuditVerifyResponse:
    """Recompute every hash and link, check every checkpoint's signature and that the chain reaches it."""
    principal.require_role(Role.ADMIN, Role.AUDITOR)
    signer = AuditSigner.from_settings(settings)
    result = await verify(db, public_keys=signer.public_keys())
    return AuditVerifyResponse(**msgspec.structs.asdict(result), key_id=signer.key_id)


audit_router = Router(path="/admin/audit", route_handlers=[list_audit_records, verify_audit_trail], tags=["admin"])
