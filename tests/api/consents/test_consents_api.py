"""``/v1/consents``: listing, reading and revoking a user's consents (SECURITY.md 22, 23)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from brokerlink.bus.base import EventBus
from brokerlink.kit.ids import new_id
from brokerlink.security.oauth.revocation import REVOCATION_TOPIC, TokensRevoked, decode_revocation
from brokerlink.store.models_audit import AuditRecordRow
from brokerlink.store.models_oauth import OAuthConsentRow, OAuthTokenRow
from tests.api.consents.conftest import Server, User
from tests.api.consents.support import follow_to_consent, in_store, store_token
from tests.api.support import assert_problem

pytestmark = pytest.mark.asyncio(loop_scope="module")
HTML = {"accept": "text/html"}


async def approved(
    server: Server, user: User, *, scope: str = "accounts:read balances:read"
) -> tuple[str, str, list[str]]:
    """An authorised consent of ``user`` (first account) with two live tokens: (consent, client, token ids)."""
    client_id = await server.client()
    consent_id = await follow_to_consent(user.http, client_id, await server.push(client_id, scope=scope))
    r = await user.http.post(
        f"/consents/{consent_id}/decision",
        data={"decision": "approve", "account_ids": user.accounts[:1], "code": user.code(server.clock)},
        headers=HTML,
    )
    assert r.status_code == 303, r.text
    now = server.clock.now()
    tokens = [
        await in_store(
            server.app, lambda s: store_token(s, client_id=client_id, consent_id=consent_id, user_id=user.id, now=now)
        )
        for _ in range(2)
    ]
    return consent_id, client_id, tokens


async def _tokens(server: Server, ids: list[str]) -> list[OAuthTokenRow]:
    async with server.db.session() as s:
        return list((await s.scalars(select(OAuthTokenRow).where(OAuthTokenRow.id.in_(ids)))).all())


async def published(server: Server, consent_id: str) -> list[TokensRevoked]:
    """The revocations published for ``consent_id`` so far (read by a group of the test's own)."""
    bus: EventBus = server.app.state.bus
    messages = await bus.read(REVOCATION_TOPIC, new_id("grp"), "test", block_ms=0, max_count=10_000)
    decoded = [decode_revocation(m.payload) for m in messages]
    return [m for m in decoded if m.consent_id == consent_id]


async def _audit_actions(server: Server, target: str) -> list[tuple[str, str]]:
    async with server.db.session() as s:
        stmt = select(AuditRecordRow).where(AuditRecordRow.target == target).order_by(AuditRecordRow.seq)
        return [(r.action, r.outcome) for r in await s.scalars(stmt)]


async def test_security23_list_and_get_show_the_app_the_scopes_in_plain_words_and_the_accounts(
    server: Server,
) -> None:
    alice = await server.user(mfa=True, accounts=2)
    consent_id, client_id, _ = await approved(server, alice)
    listed = await alice.http.get("/v1/consents")
    assert listed.status_code == 200
    body = listed.json()
    assert [c["id"] for c in body["data"]] == [consent_id]
    one = (await alice.http.get(f"/v1/consents/{consent_id}")).json()
    assert one == body["data"][0]
    assert (one["client_id"], one["client_name"], one["status"]) == (client_id, "Tracker", "authorised")
    assert one["account_ids"] == alice.accounts[:1]  # the one chosen, not both
    assert one["scopes"] == [
        {"scope": "accounts:read", "description": "See which broker accounts you have linked and their names"},
        {"scope": "balances:read", "description": "See the cash balances of the selected accounts"},
    ]
    assert (await alice.http.get("/v1/consents", params={"status": "revoked"})).json()["data"] == []


async def test_security22_revoking_a_consent_revokes_its_tokens_and_tells_every_process(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    consent_id, _, tokens = await approved(server, alice)
    assert await published(server, consent_id) == []
    r = await alice.http.delete(f"/v1/consents/{consent_id}")
    assert r.status_code == 204
    body = (await alice.http.get(f"/v1/consents/{consent_id}")).json()
    assert body["status"] == "revoked"
    assert body["revoked_at"] is not None
    assert all(t.revoked_at is not None for t in await _tokens(server, tokens))
    [message] = await published(server, consent_id)
    assert (sorted(message.token_ids), message.reason) == (sorted(tokens), "consent_revoked")
    # Idempotent: nothing more is changed, recorded or published.
    assert (await alice.http.delete(f"/v1/consents/{consent_id}")).status_code == 204
    assert len(await published(server, consent_id)) == 1
    actions = await _audit_actions(server, consent_id)
    assert actions == [
        ("consent.request", "success"), ("consent.approve", "success"), ("consent.revoke", "success")
    ]  # fmt: skip


async def test_security22_a_consent_past_its_expiry_is_expired_and_its_tokens_revoked(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    consent_id, _, tokens = await approved(server, alice)
    # 90 days on, the session would have ended too: bring the consent's expiry to now instead.
    now = server.clock.now()
    await in_store(
        server.app,
        lambda s: s.execute(update(OAuthConsentRow).where(OAuthConsentRow.id == consent_id).values(expires_at=now)),
    )
    body = (await alice.http.get("/v1/consents")).json()
    assert body["data"][0]["status"] == "expired"
    assert all(t.revoked_at is not None for t in await _tokens(server, tokens))
    [message] = await published(server, consent_id)
    assert message.reason == "consent_expired"
    assert (await alice.http.delete(f"/v1/consents/{consent_id}")).status_code == 204  # nothing left to revoke
    assert (await alice.http.get(f"/v1/consents/{consent_id}")).json()["status"] == "expired"
    assert [a for a, _ in await _audit_actions(server, consent_id)][-1] == "consent.expire"


async def test_consents_expire_after_the_configured_days(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    consent_id, _, _ = await approved(server, alice)
    body = (await alice.http.get(f"/v1/consents/{consent_id}")).json()
    decided = body["decided_at"]
    assert body["expires_at"] > decided
    async with server.db.session() as s:
        row = await s.get(OAuthConsentRow, consent_id)
        assert row is not None
        assert row.expires_at - row.decided_at == timedelta(days=server.settings.oauth_consent_days)  # type: ignore[operator]


async def test_another_users_consent_is_404_on_every_route(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    bob = await server.user()
    consent_id, _, tokens = await approved(server, alice)
    assert_problem(await bob.http.get(f"/v1/consents/{consent_id}"), 404, "not_found")
    assert_problem(await bob.http.delete(f"/v1/consents/{consent_id}"), 404, "not_found")
    assert (await bob.http.get("/v1/consents")).json()["data"] == []
    assert (await alice.http.get(f"/v1/consents/{consent_id}")).json()["status"] == "authorised"
    assert all(t.revoked_at is None for t in await _tokens(server, tokens))


async def test_an_apps_token_cannot_manage_consents_or_clients() -> None:
    from brokerlink.api.consents.common import require_admin, require_user
    from brokerlink.kit.errors import Forbidden
    from brokerlink.security.principal import Principal

    token = Principal(kind="client", user_id="usr_x", client_id="app_x", scopes=frozenset({"accounts:read"}))
    for check in (require_user, require_admin):
        with pytest.raises(Forbidden):
            check(token)
