"""The campaign runner against real Redis, real databases and a Graph stand-in that enforces the cap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.meta.graph import GraphClient
from bot.standins.graph import GraphStandin
from scheduler.campaigns import records as campaigns
from scheduler.campaigns.records import CampaignStatus, RunStatus
from scheduler.campaigns.runner import CampaignRunner, RunnerConfig, campaign_throttle
from scheduler.campaigns.variables import components_for
from scheduler.throttle import Throttle
from storage.model_base import as_utc
from storage.models import Campaign, CampaignRecipient, CampaignRun, Contact, SlackOutbox, utcnow
from storage.send_errors import counts_since
from tests import services
from tests.harness import eventually
from tests.helpers import PNID
from tests.test_campaign_support import (
    Db,
    ThreadedStandin,
    campaign_settings,
    make_campaign,
    numbers,
    open_db,
    opt_out,
    recipients,
    start_run,
)

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private real Redis for this module: other suites FLUSHDB the shared one mid-measurement."""
    with services.throwaway_redis() as url:
        yield url


class RecordingThrottle:
    """The real Redis throttle, noting every penalty it is asked for."""

    def __init__(self, inner: Throttle) -> None:
        self.inner = inner
        self.penalties: list[tuple[str, float]] = []

    async def acquire(self, key: str, mps: int, priority: Any = None,
                      timeout: float | None = None) -> None:  # noqa: ASYNC109 - mirrors Throttle
        await self.inner.acquire(key, mps, priority, timeout)

    async def try_slots(self, key: str, mps: int, want: int, **kwargs: Any) -> tuple[list[str], float]:
        return await self.inner.try_slots(key, mps, want, **kwargs)

    async def acquire_slots(self, key: str, mps: int, want: int, **kwargs: Any) -> list[str]:
        return await self.inner.acquire_slots(key, mps, want, **kwargs)

    async def settle(self, key: str, settled: Any, unused: Any = ()) -> None:
        await self.inner.settle(key, settled, unused)

    async def penalize(self, key: str, seconds: float) -> None:
        self.penalties.append((key, seconds))
        await self.inner.penalize(key, seconds)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
def graph() -> Iterator[GraphStandin]:
    with ThreadedStandin(GraphStandin()) as standin:
        yield standin


async def _setup(db_url: str, redis_client: Any, standin: GraphStandin, mps: int,
                 config: RunnerConfig | None = None) -> tuple[Db, CampaignRunner, RecordingThrottle]:
    standin.set_mps(PNID, mps)
    settings = campaign_settings(db_url, graph_url=standin.base_url, mps=mps)
    db = await open_db(settings)
    throttle = RecordingThrottle(campaign_throttle(redis_client))
    graph_client = GraphClient(standin.base_url, "v23.0")
    runner = CampaignRunner(db.sessions, graph_client, throttle, settings,
                            config=config or RunnerConfig(poll=0.1))
    return db, runner, throttle


def _assert_each_sent_once(standin: GraphStandin, wa_ids: list[str]) -> None:
    per = {w: len(standin.sends_to(w)) for w in wa_ids}
    assert all(n == 1 for n in per.values()), {w: n for w, n in per.items() if n != 1}


def test_mapped_column_becomes_the_body_parameter() -> None:
    fields = {"name": "Ravi", "batch": "B7"}
    mapping = {"2": {"text": "Monday"}, "1": {"column": "name"}, "3": {"column": "batch"}}
    assert components_for(mapping, fields) == [{"type": "body", "parameters": [
        {"type": "text", "text": "Ravi"}, {"type": "text", "text": "Monday"}, {"type": "text", "text": "B7"}]}]
    assert components_for({}, fields) == []


async def test_throughput_error_slows_the_number_and_retries_the_same_recipient(
        db_url: str, redis_client: Any, graph: GraphStandin) -> None:
    db, runner, throttle = await _setup(db_url, redis_client, graph, 80,
                                        RunnerConfig(poll=0.1, penalty=0.2, workers=1, batch=1))
    audience = numbers(4)
    graph.fail_next(PNID, to=audience[1], code=130429, times=2)
    run_id = await start_run(db, await make_campaign(db, audience))
    await asyncio.wait_for(runner.drive(run_id), timeout=15)

    assert [k for k, _ in throttle.penalties] == [PNID, PNID]
    assert throttle.penalties[1][1] > throttle.penalties[0][1]  # repeated 130429 holds longer
    _assert_each_sent_once(graph, audience)
    rejected = [r for r in graph.rejected if r.to == audience[1]]
    assert [r.error_code for r in rejected] == [130429, 130429]
    # The retry waited out the penalty; nothing was sent in between.
    assert graph.sends_to(audience[1])[0].time - rejected[-1].time >= 0.35
    assert {r.status for r in (await recipients(db, run_id)).values()} == {"sent"}
    await db.close()


async def test_pair_rate_limit_retries_that_recipient_later_and_others_go_on(
        db_url: str, redis_client: Any, graph: GraphStandin) -> None:
    # The limited recipient is due again an hour later: every other recipient is sent while it waits, however
    # slowly they go. The test then brings its due time forward rather than waiting the hour.
    pair_retry = 3600.0
    db, runner, throttle = await _setup(db_url, redis_client, graph, 80,
                                        RunnerConfig(poll=0.1, pair_retry=pair_retry, workers=1, batch=1))
    audience = numbers(6)
    graph.fail_next(PNID, to=audience[0], code=131056, times=1)
    run_id = await start_run(db, await make_campaign(db, audience))
    started = utcnow()
    drive = asyncio.create_task(runner.drive(run_id))
    try:
        async def others_sent_while_deferred() -> Any:
            rows = await recipients(db, run_id)
            limited = rows[audience[0]]
            done = all(rows[w].status == "sent" for w in audience[1:])
            return done and limited.status == "pending" and limited.next_attempt_at is not None and limited

        limited = await eventually(others_sent_while_deferred, timeout=60)
        assert graph.sends_to(audience[0]) == []  # nobody waited for the limited recipient
        assert as_utc(limited.next_attempt_at) - started >= timedelta(seconds=pair_retry)
        assert not drive.done()  # the run waits for its deferred recipient
        async with db.sessions() as s, s.begin():  # the hour has passed
            await s.execute(update(CampaignRecipient).where(CampaignRecipient.id == limited.id)
                            .values(next_attempt_at=utcnow()))
        await asyncio.wait_for(asyncio.shield(drive), timeout=60)
    finally:
        drive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drive

    _assert_each_sent_once(graph, audience)
    rejected = next(r for r in graph.rejected if r.to == audience[0])
    retried = graph.sends_to(audience[0])[0]
    others = [s for s in graph.sends if s.to != audience[0]]
    assert rejected.time < retried.time
    assert all(s.time < retried.time for s in others)
    assert throttle.penalties == []
    rows = await recipients(db, run_id)
    assert rows[audience[0]].status == "sent" and rows[audience[0]].attempts == 2
    await db.close()


async def test_payment_error_pauses_the_campaign_alerts_and_resume_finishes_it(
        db_url: str, redis_client: Any, graph: GraphStandin) -> None:
    db, runner, _ = await _setup(db_url, redis_client, graph, 80, RunnerConfig(poll=0.1, workers=1, batch=1))
    audience = numbers(6)
    graph.fail_next(PNID, to=audience[2], code=131042, times=1)
    cid = await make_campaign(db, audience)
    run_id = await start_run(db, cid)
    await asyncio.wait_for(runner.drive(run_id), timeout=15)

    assert [s.to for s in graph.sends] == audience[:2]
    async with db.sessions() as s:
        camp = await s.get(Campaign, cid)
        run = await s.get(CampaignRun, run_id)
        alerts = (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == "alert"))).all()
    assert camp is not None and run is not None
    assert (camp.status, run.status) == (CampaignStatus.PAUSED, RunStatus.PAUSED)
    assert "payment" in (camp.pause_reason or "")
    assert len(alerts) == 1 and alerts[0].thread_key == "alerts" and f"#{cid}" in alerts[0].payload["text"]
    rows = await recipients(db, run_id)
    assert rows[audience[2]].status == "pending" and rows[audience[2]].error_code == 131042

    assert "resumed" in await campaigns.resume(db.sessions, cid)
    await asyncio.wait_for(runner.drive(run_id), timeout=15)
    _assert_each_sent_once(graph, audience)
    async with db.sessions() as s:
        assert (await s.get(Campaign, cid)).status == CampaignStatus.DONE  # type: ignore[union-attr]
    await db.close()


async def test_recipient_errors_fail_with_reason_and_131050_opts_out(
        db_url: str, redis_client: Any, graph: GraphStandin) -> None:
    db, runner, _ = await _setup(db_url, redis_client, graph, 80)
    audience = numbers(5)
    codes = {audience[0]: 131026, audience[1]: 131049, audience[2]: 131050, audience[3]: 131051}
    for wa_id, code in codes.items():
        graph.fail_recipient(wa_id, code)
    run_id = await start_run(db, await make_campaign(db, audience))
    await asyncio.wait_for(runner.drive(run_id), timeout=15)

    rows = await recipients(db, run_id)
    for wa_id, code in codes.items():
        assert (rows[wa_id].status, rows[wa_id].error_code) == ("failed", code)
        assert rows[wa_id].error_title
        assert len([r for r in graph.rejected if r.to == wa_id]) == 1  # never retried
    assert rows[audience[4]].status == "sent"
    async with db.sessions() as s:
        opted = (await s.scalars(select(Contact.wa_id).where(Contact.opted_out.is_(True)))).all()
    assert opted == [audience[2]]
    await db.close()


@pytest.mark.parametrize(("category", "skipped"), [("MARKETING", True), (None, True), ("UTILITY", False)])
async def test_opted_out_contacts_get_no_marketing(db_url: str, redis_client: Any, graph: GraphStandin,
                                                   category: str | None, skipped: bool) -> None:
    db, runner, _ = await _setup(db_url, redis_client, graph, 80)
    audience = numbers(5)
    await opt_out(db, audience[:2])
    run_id = await start_run(db, await make_campaign(db, audience, category=category))
    await opt_out(db, audience[2:3])  # opted out after the run started: still honoured
    await asyncio.wait_for(runner.drive(run_id), timeout=15)

    rows = await recipients(db, run_id)
    if skipped:
        assert {w for w, r in rows.items() if r.status == "skipped"} == set(audience[:3])
        assert sorted(s.to for s in graph.sends) == audience[3:]  # concurrent senders: any order
    else:
        assert {r.status for r in rows.values()} == {"sent"}
    await db.close()


async def test_pause_stops_sending_within_a_second_and_cancel_skips_the_rest(
        db_url: str, redis_client: Any, graph: GraphStandin) -> None:
    db, runner, _ = await _setup(db_url, redis_client, graph, 5)
    audience = numbers(30)
    cid = await make_campaign(db, audience)
    run_id = await start_run(db, cid)
    task = asyncio.create_task(runner.drive(run_id))
    await eventually(lambda: len(graph.sends) >= 3)
    await campaigns.pause(db.sessions, cid, "checking the wording")
    paused_at = asyncio.get_running_loop().time()
    await asyncio.wait_for(task, timeout=30)
    loop_start = graph.sends[0].time  # stand-in times are time.monotonic(), like the loop clock
    assert all(s.time - loop_start <= paused_at - loop_start + 1.0 for s in graph.sends)
    sent = len(graph.sends)
    assert sent < 10

    assert "cancelled" in await campaigns.cancel(db.sessions, cid)
    rows = await recipients(db, run_id)
    assert sum(r.status == "sent" for r in rows.values()) == sent
    assert {r.status for r in rows.values()} == {"sent", "skipped"}
    await runner.drive(run_id)  # nothing more goes out
    assert len(graph.sends) == sent
    await db.close()


async def test_read_timeout_marks_unknown_instead_of_sending_twice(
        db_url: str, redis_client: Any, graph: GraphStandin) -> None:
    db, _, _ = await _setup(db_url, redis_client, graph, 80)
    settings = campaign_settings(db_url, graph_url=graph.base_url, mps=80)
    slow = GraphClient(graph.base_url, "v23.0", timeout=0.2)
    runner = CampaignRunner(db.sessions, slow, campaign_throttle(redis_client), settings, config=RunnerConfig(poll=0.1))
    graph.set_latency(0.4)
    audience = numbers(1)
    run_id = await start_run(db, await make_campaign(db, audience))
    await asyncio.wait_for(runner.drive(run_id), timeout=10)
    graph.set_latency(0)
    await asyncio.sleep(0.3)
    rows = await recipients(db, run_id)
    # Meta may have taken the request it did not answer: the recipient is not tried again.
    assert (rows[audience[0]].status, rows[audience[0]].attempts) == ("unknown", 1)
    assert graph.sends_to(audience[0]) == []
    await slow.aclose()
    await db.close()


async def test_an_answer_lost_after_the_send_marks_unknown_and_throughput_refusals_are_kept_counted(
        db_url: str, redis_client: Any, graph: GraphStandin) -> None:
    db, runner, _ = await _setup(db_url, redis_client, graph, 80,
                                 RunnerConfig(poll=0.1, penalty=0.05, workers=1, batch=1))
    audience = numbers(3)
    graph.fail_next(PNID, to=audience[0], code=130429)
    graph.fail_next(PNID, to=audience[2], code=131056)
    run_id = await start_run(db, await make_campaign(db, audience))
    graph.drop_answer_next()  # the first send Meta takes gets no answer (connection reset)
    await asyncio.wait_for(runner.drive(run_id), timeout=20)
    rows = await recipients(db, run_id)
    unknown = [w for w, r in rows.items() if r.status == "unknown"]
    assert len(unknown) == 1 and rows[unknown[0]].attempts == 1
    assert len(graph.sends_to(unknown[0])) == 1  # Meta has it once; it was not sent again
    assert {r.status for w, r in rows.items() if w not in unknown} == {"sent"}
    async with db.sessions() as s:
        counts = await counts_since(s, utcnow() - timedelta(hours=1))
    # Both refusals stay counted although both recipients were sent in the end.
    assert sorted(code for (_, code) in counts) == [130429, 131056] and set(counts.values()) == {1}
    await db.close()
