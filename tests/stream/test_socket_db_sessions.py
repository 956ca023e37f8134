"""An open socket holds no database connection: authentication gives its session back at the handshake.

Otherwise every open socket pins one pooled connection for its whole life, and the pool (10 + 10 on
PostgreSQL) runs dry at the 21st socket while requests wait for a connection.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from brokerlink.store.db import Database
from tests.api.resource_support import grant
from tests.stream.support import welcome, with_cookie, with_token, world


async def test_open_sockets_hold_no_pooled_connection(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        database: Database = w.app.state.db
        g = await grant(w.app, email="alice@example.com", scopes=["accounts:read"], account_ids=[w.mine])
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):  # by session cookie and by DPoP-bound token
                await welcome(await stack.enter_async_context(with_cookie(w)))
            await welcome(await stack.enter_async_context(with_token(w, g)))
            assert database.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
