"""Throughput of campaigns: the number's cap is kept and reached, by one runner or two processes, and a
killed runner loses nobody and sends nobody twice. Meta is a stand-in in its own process."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from bot.meta.graph import GraphClient
from scheduler.campaigns import RunStatus
from scheduler.ratemath import achieved_rate, max_in_window
from scheduler.runner import CampaignRunner, RunnerConfig
from scheduler.throttle import RedisThrottle
from storage.models import CampaignRun
from tests.helpers import PNID
from tests.test_campaign_support import (
    Records,
    RemoteStandin,
    campaign_settings,
    make_campaign,
    numbers,
    open_db,
    recipients,
    spawn_runner,
    start_run,
)

pytestmark = pytest.mark.redis


def _assert_cap_kept_and_reached(records: Records, audience: list[str], mps: int) -> None:
    times = [r.time for r in records.sends]
    assert records.throttle_hits == []  # the stand-in never had to refuse a send for throughput
    assert max_in_window(times) <= mps
    assert achieved_rate(times) >= 0.95 * mps, achieved_rate(times)
    per = {w: len(records.sends_to(w)) for w in audience}
    assert all(n == 1 for n in per.values()), {w: n for w, n in per.items() if n != 1}


@pytest.mark.parametrize(("mps", "seconds"), [(5, 3), (80, 2)])
async def test_runner_never_exceeds_the_cap_and_reaches_95_percent_of_it(
        db_url: str, redis_client: Any, mps: int, seconds: int) -> None:
    async with RemoteStandin(PNID, mps) as meta:
        settings = campaign_settings(db_url, graph_url=meta.base_url, mps=mps)
        db = await open_db(settings)
        runner = CampaignRunner(db.sessions, GraphClient(meta.base_url, "v23.0"), RedisThrottle(redis_client),
                                settings, config=RunnerConfig(poll=0.1))
        audience = numbers(mps * seconds + 1)
        run_id = await start_run(db, await make_campaign(db, audience, variables={"1": {"column": "name"}}))
        await asyncio.wait_for(runner.drive(run_id), timeout=seconds + 15)
        records = await meta.records()

    _assert_cap_kept_and_reached(records, audience, mps)
    rows = await recipients(db, run_id)
    assert {r.status for r in rows.values()} == {"sent"}
    assert {r.wamid for r in rows.values()} == {r.wamid for r in records.sends}
    async with db.sessions() as s:
        assert (await s.get(CampaignRun, run_id)).status == RunStatus.DONE  # type: ignore[union-attr]
    await db.close()


@pytest.mark.postgres
@pytest.mark.parametrize(("mps", "seconds"), [(5, 3), (80, 2)])
async def test_two_runner_processes_share_the_cap(pg_url: str, redis_url: str, redis_client: Any,
                                                  mps: int, seconds: int) -> None:
    async with RemoteStandin(PNID, mps) as meta:
        settings = campaign_settings(pg_url, graph_url=meta.base_url, mps=mps)
        db = await open_db(settings)
        runner = CampaignRunner(db.sessions, GraphClient(meta.base_url, "v23.0"), RedisThrottle(redis_client),
                                settings, config=RunnerConfig(poll=0.1))
        other = await spawn_runner(pg_url, redis_url, meta.base_url, mps, lease=60)
        try:
            audience = numbers(mps * seconds + 1)
            run_id = await start_run(db, await make_campaign(db, audience))
            await asyncio.wait_for(runner.drive(run_id), timeout=seconds + 15)
            for _ in range(100):  # the other process may still be writing its last results
                if {r.status for r in (await recipients(db, run_id)).values()} == {"sent"}:
                    break
                await asyncio.sleep(0.05)
        finally:
            other.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(other.communicate(), timeout=15)
        records = await meta.records()

    _assert_cap_kept_and_reached(records, audience, mps)
    by_other = int(out.decode().split("sent ")[-1].split()[0])
    assert 0 < by_other < len(audience), (out, err[-2000:])
    await db.close()


@pytest.mark.postgres
async def test_killed_runner_loses_nobody_and_sends_nobody_twice(pg_url: str, redis_url: str,
                                                                redis_client: Any) -> None:
    mps = 5
    async with RemoteStandin(PNID, mps) as meta:
        settings = campaign_settings(pg_url, graph_url=meta.base_url, mps=mps)
        db = await open_db(settings)
        audience = numbers(15)
        run_id = await start_run(db, await make_campaign(db, audience))
        proc = await spawn_runner(pg_url, redis_url, meta.base_url, mps, lease=1.0)
        try:
            for _ in range(300):
                if len((await meta.records()).sends) >= 4:
                    break
                await asyncio.sleep(0.05)
            proc.kill()  # SIGKILL: no clean-up at all
        finally:
            await proc.wait()
        sent_before = len((await meta.records()).sends)
        assert 0 < sent_before < len(audience)

        # Restart: recovery turns what the dead process had in flight `unknown`; the rest are sent.
        restarted = CampaignRunner(db.sessions, GraphClient(meta.base_url, "v23.0"), RedisThrottle(redis_client),
                                   settings, config=RunnerConfig(lease=1.0, poll=0.1))
        task = asyncio.create_task(restarted.run())
        try:
            for _ in range(400):
                async with db.sessions() as s:
                    if (await s.get(CampaignRun, run_id)).status == RunStatus.DONE:  # type: ignore[union-attr]
                        break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        records = await meta.records()

    rows = await recipients(db, run_id)
    statuses = {w: r.status for w, r in rows.items()}
    assert set(statuses.values()) <= {"sent", "unknown"}  # nobody left pending or in flight
    unknown = [w for w, st in statuses.items() if st == "unknown"]
    assert len(unknown) <= 2  # at 5 mps: one being sent, at most one claimed behind it
    for w in audience:
        n = len(records.sends_to(w))
        assert n <= 1, f"{w} sent {n} times"
        if statuses[w] == "sent":
            assert n == 1 and records.sends_to(w)[0].wamid == rows[w].wamid
    assert len(records.sends) >= len(audience) - len(unknown)
    await db.close()
