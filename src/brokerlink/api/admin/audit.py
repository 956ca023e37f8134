"""``/v1/admin/audit``: the audit trail for admins and auditors (ADR 0016).

Read-only: the trail is written by the code that makes each change (``brokerlink.security.audit``),
never through the API. Only the ``admin`` and ``auditor`` roles get in; anyone else gets 403. The
list is newest first and paged by sequence (``limit``, ``before`` = the previous ``next_before``).
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
from brokerlink.api.schemas import ResponseBody
from brokerlink.domain.enums import Role
from brokerlink.kit.errors import InvalidInput
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.security.audit_verify import verify
from brokerlink.store.repositories.audit import AuditRepository, RecordFilter, StoredRecord

Limit = Annotated[int, Parameter(description="Page size", ge=1, le=500)]
Before = Annotated[int | None, Parameter(description="Cursor: next_before of the previous page", ge=1)]


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
    next_before: int | None


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


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise InvalidInput(f"{name}: give a time with a zone, e.g. 2026-11-21T12:00:00Z", extra={"field": name})
    return value


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
    since: Annotated[datetime | None, Parameter(description="At or after this time (ISO 8601 with zone)")] = None,
    until: Annotated[datetime | None, Parameter(description="Before this time (ISO 8601 with zone)")] = None,
    limit: Limit = 50,
    before: Before = None,
) -> AuditRecordList:
    """Audit records matching every filter given, newest first. Admins and auditors only."""
    principal.require_role(Role.ADMIN, Role.AUDITOR)
    where = RecordFilter(
        actor_id=actor,
        action_prefix=action,
        target=target,
        outcome=outcome,
        since=_aware("since", since),
        until=_aware("until", until),
    )
    page = await AuditRepository(db).page(where, limit=limit, before=before)
    return AuditRecordList(data=[AuditRecordResponse.of_stored(r) for r in page.items], next_before=page.next_before)


@get("/verify", summary="Verify the audit trail")
async def verify_audit_trail(principal: CurrentPrincipal, db: DbSession, settings: AppSettings) -> AuditVerifyResponse:
    """Recompute every hash and link, check every checkpoint's signature and that the chain reaches it."""
    principal.require_role(Role.ADMIN, Role.AUDITOR)
    signer = AuditSigner.from_settings(settings)
    result = await verify(db, public_keys=signer.public_keys())
    return AuditVerifyResponse(**msgspec.structs.asdict(result), key_id=signer.key_id)


audit_router = Router(path="/admin/audit", route_handlers=[list_audit_records, verify_audit_trail], tags=["admin"])
