"""Throughput of campaigns: the number's cap is kept and reached, by one runner process or two, and a
killed runner loses nobody and sends nobody twice.

Runners and the Meta stand-in each run in a process of their own (at a raised CPU priority where allowed,
see `_dedicated`), so that what is measured is the bridge, not the other work on a shared test machine."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.campaigns.records import RunStatus
from scheduler.ratemath import max_in_window
from storage.models import CampaignRun
from tests import services
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

# What is asserted holds on any machine, however loaded: the cap where the stand-in counts arrivals, no
# 130429, everyone sent exactly once. The rate reached is a measurement and belongs to
# bench.campaign_throughput, which reports it against the cap.


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private real Redis for this module: other suites FLUSHDB the shared one mid-measurement."""
    with services.throwaway_redis() as url:
        yield url


def _assert_cap_kept_once_each(records: Records, audience: list[str], mps: int) -> None:
    times = [r.time for r in records.sends]
    assert records.throttle_hits == []  # the stand-in never had to refuse a send for throughput
    assert max_in_window(times) <= mps
    per = {w: len(records.sends_to(w)) for w in audience}
    assert all(n == 1 for n in per.values()), {w: n for w, n in per.items() if n != 1}


async def _run_to_completion(db: Any, run_id: int, timeout: float) -> None:  # noqa: ASYNC109
    for _ in range(int(timeout / 0.1)):
        async with db.sessions() as s:
            if (await s.get(CampaignRun, run_id)).status == RunStatus.DONE:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} not done within {timeout}s")


async def _stop(procs: list[asyncio.subprocess.Process]) -> list[tuple[bytes, bytes]]:
    outputs = []
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        outputs.append(await asyncio.wait_for(proc.communicate(), timeout=15))
    return outputs


def _sent_by(outputs: list[tuple[bytes, bytes]]) -> list[int]:
    return [int(out.decode().split("sent ")[-1].split()[0]) for out, _ in outputs]


@pytest.mark.parametrize(("mps", "seconds"), [(5, 3), (80, 2)])
async def test_runner_never_exceeds_the_cap_and_sends_each_once(
        tmp_path: Path, redis_url: str, redis_client: Any, mps: int, seconds: int) -> None:
    # SQLite here; PostgreSQL is what the two-process test below runs on.
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'runner.db'}"
    async with RemoteStandin(PNID, mps) as meta:
        db = await open_db(campaign_settings(db_url, graph_url=meta.base_url, mps=mps))
        runners = [await spawn_runner(db_url, redis_url, meta.base_url, mps, lease=60)]
        try:
            audience = numbers(mps * seconds + 1)
            run_id = await start_run(db, await make_campaign(db, audience, variables={"1": {"column": "name"}}))
            await _run_to_completion(db, run_id, seconds + 15)
        finally:
            outputs = await _stop(runners)
        records = await meta.records()

    _assert_cap_kept_once_each(records, audience, mps)
    assert _sent_by(outputs) == [len(audience)]
    rows = await recipients(db, run_id)
    assert {r.status for r in rows.values()} == {"sent"}
    assert {r.wamid for r in rows.values()} == {r.wamid for r in records.sends}
    await db.close()


@pytest.mark.postgres
@pytest.mark.parametrize(("mps", "seconds"), [(5, 3), (80, 2)])
async def test_two_runner_processes_share_the_cap(pg_url: str, redis_url: str, redis_client: Any,
                                                  mps: int, seconds: int) -> None:
    async with RemoteStandin(PNID, mps) as meta:
        db = await open_db(campaign_settings(pg_url, graph_url=meta.base_url, mps=mps))
        runners = list(await asyncio.gather(*(spawn_runner(pg_url, redis_url, meta.base_url, mps, lease=60)
                                              for _ in range(2))))
        try:
            audience = numbers(mps * seconds + 1)
            run_id = await start_run(db, await make_campaign(db, audience))
            await _run_to_completion(db, run_id, seconds + 15)
        finally:
            outputs = await _stop(runners)
        records = await meta.records()

    _assert_cap_kept_once_each(records, audience, mps)
    sent_by = _sent_by(outputs)
    assert sum(sent_by) == len(audience) and all(n > 0 for n in sent_by), (sent_by, outputs[0][1][-2000:])
    assert {r.status for r in (await recipients(db, run_id)).values()} == {"sent"}
    await db.close()


@pytest.mark.postgres
async def test_killed_runner_loses_nobody_and_sends_nobody_twice(pg_url: str, redis_url: str,
                                                                redis_client: Any) -> None:
    mps = 5
    async with RemoteStandin(PNID, mps) as meta:
        db = await open_db(campaign_settings(pg_url, graph_url=meta.base_url, mps=mps))
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
        restarted = [await spawn_runner(pg_url, redis_url, meta.base_url, mps, lease=1.0)]
        try:
            await _run_to_completion(db, run_id, 20)
        finally:
            await _stop(restarted)
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
