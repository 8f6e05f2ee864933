"""The Slack pacer learns a stricter limit from 429s and probes back up; in Redis every process shares it."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bot.slack.pace_redis import RedisPaces
from bot.slack.pace_store import LocalPaces
from bot.slack.pacer import Pacer
from bot.slack.pacing import PROBE_AFTER, PROBE_PAST, SLACK_LIMITS, Learned, Limit, cut, nominal, probe
from tests import services

POST = "chat.postMessage"
DOCUMENTED = SLACK_LIMITS[POST]  # one per second, burst 2 (one of them kept for urgent calls)
FAST = Limit(1000.0, 2, per_channel=True)  # the same shape, fast enough that a test never waits for it


def _profile(team: str) -> tuple[str, str]:
    return (POST, f"workspace:{team}")


# ---- the rules (pure) ----------------------------------------------------------------------------


def _climb(learned: Learned, limit: Limit, calls: int) -> Learned:
    for _ in range(calls):
        learned = probe(learned, limit)
    return learned


def test_a_429_cuts_rate_and_burst_and_remembers_the_level_refused() -> None:
    once = cut(nominal(DOCUMENTED), DOCUMENTED)
    assert (once.rate, once.burst) == (pytest.approx(0.8), 1.0)
    assert (once.ceiling_rate, once.ceiling_burst) == (1.0, 2.0)
    twice = cut(once, DOCUMENTED)
    assert twice.rate == pytest.approx(0.64) and twice.burst == 1.0
    floor = nominal(DOCUMENTED)
    for _ in range(50):
        floor = cut(floor, DOCUMENTED)
    assert floor.rate == pytest.approx(0.5) and floor.burst == 1.0  # never below half the documented rate


def test_probing_climbs_quickly_below_the_refused_level_and_slowly_to_it() -> None:
    learned = cut(nominal(DOCUMENTED), DOCUMENTED)  # refused at (1/s, burst 2): now 0.8/s, burst 1
    assert _climb(learned, DOCUMENTED, PROBE_AFTER - 1).rate == pytest.approx(0.8)
    learned = _climb(learned, DOCUMENTED, PROBE_AFTER)
    assert learned.rate == pytest.approx(0.88)
    learned = _climb(learned, DOCUMENTED, 2 * PROBE_AFTER)  # 0.968, then 1.0: still below burst 2
    assert (learned.rate, learned.burst) == (1.0, 1.0)
    # Burst 2 is the level Slack refused: only after many calls through does the pacer try it again.
    assert _climb(learned, DOCUMENTED, PROBE_PAST - 1).burst == 1.0
    back = _climb(learned, DOCUMENTED, PROBE_PAST)
    assert back.at_nominal(DOCUMENTED) and back == nominal(DOCUMENTED)


def test_a_strict_channel_settles_below_its_limit_refusing_few_calls() -> None:
    """Slack allows 0.9/s with no burst: simulate a long run and count the calls refused."""
    limit, allowed = DOCUMENTED, 0.9
    learned, refused, calls = nominal(limit), 0, 3000
    for _ in range(calls):
        if learned.rate > allowed or learned.burst > 1:
            refused += 1
            learned = cut(learned, limit)
        else:
            learned = probe(learned, limit)
    assert refused / calls <= 0.01


# ---- in one process --------------------------------------------------------------------------------


def test_a_channels_429_spares_the_other_channels_of_its_workspace_theirs() -> None:
    paces = LocalPaces()
    paces.refused_at(0.0, (POST, "C1"), DOCUMENTED, 1.0, _profile("T1"))
    other = paces.take_at(0.0, (POST, "C2"), DOCUMENTED, True, _profile("T1"))
    assert (other.wait, other.rate, other.burst) == (0.0, pytest.approx(0.8), 1.0)
    assert paces.take_at(0.0, (POST, "C2"), DOCUMENTED, True, _profile("T1")).wait > 1.0  # no second burst slot
    elsewhere = paces.take_at(0.0, (POST, "C3"), DOCUMENTED, True, _profile("T2"))
    assert (elsewhere.rate, elsewhere.burst) == (1.0, 2.0)  # another workspace keeps the documented limit


def test_calls_refused_together_cut_once() -> None:
    paces = LocalPaces()
    for _ in range(3):  # three posts granted before the first 429 came back
        paces.refused_at(5.0, (POST, "C1"), DOCUMENTED, 1.0, _profile("T1"))
    grant = paces.take_at(7.0, (POST, "C1"), DOCUMENTED, True, _profile("T1"))
    assert grant.rate == pytest.approx(0.8) and grant.burst == 1.0


HISTORY = SLACK_LIMITS["conversations.history"]


def test_a_method_tiers_429_pauses_it_without_lowering_it() -> None:
    paces = LocalPaces()
    key = ("conversations.history", "workspace:T1")
    for at in (0.0, 2.0, 4.0):  # a storm: each retry after Retry-After is refused again
        paces.refused_at(at, key, HISTORY, 1.0, None)
    assert paces.take_at(4.5, key, HISTORY, True, None).paused == pytest.approx(0.5)
    grant = paces.take_at(6.0, key, HISTORY, True, None)
    assert (grant.rate, grant.burst) == (pytest.approx(HISTORY.per_second), HISTORY.burst)


async def test_the_pacer_lowers_a_refused_channel_and_says_how_long_it_is_paused() -> None:
    pacer = Pacer({POST: Limit(50.0, 2, per_channel=True)})
    await pacer.acquire(POST, "C1", 0, "T1")
    await pacer.pause(POST, "C1", 0.05, "T1")
    assert 0.0 < pacer.paused_for(POST, "C1", "T1") <= 0.05
    await pacer.acquire(POST, "C1", 0, "T1")  # after the pause
    assert pacer.paused_for(POST, "C1", "T1") == 0.0
    seen = pacer._seen[(POST, "C1")][1]
    assert (seen.rate, seen.burst) == (pytest.approx(40.0), 1.0)


# ---- in Redis, shared by processes ----------------------------------------------------------------


async def test_two_processes_share_one_channels_burst(redis_url: str) -> None:
    import redis.asyncio as aioredis

    a, b = aioredis.from_url(redis_url), aioredis.from_url(redis_url)
    try:
        t = _team()  # keys of this test's own: the Redis may be shared, and tests never delete others' data
        one, two = RedisPaces(a), RedisPaces(b)
        key, profile = (POST, f"C1{t}"), _profile(t)
        assert (await one.take(key, DOCUMENTED, True, profile, t)).wait == 0.0
        assert (await two.take(key, DOCUMENTED, True, profile, t)).wait == 0.0  # the burst's second slot
        third = await one.take(key, DOCUMENTED, True, profile, t)
        assert 0.5 < third.wait <= 1.0  # both processes drew from one bucket
        assert (await two.take((POST, f"C2{t}"), DOCUMENTED, True, profile, t)).wait == 0.0
        assert one.shared and two.shared
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_429_seen_by_one_process_paces_the_others(redis_url: str) -> None:
    import redis.asyncio as aioredis

    a, b = aioredis.from_url(redis_url), aioredis.from_url(redis_url)
    try:
        t, u = _team(), _team()
        one, two = RedisPaces(a), RedisPaces(b)
        await one.refused((POST, "C1"), DOCUMENTED, 2.0, _profile(t), t)
        held = await two.take((POST, "C1"), DOCUMENTED, True, _profile(t), t)
        assert 1.0 < held.paused <= 2.0 and held.wait >= held.paused
        assert (held.rate, held.burst) == (pytest.approx(0.8), 1.0)
        sibling = await two.take((POST, "C2"), DOCUMENTED, True, _profile(t), t)
        assert (sibling.wait, sibling.rate, sibling.burst) == (0.0, pytest.approx(0.8), 1.0)
        stranger = await two.take((POST, "C3"), DOCUMENTED, True, _profile(u), u)
        assert (stranger.rate, stranger.burst) == (1.0, 2.0)
        keys = sorted([k.decode() for k in await a.keys(f"wabridge:slack:pace:{{{t}}}:*")]
                      + [k.decode() for k in await a.keys(f"wabridge:slack:pace:{{{u}}}:*")])
        assert keys == sorted([f"wabridge:slack:pace:{{{t}}}:chat.postMessage:C1",
                               f"wabridge:slack:pace:{{{t}}}:chat.postMessage:C2",
                               f"wabridge:slack:pace:{{{t}}}:chat.postMessage:workspace:{t}",
                               f"wabridge:slack:pace:{{{u}}}:chat.postMessage:C3"])
    finally:
        await a.aclose()
        await b.aclose()


def _team() -> str:
    return f"T{uuid.uuid4().hex[:10].upper()}"


async def _take_until_granted(paces: RedisPaces, key: tuple[str, str], limit: Limit, profile: tuple[str, str],
                              team: str) -> float:
    while True:
        grant = await paces.take(key, limit, True, profile, team)
        if grant.wait <= 0:
            return grant.rate
        await asyncio.sleep(grant.wait)


async def test_redis_probes_back_up_by_the_same_rules(redis_url: str) -> None:
    """The Lua script and bot.slack.pacing agree on every step of a cut and the climb back."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        team = _team()  # keys of this test's own, never another's
        paces, key, profile = RedisPaces(client), (POST, f"C{team}"), _profile(team)
        await paces.refused(key, FAST, 0.0, profile, team)
        expected = cut(nominal(FAST), FAST)
        for _ in range(3 * PROBE_AFTER + 5):
            rate = await _take_until_granted(paces, key, FAST, profile, team)
            assert rate == pytest.approx(expected.rate)
            expected = probe(expected, FAST)
        assert expected.rate == FAST.per_second and expected.burst == 1.0
    finally:
        await client.aclose()


async def test_redis_a_method_tiers_429_pauses_it_without_lowering_it(redis_url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        team = _team()
        paces, key = RedisPaces(client), ("conversations.history", f"workspace:{team}")
        for _ in range(3):  # each retry after Retry-After refused again
            await paces.refused(key, HISTORY, 0.05, None, team)
            await asyncio.sleep(0.06)
        grant = await paces.take(key, HISTORY, True, None, team)
        assert (grant.rate, grant.burst) == (pytest.approx(HISTORY.per_second), HISTORY.burst)
    finally:
        await client.aclose()


# ---- Redis away and back ----------------------------------------------------------------------------


@contextmanager
def _redis_on(port: int) -> Iterator[None]:
    binary = services.redis_server_binary()
    assert binary is not None
    workdir = tempfile.mkdtemp(prefix="wabridge-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if services._port_open("127.0.0.1", port):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_redis_down_falls_back_to_this_process_says_so_once_and_heals(caplog: pytest.LogCaptureFixture
                                                                           ) -> None:
    import redis.asyncio as aioredis

    if services.redis_server_binary() is None:
        pytest.skip("needs a redis-server binary to stop and start")
    port = services.free_port()
    client = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2)
    paces = RedisPaces(client, retry_seconds=0.05)
    key, profile = (POST, "C1"), _profile("T1")
    caplog.set_level(logging.INFO, logger="bot.slack.pace_redis")
    try:
        # Down: calls are still paced (in this process), and the log says so once.
        granted = [(await paces.take(key, DOCUMENTED, True, profile, "T1")).wait == 0.0 for _ in range(5)]
        await asyncio.sleep(0.06)
        granted += [(await paces.take(key, DOCUMENTED, True, profile, "T1")).wait == 0.0 for _ in range(5)]
        assert granted.count(True) == 2 and not paces.shared
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "pacing in this process alone" in warnings[0].getMessage()
        with _redis_on(port):
            await asyncio.sleep(0.06)
            grant = await paces.take((POST, "C2"), DOCUMENTED, True, profile, "T1")
            assert grant.wait == 0.0 and paces.shared
            assert await client.exists("wabridge:slack:pace:{T1}:chat.postMessage:C2") == 1
            assert any("answers again" in r.getMessage() for r in caplog.records)
        await paces.take(key, DOCUMENTED, True, profile, "T1")
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2  # down again: said again
    finally:
        await client.aclose()
