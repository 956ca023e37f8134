"""Fixtures (a pytest plugin, see tests/conftest.py): a real sim venue on loopback, a migrated SQLite
database, and the links service between them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.engine.links.service import BrokerLinks, NewLink
from brokerlink.kit.clock import SystemClock
from brokerlink.security.vault import LocalKeyFile, Vault
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.repositories.users import UserRepository
from tests.contract.harness import SimHarness, sim_venue

API_KEY = "conf-key"  # the harness venue's account (tests/contract/harness.py)
API_SECRET = "conf-secret"

LinksFactory = Callable[[], BrokerLinks]


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue() as harness:
        yield harness


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'links.db'}"
    await upgrade(url)
    db = Database(url)
    yield db
    await db.dispose()


@pytest.fixture
async def user_id(database: Database) -> str:
    async with database.session() as session:
        row = await UserRepository(session).create(
            email="trader@example.com", display_name="Trader", password_hash="x", now=SystemClock().now()
        )
        await session.commit()
        return row.id


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault(LocalKeyFile(tmp_path / "vault-keys.json"))


@pytest.fixture
async def bus() -> AsyncIterator[MemoryEventBus]:
    async with MemoryEventBus() as b:
        yield b


@pytest.fixture
async def make_links(database: Database, bus: MemoryEventBus, vault: Vault) -> AsyncIterator[LinksFactory]:
    """``make_links()``: a new (not started) links service; every one made is stopped at the end."""
    made: list[BrokerLinks] = []

    def factory() -> BrokerLinks:
        links = BrokerLinks(database, bus, vault, SystemClock(), retry_max_s=0.2)
        made.append(links)
        return links

    yield factory
    for links in made:
        await links.stop()


def new_link(venue: SimHarness, **changes: object) -> NewLink:
    values: dict[str, object] = {
        "broker": "sim",
        "label": "Sim FX",
        "base_url": venue.base_url,
        "credentials": {"api_key": API_KEY},
    }
    return NewLink(**(values | changes))  # type: ignore[arg-type]
