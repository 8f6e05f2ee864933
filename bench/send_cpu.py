"""CPU per campaign send on the client side: the general Graph client (httpx) against the pooled template
sender (aiohttp), both sending to the Graph stand-in running in a process of its own.

    .venv/bin/python -m bench.send_cpu                 # 3,000 sends each, 8 at a time
    .venv/bin/python -m bench.send_cpu --sends 200     # smoke run

Figure: CPU time of this process (``time.process_time``) divided by the sends; the stand-in's CPU is not
counted. Target: well under 1 ms per send for the pooled sender.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.meta.graph import GraphClient
from bot.meta.sender import TemplateBody, TemplateSender

ROOT = Path(__file__).resolve().parents[1]
PNID = "100000000000001"
TOKEN = "bench-token"
STANDIN = r"""
import asyncio, signal, sys
from bot.standins.graph import GraphStandin

async def main():
    standin = GraphStandin(tokens={sys.argv[1]: [sys.argv[2]]})
    print(await standin.start(), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await standin.stop()

asyncio.run(main())
"""
COMPONENTS = [{"type": "body", "parameters": [{"type": "text", "text": "Asha"}]}]


async def _measure(send: Callable[[str], Awaitable[object]], sends: int, concurrency: int) -> float:
    for i in range(concurrency):  # open the pool first: connection set-up is not a per-send cost
        await send(f"9190000{i:05d}")
    queue = iter(range(sends))

    async def worker() -> None:
        for i in queue:
            await send(f"9180000{i:05d}")

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / sends


async def measure(sends: int, concurrency: int) -> None:
    """Run both clients against one stand-in process and print CPU per send."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", STANDIN, TOKEN, PNID, cwd=str(ROOT), env=env,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    base_url = (await proc.stdout.readline()).decode().strip()
    try:
        async with GraphClient(base_url, "v23.0") as graph:
            general = await _measure(
                lambda to: graph.send_template(PNID, TOKEN, to, "bench_notice", "en_US", COMPONENTS),
                sends, concurrency)
        templates = TemplateSender(base_url, "v23.0")
        body = TemplateBody("bench_notice", "en_US")
        try:
            pooled = await _measure(lambda to: templates.send(PNID, TOKEN, to, body, COMPONENTS), sends, concurrency)
        finally:
            await templates.aclose()
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    print(f"sends per client: {sends}, {concurrency} at a time")
    print(f"general Graph client (httpx):   {general * 1e6:8.0f} µs CPU per send")
    print(f"pooled template sender (aiohttp): {pooled * 1e6:6.0f} µs CPU per send  (target < 1,000)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    asyncio.run(measure(args.sends, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
