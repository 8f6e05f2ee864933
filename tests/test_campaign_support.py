"""Builders shared by the campaign tests (this module holds no tests of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.core.config import Settings
from scheduler.campaigns import jobs
from scheduler.campaigns import records as campaigns
from scheduler.campaigns.schedule import Schedule
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import AudienceMember, Campaign, CampaignRecipient, Contact, utcnow
from storage.repository import sync_channels
from tests.helpers import PNID, WA_TOKEN, WABA, make_settings

ROOT = Path(__file__).resolve().parent.parent


def campaign_settings(db_url: str, *, redis_url: str = "", graph_url: str = "http://127.0.0.1:9",
                      slack_url: str = "http://127.0.0.1:9/api/", mps: int = 5,
                      more_channels: list[dict[str, Any]] | None = None, **extra: Any) -> Settings:
    """One channel at the given cap (and any more_channels), pointed at the stand-ins."""
    channel = {"name": "lucknow", "phone_number_id": PNID, "waba_id": WABA, "mode": "coexistence", "mps": mps,
               "access_token": WA_TOKEN, "slack_channel": "C0LUCKNOW"}
    return make_settings(db_url, redis_url=redis_url, graph_url=graph_url, slack_url=slack_url,
                         channels=[channel, *(more_channels or [])], **extra)


@dataclass
class Db:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    channel_id: int

    async def close(self) -> None:
        await self.engine.dispose()


async def open_db(settings: Settings) -> Db:
    """Migrate the database and mirror the configured channels into it."""
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    ids = await sync_channels(sessions, settings.channels)
    return Db(engine, sessions, ids[PNID])


def numbers(n: int, start: int = 0) -> list[str]:
    """n valid Indian mobile WhatsApp IDs."""
    return [f"9198100{i:05d}" for i in range(start, start + n)]


async def make_campaign(db: Db, wa_ids: Iterable[str], *, category: str | None = "UTILITY",
                        variables: dict[str, Any] | None = None, schedule: Schedule | None = None,
                        fields: dict[str, str] | None = None, name: str = "Fee reminder",
                        now: datetime | None = None) -> int:
    """A scheduled campaign whose audience is wa_ids."""
    schedule = schedule or Schedule("now", "Asia/Kolkata", run_at=now or utcnow())
    async with db.sessions() as s, s.begin():
        c = await campaigns.create_draft(s, name=name, channel_id=db.channel_id, template_name="fee_reminder",
                                         language="en", category=category, variables=variables or {},
                                         schedule=schedule, created_by="UMANAGER", slack_channel=None)
        if now is not None:
            c.created_at = now
        s.add_all([AudienceMember(campaign_id=c.id, wa_id=w, fields=dict(fields or {"name": f"N{w[-3:]}"}))
                   for w in wa_ids])
        cid = c.id
    await campaigns.activate(db.sessions, cid, now=now)
    return cid


async def start_run(db: Db, campaign_id: int) -> int:
    """Fire a campaign now; returns the run id."""
    async with db.sessions() as s:
        c = await s.get(Campaign, campaign_id)
        assert c is not None and c.run_at is not None
        at = c.run_at
    run_id = await jobs.fire(db.sessions, campaign_id, at)
    assert run_id is not None
    return run_id


async def recipients(db: Db, run_id: int) -> dict[str, CampaignRecipient]:
    async with db.sessions() as s:
        rows = (await s.scalars(select(CampaignRecipient).where(CampaignRecipient.run_id == run_id))).all()
    return {r.wa_id: r for r in rows}


async def opt_out(db: Db, wa_ids: Iterable[str]) -> None:
    async with db.sessions() as s, s.begin():
        s.add_all([Contact(wa_id=w, opted_out=True, opted_out_at=utcnow(), opt_out_reason="STOP")
                   for w in wa_ids])


class ThreadedStandin:
    """Runs a stand-in server on its own event loop in a thread, so that its clock of arrivals is not
    held up by whatever the test's own event loop is busy with (as Meta's is not)."""

    def __init__(self, standin: Any) -> None:
        self.standin = standin
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="standin", daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.standin.start(), self._loop).result(timeout=10)
        return self.standin

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.standin.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


STANDIN_PROCESS = r"""
import asyncio, signal, sys
from aiohttp import web
from bot.standins.graph import GraphStandin

class Recorded(GraphStandin):
    def _routes(self, app):
        super()._routes(app)
        app.router.add_get("/_records", self._records)

    async def _records(self, request):
        def rows(records):
            return [{"time": r.time, "to": r.to, "wamid": r.wamid, "error_code": r.error_code} for r in records]
        return web.json_response({"sends": rows(self.sends), "rejected": rows(self.rejected),
                                  "throttle_hits": rows(self.throttle_hits)})

async def main(pnid, mps):
    standin = Recorded()
    standin.set_mps(pnid, float(mps))
    print(await standin.start(), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await standin.stop()

asyncio.run(main(*sys.argv[1:]))
"""


@dataclass(frozen=True)
class Record:
    time: float  # time.monotonic() in the stand-in's process (the same clock system-wide)
    to: str
    wamid: str | None
    error_code: int | None


@dataclass
class Records:
    sends: list[Record]
    rejected: list[Record]
    throttle_hits: list[Record]

    def sends_to(self, to: str) -> list[Record]:
        return [r for r in self.sends if r.to == to]


def _dedicated() -> None:
    """Run a child at a higher CPU priority where allowed, as on a server of its own.

    The tests share a small machine with whatever else runs on it. Meta does not share the senders' CPU:
    a descheduled stand-in would read a backlog of requests at once and stamp them as arriving together.
    A sender descheduled between its throttle grant and its request delays that request by more than the
    throttle's margin for jitter, which a production server is not expected to do.
    """
    with contextlib.suppress(OSError):
        os.nice(-10)


class RemoteStandin:
    """The Graph stand-in in a process of its own, enforcing a cap, as Meta is a separate system: its
    clock of arrivals is not held up by the event loop or the CPU share of the senders under test."""

    def __init__(self, phone_number_id: str, mps: int) -> None:
        self.args = (phone_number_id, str(mps))
        self.base_url = ""
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> RemoteStandin:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", STANDIN_PROCESS, *self.args, cwd=str(ROOT), env=env,
            stdout=asyncio.subprocess.PIPE, preexec_fn=_dedicated)
        assert self._proc.stdout is not None
        self.base_url = (await asyncio.wait_for(self._proc.stdout.readline(), timeout=30)).decode().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError("Graph stand-in process did not start")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self._proc.wait(), timeout=10)

    async def records(self) -> Records:
        async with httpx.AsyncClient() as client:
            data = (await client.get(f"{self.base_url}/_records")).json()
        return Records(*([Record(**r) for r in data[k]] for k in ("sends", "rejected", "throttle_hits")))


RUNNER_PROCESS = r"""
import asyncio, signal, sys
from bot.meta.graph import GraphClient
from bot.core.metrics import Metrics
from bot.meta.sender import TemplateSender
from scheduler.campaigns.runner import CampaignRunner, RunnerConfig
import redis.asyncio as aioredis
from scheduler.campaigns.runner import campaign_throttle
from storage.db import make_engine, make_sessionmaker
from tests.test_campaign_support import campaign_settings

async def main(db_url, redis_url, graph_url, mps, lease):
    settings = campaign_settings(db_url, redis_url=redis_url, graph_url=graph_url, mps=int(mps))
    engine = make_engine(db_url)
    metrics = Metrics()
    throttle = campaign_throttle(aioredis.from_url(redis_url))
    runner = CampaignRunner(make_sessionmaker(engine), GraphClient(graph_url, "v23.0"), throttle,
                            settings, metrics=metrics, config=RunnerConfig(lease=float(lease), poll=0.1),
                            sender=TemplateSender(graph_url, "v23.0"))
    task = asyncio.ensure_future(runner.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    print("ready", flush=True)
    try:
        await task
    except asyncio.CancelledError:
        pass
    sent = metrics.whatsapp_sends.labels("lucknow", "campaign", "sent")._value.get()
    print(f"sent {int(sent)}", flush=True)
    await engine.dispose()

asyncio.run(main(*sys.argv[1:]))
"""


async def spawn_runner(db_url: str, redis_url: str, graph_url: str, mps: int, lease: float
                       ) -> asyncio.subprocess.Process:
    """A campaign runner in its own process, sharing the database, Redis and the Graph stand-in."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUNNER_PROCESS, db_url, redis_url, graph_url, str(mps), str(lease),
        cwd=str(ROOT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_dedicated)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    if line.strip() != b"ready":
        err = await proc.stderr.read() if proc.stderr else b""
        raise RuntimeError(f"runner process did not start: {line!r} {err.decode()[-2000:]}")
    return proc
