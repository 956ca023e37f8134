"""SECURITY.md 35: a dump of the database holds no plaintext of any stored broker credential.

Credentials are seeded through the real linking path (``POST /v1/connections`` of the running app,
against a real sim venue on loopback that accepts only these credentials), then the raw bytes of
the SQLite database file and its WAL, and a real ``pg_dump`` of the PostgreSQL database, are
searched. A positive control (a marker stored in the clear, in the connection's label) proves each
search can find what is there.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from brokerlink.app.factory import create_app
from brokerlink.brokers.sim.venue import VenueConfig
from brokerlink.brokers.sim.venue.config import AccountConfig
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.security.vault import LocalKeyFile
from tests.api.mfa_support import Authenticator, enrol_totp
from tests.api.support import PASSWORD, asgi_client, running, with_csrf
from tests.backends import mark_backend
from tests.contract.harness import free_port, start_venue, stop_venue
from tests.store.conftest import _pg_database

MARKER = "cleartext-control-5ZK8"
API_KEY = "AKIA-at-rest-4Q9ZT7X2"
API_SECRET = "s3cr3t-at-rest-W8N1PV6Y"
ACCOUNT = "SIM-AT-REST"


@dataclass
class Venue:
    base_url: str


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    """A sim venue whose only account answers to this module's distinctive key and secret."""
    config = VenueConfig(
        instrument_set="fx",
        seed=7,
        mode="test",
        tick_interval_s=0.05,
        heartbeat_interval_s=1.0,
        accounts=(AccountConfig(account_id=ACCOUNT, api_key=API_KEY, api_secret=API_SECRET),),
    )
    port = free_port()
    server, task = await start_venue(config, port)
    try:
        yield Venue(f"http://127.0.0.1:{port}")
    finally:
        await stop_venue(server, task)


def app_settings(data_dir: Path, database_url: str | None = None, **changes: object) -> Settings:
    """Settings of an app under test: its own data dir (key file, SQLite file) and generous rate limits."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "environment": "test",
        "secret_key": SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        "log_level": "warning",
        "log_format": "console",
        "rate_limit_user": "1000/second",
        "rate_limit_ip": "1000/second",
    }
    return Settings(**(values | changes))  # type: ignore[arg-type]


@dataclass
class Flow:
    """What a flow through the app handled, for the tests to look for."""

    secrets: dict[str, str] = field(default_factory=dict)
    connection_id: str = ""
    account_id: str = ""


async def sign_up_with_mfa(c: httpx.AsyncClient, clock: ManualClock, email: str, flow: Flow) -> Authenticator:
    """Register (the password), enrol TOTP (its secret and recovery codes)."""
    await with_csrf(c)
    r = await c.post("/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Sec"})
    assert r.status_code == 201, r.text
    device = await enrol_totp(c, clock)
    flow.secrets |= {"password": PASSWORD, "totp_secret": device.secret}
    flow.secrets |= {f"recovery_code_{i}": code for i, code in enumerate(device.recovery_codes)}
    return device


async def link(c: httpx.AsyncClient, base_url: str, flow: Flow, *, label: str) -> None:
    """Link the venue account through ``POST /v1/connections`` with the distinctive credentials."""
    body = {
        "broker": "sim",
        "label": label,
        "base_url": base_url,
        "credentials": {"api_key": API_KEY, "api_secret": API_SECRET},
    }
    r = await c.post("/v1/connections", json=body)
    assert r.status_code == 201, r.text
    flow.connection_id, flow.account_id = r.json()["connection"]["id"], r.json()["account"]["id"]
    flow.secrets |= {"api_key": API_KEY, "api_secret": API_SECRET}


def _forms(value: str) -> dict[str, bytes]:
    """A plaintext as it could appear in a dump: raw, hex (bytea), base64."""
    raw = value.encode()
    return {"raw": raw, "hex": raw.hex().encode(), "base64": base64.b64encode(raw).rstrip(b"=")}


def _sqlite_files(data_dir: Path) -> bytes:
    """The raw bytes of the SQLite database file and its WAL (where recent commits live until a checkpoint)."""
    files = sorted(data_dir.glob("brokerlink.db*"))
    assert data_dir / "brokerlink.db-wal" in files
    return b"".join(path.read_bytes() for path in files)


def _pg_dump_path() -> Path:
    """Debian's pg_dump, of the newest installed PostgreSQL (found as scripts/test-services.sh finds its bin dir)."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    assert bins, "pg_dump not found (Debian's postgresql package)"
    return bins[-1]


async def _pg_dump(url: str) -> bytes:
    pg_dump = _pg_dump_path()
    parsed = make_url(url)
    env = os.environ | {"PGPASSWORD": parsed.password or ""}
    process = await asyncio.create_subprocess_exec(
        str(pg_dump), "--no-owner", "-h", str(parsed.host), "-p", str(parsed.port or 5432),
        "-U", str(parsed.username), "-d", str(parsed.database),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str | None]:
    """None (the app's SQLite file in its data dir), or a fresh PostgreSQL database of the test's own."""
    if request.param == "sqlite":
        mark_backend(request, "sqlite")
        yield None
        return
    async with _pg_database(str(request.getfixturevalue("postgres_url"))) as url:
        yield url


async def test_a_database_dump_holds_no_plaintext_of_stored_credentials(
    venue: Venue, tmp_path: Path, database_url: str | None
) -> None:
    """SECURITY.md 35: the SQLite file (with its WAL) and a pg_dump hold none of the linked account's key
    or secret, nor the TOTP secret, nor the vault's key, in any common encoding; the same search finds
    the label stored in the clear."""
    settings = app_settings(tmp_path, database_url)
    clock = ManualClock()
    app = create_app(settings, clock=clock, configure_logs=False)
    flow = Flow()
    async with running(app), asgi_client(app) as c:
        await sign_up_with_mfa(c, clock, "at-rest@example.com", flow)
        await link(c, venue.base_url, flow, label=f"label-{MARKER}")
        assert (await c.get(f"/v1/accounts/{flow.account_id}/balances")).status_code == 200  # the link works
        if database_url is None:  # read while the app still holds the database open: the WAL has data
            dump = _sqlite_files(settings.data_dir)
        else:
            dump = await _pg_dump(database_url)

    assert f"label-{MARKER}".encode() in dump, "positive control: the search sees what is stored in the clear"
    assert flow.connection_id.encode() in dump
    kek = LocalKeyFile(settings.effective_vault_key_file).current()
    forbidden = {
        name: value for name, value in flow.secrets.items() if name in {"api_key", "api_secret", "totp_secret"}
    }
    assert set(forbidden) == {"api_key", "api_secret", "totp_secret"}
    for name, value in forbidden.items():
        for form, needle in _forms(value).items():
            assert needle not in dump, f"the dump holds the {name} ({form})"
    for needle in (kek.key, kek.key.hex().encode(), base64.b64encode(kek.key)):
        assert needle not in dump, "the dump holds the vault key"
