"""The shared Slack pacer's cost per grant: Lua calls sent one per round trip (baseline) against calls made
together sharing a pipeline (bot.core.script_batch), the same script on the same private Redis in one run.

Run from the repository root:

    .venv/bin/python -m bench.pacer_grants                  # 6,000 grants over 64 tasks, three rounds
    .venv/bin/python -m bench.pacer_grants --grants 2000 --tasks 8

Each task takes grants for channels of its own (chat.postMessage, one channel per grant, as a backlog's
posts spread over many channels do), so every grant is given at once: what is measured is this process's
CPU per grant and the grants per second, not Slack's pace.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common
from bot.slack.pace_redis import RedisPaces
from bot.slack.pacer import SLACK_LIMITS

METHOD = "chat.postMessage"


class _OneByOne:
    """The baseline: each call its own round trip (what RedisPaces did before batching)."""

    def __init__(self, script: Any) -> None:
        self._script = script

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        return await self._script(keys=keys, args=args)


async def _measure(redis_url: str, grants: int, tasks: int, batched: bool) -> tuple[float, float]:
    """(µs of this process's CPU per grant, grants per second)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        paces = RedisPaces(client)
        if not batched:
            paces._script = _OneByOne(client.register_script(paces._script._script.script))  # type: ignore[assignment]
        limit, team = SLACK_LIMITS[METHOD], f"Tbench{uuid.uuid4().hex[:8]}"
        profile = (METHOD, f"workspace:{team}")
        await paces.take((METHOD, "Cwarm"), limit, True, profile, team)  # the connection and the script
        todo = list(range(grants))

        async def task() -> None:
            while todo:
                i = todo.pop()
                grant = await paces.take((METHOD, f"C{i}"), limit, True, profile, team)
                assert grant.wait == 0.0 and paces.shared
        cpu, began = time.process_time(), time.perf_counter()
        await asyncio.gather(*(task() for _ in range(tasks)))
        return (time.process_time() - cpu) / grants * 1e6, grants / (time.perf_counter() - began)
    finally:
        await client.aclose()


def run(grants: int, tasks: int, rounds: int) -> dict[str, float]:
    rows: list[dict[str, object]] = []
    with _common.redis_server() as redis_url:
        for n in range(rounds):
            for batched in (False, True):
                cpu, rate = asyncio.run(_measure(redis_url, grants, tasks, batched))
                rows.append({"round": n + 1, "calls": "batched" if batched else "one per round trip (baseline)",
                             "CPU µs/grant": cpu, "grants/s": rate})
    base = [float(r["CPU µs/grant"]) for r in rows if r["calls"] != "batched"]  # type: ignore[arg-type]
    ours = [float(r["CPU µs/grant"]) for r in rows if r["calls"] == "batched"]  # type: ignore[arg-type]
    ratio = sorted(ours)[len(ours) // 2] / sorted(base)[len(base) // 2]
    print(_common.table(rows, f"Slack pacer grants: {grants} over {tasks} tasks per run; {_common.machine()}"))
    print(f"\nmedian CPU per grant, batched ÷ one per round trip: {ratio:.2f}")
    return {"ratio": ratio}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=6000)
    parser.add_argument("--tasks", type=int, default=64, help="callers taking grants at once")
    parser.add_argument("--rounds", type=int, default=3, help="baseline and batched runs, alternated")
    args = parser.parse_args(argv)
    run(args.grants, args.tasks, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
