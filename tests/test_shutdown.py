"""Shutdown in order: a campaign firing still running when the scheduler stops ends without an APScheduler
error, and background tasks are cancelled only while no database connection is in use."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web

from bot.app.shutdown import stop_tasks
from bot.handlers import appkeys
from scheduler.campaigns.jobs import CampaignScheduler
from storage.db import make_engine, make_sessionmaker, migrate
from tests.harness import eventually


class _SlowScheduler(CampaignScheduler):
    """Its periodic sync, once `slow` is set, outlasts stop()'s grace."""

    slow = False
    started = asyncio.Event()

    async def sync(self) -> list[int]:
        if self.slow:
            self.started.set()
            await asyncio.Event().wait()
        return await super().sync()


async def test_a_firing_cut_short_at_stop_is_not_logged_as_an_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    await migrate(url)
    engine = make_engine(url)
    try:
        sched = _SlowScheduler(make_sessionmaker(engine), sync_interval=0.05)
        sched.started = asyncio.Event()
        await sched.start()
        sched.slow = True
        await asyncio.wait_for(sched.started.wait(), 10)
        with caplog.at_level(logging.INFO):
            await sched.stop()  # waits its grace (5 s) for the firing, then cuts it short
            # APScheduler reports a job's end on the loop's next turns
            await eventually(lambda: any("stopped at shutdown" in r.getMessage() for r in caplog.records))
    finally:
        await engine.dispose()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert any("stopped at shutdown" in r.getMessage() for r in caplog.records)


async def test_tasks_are_cancelled_only_once_no_connection_is_in_use(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(url)
    app = web.Application()
    app[appkeys.ENGINE] = engine
    release, held = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def busy() -> None:
        async with engine.connect() as conn:
            held.set()
            await release.wait()
            await conn.exec_driver_sql("SELECT 1")
            # Noted inside the block: once the connection is back in the pool the task may be cancelled at once,
            # before it runs the code after the block.
            finished.append("statement done")
        await asyncio.Event().wait()

    task = asyncio.create_task(busy())
    await asyncio.wait_for(held.wait(), 10)  # the connection is checked out (opening it can take a while)
    stopping = asyncio.create_task(stop_tasks(app, task))
    await asyncio.sleep(0.2)
    assert not task.done()  # holding a connection: not cancelled yet
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert task.cancelled() and finished == ["statement done"]
    await engine.dispose()
