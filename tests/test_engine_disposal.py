"""Database engines are disposed of even when what uses them fails: an engine left open keeps SQLite connections
whose worker threads outlive the event loop (and report into a closed one)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import text

import bot.app.factory as factory
from bot.app.factory import create_app
from bot.handlers import appkeys
from storage.db import migrate_sync
from tests.helpers import make_settings


async def test_an_app_whose_start_up_fails_after_opening_its_database_disposes_of_its_engine(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing_sync(sessions: Any, *args: Any, **kwargs: Any) -> dict[str, int]:
        async with sessions() as s:
            await s.execute(text("SELECT 1"))  # the pool now holds a connection
        raise RuntimeError("channels could not be synced")

    monkeypatch.setattr(factory, "sync_channels", failing_sync)
    app = create_app(make_settings(db_url), workers=False)
    runner = web.AppRunner(app)
    with pytest.raises(RuntimeError, match="could not be synced"):
        await runner.setup()
    await runner.cleanup()
    assert app[appkeys.ENGINE].pool.checkedin() == 0  # disposed: nothing left open


def test_a_failing_migration_leaves_no_connection_open(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.ext.asyncio import AsyncEngine

    disposed: list[AsyncEngine] = []
    real_dispose = AsyncEngine.dispose

    async def noting_dispose(self: AsyncEngine, close: bool = True) -> None:
        disposed.append(self)
        await real_dispose(self, close)

    monkeypatch.setattr(AsyncEngine, "dispose", noting_dispose)
    with pytest.raises(Exception, match="nonexistent"):
        migrate_sync(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", "nonexistent")
    assert disposed
