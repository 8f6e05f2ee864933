"""Lua script calls made together share one pipeline; each caller still gets its own answer or error."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from bot.core.script_batch import ScriptBatch
from tests import services

# Counts per key and echoes the argument; ARGV[1] == 'fail' makes this call (alone) an error.
SCRIPT = """
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 60000)
return {n, ARGV[1]}
"""


def _script_of_its_own() -> str:
    # A body no Redis has seen, so its first pipeline meets NOSCRIPT (nothing is flushed to get there).
    return f"-- {uuid.uuid4().hex}\n{SCRIPT}"


@pytest.fixture
async def scripted(redis_url: str) -> AsyncIterator[tuple[ScriptBatch, str]]:
    """A batch of a script of its own on the test Redis, and a key of its own."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        script = client.register_script(_script_of_its_own())
        yield ScriptBatch(client, script), f"test:script-batch:{uuid.uuid4().hex}"
    finally:
        await client.aclose()


async def test_calls_made_together_share_round_trips_and_each_gets_its_answer(
        scripted: tuple[ScriptBatch, str]) -> None:
    batch, key = scripted
    answers = await asyncio.gather(*(batch([key], [f"call-{i}"]) for i in range(50)))
    assert sorted(int(n) for n, _ in answers) == list(range(1, 51))  # every call ran, once
    assert [echo.decode() for _, echo in answers] == [f"call-{i}" for i in range(50)]  # in its own order
    # All 50 were made before the first was sent: one pipeline, which met a script Redis did not know yet,
    # then the same calls again once it was loaded. Nothing ran twice (the counts above).
    assert batch.round_trips == 2
    lone = await batch([key], ["alone"])
    assert int(lone[0]) == 51


async def test_an_error_reaches_its_caller_alone(scripted: tuple[ScriptBatch, str]) -> None:
    batch, key = scripted
    await batch([key], ["warm"])  # loads the script
    results = await asyncio.gather(batch([key], ["a"]), batch([key], ["fail"]), batch([key], ["b"]),
                                   return_exceptions=True)
    assert isinstance(results[1], ResponseError) and "asked to fail" in str(results[1])
    assert [r[1].decode() for r in (results[0], results[2])] == ["a", "b"]  # type: ignore[index]


async def test_a_caller_that_gives_up_leaves_the_others_their_answers(scripted: tuple[ScriptBatch, str]) -> None:
    batch, key = scripted
    waiting = asyncio.create_task(batch([key], ["gone"]))
    others = [asyncio.create_task(batch([key], [f"stay-{i}"])) for i in range(3)]
    await asyncio.sleep(0)
    waiting.cancel()
    answers = await asyncio.gather(*others)
    assert [a[1].decode() for a in answers] == ["stay-0", "stay-1", "stay-2"]
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_redis_away_fails_every_caller_of_the_batch_and_the_next_call_tries_again() -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(f"redis://127.0.0.1:{services.free_port()}/0", socket_connect_timeout=0.2)
    try:
        batch = ScriptBatch(client, client.register_script(SCRIPT))
        results = await asyncio.gather(*(batch(["k"], [str(i)]) for i in range(4)), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results)
        with pytest.raises(RedisConnectionError):
            await batch(["k"], ["again"])  # a new batch, not a stuck one
    finally:
        await client.aclose()
