"""Measure the send throttle: window cap, achieved rate and reply latency under a saturating campaign.

Run from the repository root:

    .venv/bin/python bench/throttle_accuracy.py --mps 5 80 1000          # private redis-server
    .venv/bin/python bench/throttle_accuracy.py --redis-url redis://127.0.0.1:6379/0
    .venv/bin/python bench/throttle_accuracy.py --local --mps 5 80

With Redis, ``--processes`` OS processes each run ``--tasks`` bulk senders against one number while this
process sends a staff reply every ``--reply-every`` seconds and times how long each waited. Windows are
counted twice: on the throttle's clock (what it enforces) and as the senders saw their grants (plus
their scheduling delay, which the margin has to absorb).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import redis.asyncio as aioredis

from scheduler.ratemath import achieved_rate, max_in_window
from scheduler.throttle import LocalThrottle, Priority, RedisThrottle

KEY = "bench-number"


async def _bulk(
    throttle: RedisThrottle | LocalThrottle, mps: int, tasks: int, start_at: float, end_at: float
) -> list[tuple[float, float]]:
    """(grant time on the throttle clock, monotonic time the sender saw it) for each grant."""
    times: list[tuple[float, float]] = []

    async def run() -> None:
        while (left := end_at - time.monotonic()) > 0:
            try:
                granted = await throttle.acquire_timed(KEY, mps, Priority.BULK, timeout=left)
            except TimeoutError:
                return
            times.append((granted, time.monotonic()))

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    await asyncio.gather(*(run() for _ in range(tasks)))
    return times


async def _replies(
    throttle: RedisThrottle | LocalThrottle, mps: int, start_at: float, end_at: float, every: float
) -> tuple[list[tuple[float, float]], list[float]]:
    grants: list[tuple[float, float]] = []
    waits: list[float] = []
    await asyncio.sleep(max(0.0, start_at + 0.5 - time.monotonic()))  # let the campaign saturate first
    while time.monotonic() < end_at - 0.2:
        asked = time.monotonic()
        granted = await throttle.acquire_timed(KEY, mps, Priority.INTERACTIVE)
        grants.append((granted, time.monotonic()))
        waits.append(grants[-1][1] - asked)
        await asyncio.sleep(every)
    return grants, waits


async def _worker(url: str, prefix: str, mps: int, tasks: int, start_at: float, end_at: float) -> None:
    client = aioredis.from_url(url)
    times = await _bulk(RedisThrottle(client, prefix=prefix), mps, tasks, start_at, end_at)
    await client.aclose()
    print(json.dumps(times))


async def _measure(args: argparse.Namespace, mps: int) -> dict[str, float | int | str]:
    prefix = f"bench:throttle:{uuid.uuid4().hex[:8]}"
    start_at = time.monotonic() + (0.1 if args.local else 1.0)
    end_at = start_at + args.seconds
    children: list[subprocess.Popen[str]] = []
    client = None
    throttle: RedisThrottle | LocalThrottle
    if args.local:
        throttle = LocalThrottle()
        local_bulk = asyncio.create_task(_bulk(throttle, mps, args.tasks, start_at, end_at))
    else:
        for _ in range(args.processes):
            children.append(
                subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        args.redis_url,
                        prefix,
                        str(mps),
                        str(args.tasks),
                        repr(start_at),
                        repr(end_at),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        client = aioredis.from_url(args.redis_url)
        throttle = RedisThrottle(client, prefix=prefix)
    reply_grants, waits = await _replies(throttle, mps, start_at, end_at, args.reply_every)
    bulk_times: list[tuple[float, float]] = []
    if args.local:
        bulk_times = await local_bulk
    for child in children:
        out, _ = await asyncio.to_thread(child.communicate)
        bulk_times.extend((granted, seen) for granted, seen in json.loads(out))
    if client is not None:
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    on_clock = [granted for granted, _ in bulk_times + reply_grants]
    as_seen = [seen for _, seen in bulk_times + reply_grants]
    return {
        "backend": "local" if args.local else f"redis x{args.processes} proc",
        "mps": mps,
        "grants": len(on_clock),
        "max_1s_clock": max_in_window(on_clock, 1.0),
        "max_1s_seen": max_in_window(as_seen, 1.0),
        "rate/cap": round(achieved_rate(on_clock) / mps, 4),
        "reply_p50_ms": round(statistics.median(waits) * 1000, 1) if waits else float("nan"),
        "reply_max_ms": round(max(waits) * 1000, 1) if waits else float("nan"),
        "interval_ms": round(1000 / mps, 1),
    }


async def _main(args: argparse.Namespace) -> None:
    rows = [await _measure(args, mps) for mps in args.mps]
    headers = list(rows[0])
    print("  ".join(f"{h:>14}" for h in headers))
    for row in rows:
        print("  ".join(f"{row[h]!s:>14}" for h in headers))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, prefix, mps, tasks, start_at, end_at = sys.argv[2:8]
        asyncio.run(_worker(url, prefix, int(mps), int(tasks), float(start_at), float(end_at)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="", help="default: a private redis-server for the run")
    parser.add_argument("--local", action="store_true", help="measure the in-process throttle instead")
    parser.add_argument("--mps", type=int, nargs="+", default=[5, 80, 1000])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=4, help="bulk senders per process")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--reply-every", type=float, default=0.15)
    args = parser.parse_args()
    with ExitStack() as stack:
        if not args.local and not args.redis_url:
            # A private server: test suites sharing the usual one flush it in the middle of a measurement.
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.services import throwaway_redis

            args.redis_url = stack.enter_context(throwaway_redis())
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
