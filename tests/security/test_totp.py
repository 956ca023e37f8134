"""TOTP MFA: RFC 6238 codes, the drift window, replay, recovery codes, and the secret sealed in the vault.

The service tests run against a real (SQLite) database and the real vault; time is a
:class:`~brokerlink.kit.clock.ManualClock`, moved in 30-second steps, never slept.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import Conflict
from brokerlink.security.totp import (
    RECOVERY_CODES,
    TOTP_SECRET_PURPOSE,
    InvalidMfaCode,
    MfaService,
    code_at,
    hash_recovery_code,
    looks_like_totp,
    matching_step,
    new_recovery_code,
    new_secret,
    normalize_recovery_code,
    provisioning_uri,
    qr_svg,
    time_step,
)
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.models import RecoveryCodeRow, TotpCredentialRow, VaultSecretRow

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
"""The SHA-1 seed of RFC 6238's test vectors."""


# --- codes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unix_time", "code"),
    [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"), (1234567890, "005924"), (2000000000, "279037")],
)
def test_totp_codes_match_the_rfc_6238_sha1_vectors(unix_time: int, code: str) -> None:
    # RFC 6238 appendix B lists 8-digit codes; a 6-digit code is the same value's last six digits.
    when = datetime.fromtimestamp(unix_time, UTC)
    assert code_at(RFC_SECRET, time_step(when)) == code
    assert matching_step(RFC_SECRET, code, when) == time_step(when)


def test_totp_accepts_one_step_of_drift_either_way_and_no_more() -> None:
    when = datetime(2026, 1, 5, 12, 0, 15, tzinfo=UTC)
    now = time_step(when)
    for offset in (-1, 0, 1):
        assert matching_step(RFC_SECRET, code_at(RFC_SECRET, now + offset), when) == now + offset
    for offset in (-3, -2, 2, 3):
        assert matching_step(RFC_SECRET, code_at(RFC_SECRET, now + offset), when) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12345a", "\uff11\uff12\uff13\uff14\uff15\uff16", " 12 345"])
def test_totp_refuses_codes_that_are_not_six_ascii_digits(code: str) -> None:
    assert matching_step(RFC_SECRET, code, datetime(2026, 1, 5, tzinfo=UTC)) is None


def test_totp_secret_has_160_bits_and_the_uri_suits_authenticator_apps() -> None:
    secret = new_secret()
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20
    assert secret != new_secret()
    uri = provisioning_uri(secret, account="alice@example.com", issuer="brokerlink")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parts.path == "/brokerlink:alice%40example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["brokerlink"]
    # SHA-1, 6 digits and 30 s are the defaults every app assumes; pyotp omits them from the URI.
    assert query.get("algorithm", ["SHA1"]) == ["SHA1"]
    assert query.get("digits", ["6"]) == ["6"]
    assert query.get("period", ["30"]) == ["30"]


def test_totp_qr_code_is_inline_svg_without_script_or_external_reference() -> None:
    svg = qr_svg(provisioning_uri(new_secret(), account="a@example.com", issuer="brokerlink"))
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    lowered = svg.lower()
    assert "<script" not in lowered
    assert "href" not in lowered
    assert "<?xml" not in lowered


def test_totp_recovery_codes_are_random_80_bit_and_hashed_with_a_per_code_salt() -> None:
    codes = {new_recovery_code() for _ in range(50)}
    assert len(codes) == 50
    code = next(iter(codes))
    assert len(normalize_recovery_code(code)) == 16  # 16 base32 characters: 80 bits
    assert normalize_recovery_code(code.lower().replace("-", " ")) == normalize_recovery_code(code)
    assert not looks_like_totp(code)
    one, two = hash_recovery_code(code, b"\x01" * 16), hash_recovery_code(code, b"\x02" * 16)
    assert one != two
    assert len(one) == 64
    assert code not in one
    assert hash_recovery_code(code.lower(), b"\x01" * 16) == one


# --- the service, on a real database -----------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 12, 0, 5, tzinfo=UTC))


async def enrol(database: Database, vault: Vault, clock: ManualClock, user_id: str) -> tuple[str, list[str]]:
    async with database.session() as s:
        service = MfaService(s, vault, clock)
        enrolment = await service.start(user_id, account="trader@example.com", issuer="brokerlink")
        codes = await service.confirm(user_id, code_at(enrolment.secret, time_step(clock.now())))
        await s.commit()
    return enrolment.secret, codes


async def verify(database: Database, vault: Vault, clock: ManualClock, user_id: str, code: str) -> str:
    async with database.session() as s:
        verified = await MfaService(s, vault, clock).verify(user_id, code)
        await s.commit()
    return verified.method


async def test_totp_enrolment_is_inactive_until_confirmed(
    database: Database, vault: Vault, clock: ManualClock, user_id: str
) -> None:
    async with database.session() as s:
        service = MfaService(s, vault, clock)
        enrolment = await service.start(user_id, account="trader@example.com", issuer="brokerlink")
        assert enrolment.secret not in repr(enrolment)
        status = await service.status(user_id)
        assert (status.enrolled, status.pending) == (False, True)
        with pytest.raises(InvalidMfaCode):
            await service.verify(user_id, code_at(enrolment.secret, time_step(clock.now())))
        with pytest.raises(InvalidMfaCode):
            await service.confirm(user_id, code_at(enrolment.secret, time_step(clock.now()) + 2))
        codes = await service.confirm(user_id, code_at(enrolment.secret, time_step(clock.now())))
        assert len(codes) == RECOVERY_CODES == len(set(codes))
        status = await service.status(user_id)
        assert (status.enrolled, status.pending, status.recovery_codes_left) == (True, False, 10)
        with pytest.raises(Conflict):
            await service.confirm(user_id, code_at(enrolment.secret, time_step(clock.now()) + 1))


async def test_totp_replay_of_a_used_step_or_an_older_one_is_refused(
    database: Database, vault: Vault, clock: ManualClock, user_id: str
) -> None:
    secret, _ = await enrol(database, vault, clock, user_id)
    step = time_step(clock.now())
    with pytest.raises(InvalidMfaCode):  # the code that confirmed the enrolment
        await verify(database, vault, clock, user_id, code_at(secret, step))
    clock.advance(timedelta(seconds=30))
    assert await verify(database, vault, clock, user_id, code_at(secret, step + 1)) == "totp"
    with pytest.raises(InvalidMfaCode):  # the same code again, within its validity
        await verify(database, vault, clock, user_id, code_at(secret, step + 1))
    clock.advance(timedelta(seconds=30))
    with pytest.raises(InvalidMfaCode):  # an older code, still inside the drift window
        await verify(database, vault, clock, user_id, code_at(secret, step + 1))
    assert await verify(database, vault, clock, user_id, code_at(secret, step + 3)) == "totp"  # one ahead
    with pytest.raises(InvalidMfaCode):  # the current step is now older than the last accepted
        await verify(database, vault, clock, user_id, code_at(secret, step + 2))


async def test_totp_recovery_codes_work_once_each_and_are_stored_only_as_hashes(
    database: Database, vault: Vault, clock: ManualClock, user_id: str
) -> None:
    _, codes = await enrol(database, vault, clock, user_id)
    assert await verify(database, vault, clock, user_id, codes[0].lower()) == "recovery_code"
    with pytest.raises(InvalidMfaCode):
        await verify(database, vault, clock, user_id, codes[0])
    with pytest.raises(InvalidMfaCode):
        await verify(database, vault, clock, user_id, "AAAA-BBBB-CCCC-DDDD")
    async with database.session() as s:
        assert (await MfaService(s, vault, clock).status(user_id)).recovery_codes_left == 9
        stored = list(await s.scalars(select(RecoveryCodeRow)))
    assert len(stored) == 10
    for row in stored:
        for code in codes:
            assert normalize_recovery_code(code) not in row.code_hash
            assert code not in row.code_hash


async def test_totp_secret_is_sealed_in_the_vault_and_absent_from_every_table(
    database: Database, vault: Vault, clock: ManualClock, user_id: str
) -> None:
    secret, _ = await enrol(database, vault, clock, user_id)
    async with database.session() as s:
        totp = (await s.scalars(select(TotpCredentialRow))).one()
        sealed = (await s.scalars(select(VaultSecretRow))).one()
        assert (sealed.id, sealed.owner_id, sealed.purpose) == (totp.secret_id, totp.id, TOTP_SECRET_PURPOSE)
        assert await vault.get(s, totp.secret_id, owner_id=totp.id) == secret.encode()
        # A raw dump of every table: neither the base32 text nor the raw key bytes appear anywhere.
        raw_key = base64.b32decode(secret + "=" * (-len(secret) % 8))
        tables = [r[0] for r in await s.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))]
        for table in tables:
            for row in await s.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - our own table names
                for value in row:
                    blob = value if isinstance(value, bytes) else str(value).encode()
                    assert secret.encode() not in blob, table
                    assert raw_key not in blob, table


async def test_totp_disable_needs_a_valid_code_and_removes_secret_and_codes(
    database: Database, vault: Vault, clock: ManualClock, user_id: str
) -> None:
    secret, codes = await enrol(database, vault, clock, user_id)
    async with database.session() as s:
        with pytest.raises(InvalidMfaCode):
            await MfaService(s, vault, clock).disable(user_id, "000000")
    async with database.session() as s:
        await MfaService(s, vault, clock).disable(user_id, codes[3])
        await s.commit()
    async with database.session() as s:
        for model in (TotpCredentialRow, RecoveryCodeRow, VaultSecretRow):
            assert list(await s.scalars(select(model))) == [], model.__tablename__
        assert not await MfaService(s, vault, clock).is_enrolled(user_id)
    clock.advance(timedelta(seconds=30))
    with pytest.raises(InvalidMfaCode):
        await verify(database, vault, clock, user_id, code_at(secret, time_step(clock.now())))


async def test_totp_re_enrolment_replaces_the_old_authenticator_only_when_confirmed(
    database: Database, vault: Vault, clock: ManualClock, user_id: str
) -> None:
    old_secret, old_codes = await enrol(database, vault, clock, user_id)
    clock.advance(timedelta(seconds=30))
    async with database.session() as s:
        new = await MfaService(s, vault, clock).start(user_id, account="t@example.com", issuer="brokerlink")
        await s.commit()
    assert await verify(database, vault, clock, user_id, code_at(old_secret, time_step(clock.now()))) == "totp"
    clock.advance(timedelta(seconds=30))
    async with database.session() as s:
        await MfaService(s, vault, clock).confirm(user_id, code_at(new.secret, time_step(clock.now())))
        await s.commit()
    clock.advance(timedelta(seconds=30))
    with pytest.raises(InvalidMfaCode):
        await verify(database, vault, clock, user_id, code_at(old_secret, time_step(clock.now())))
    with pytest.raises(InvalidMfaCode):
        await verify(database, vault, clock, user_id, old_codes[0])
    assert await verify(database, vault, clock, user_id, code_at(new.secret, time_step(clock.now()))) == "totp"
    async with database.session() as s:
        assert len(list(await s.scalars(select(VaultSecretRow)))) == 1
