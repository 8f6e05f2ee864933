"""Scale-out: `serve --role worker` 1, 2 and 4 times (and `--role web` 1 and 2 times) against one PostgreSQL.

Run from the repository root:

    .venv/bin/python -m bench.scale_out                        # workers 1, 2, 4 with one web process, then 4 with two
    .venv/bin/python -m bench.scale_out --quick                # workers 1 and 2, a smaller load
    .venv/bin/python -m bench.scale_out --workers 1 2 --web 1 --deliveries 4000

For each layout, on a fresh PostgreSQL database (one Redis, the Graph and Slack stand-ins shared by all
processes): `serve --role web [--processes N]` takes the deliveries and the workers apply and mirror them.
The load is offered faster than any layout keeps up with (open loop, `--offered`/s): a quarter customer
messages spread over `--channels` channels (two conversations each, a few posts per channel so that Slack's
one post per second per channel is not what is measured), three quarters status webhooks (the bulk lane).

Printed per layout: applied/s (deliveries processed per second, from the first sent to the last processed),
mirrored/s (customer messages in Slack per second, from the first sent to the last post), the CPU of the web
processes, of the workers and of PostgreSQL (share of one core), and what was not applied or not mirrored
within the wait. The machine's load is printed with each layout: figures from a shared machine are not
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common
from bench.ingest import Backlog
from bench.mirror_latency import bench_channels, channel_number

SETTLE_TIMEOUT = 90.0
POOL = 8  # database_pool_size per process: 4 workers + 2 web, 16 each at most, stay under PostgreSQL's default 100


@dataclass
class Layout:
    web: int
    workers: int
    deliveries: int = 0
    applied: int = 0
    applied_s: float = float("nan")
    messages: int = 0
    mirrored: int = 0
    mirrored_s: float = float("nan")
    cpu: dict[str, float] | None = None
    load: float = float("nan")


def workload(n: int, channels: int, tag: str) -> tuple[list[tuple[bytes, dict[str, str]]], int]:
    """n signed deliveries: every fourth a customer message carrying `mlat-tag-i` (i counts messages), the rest
    statuses; returns them and how many are customer messages."""
    from tests.helpers import signed, status

    items: list[tuple[bytes, dict[str, str]]] = []
    ts = int(time.time()) - 30
    messages = 0
    for i in range(n):
        if i % 4 == 0:
            c = messages % (2 * channels)
            items.append(_common.customer_message(f"mlat-{tag}", messages, number=channel_number(c % channels),
                                                  wa_id=f"9198400{c:05d}", name=f"Customer {c}", ts=ts))
            messages += 1
        else:
            payload = status(f"wamid.scale.{tag}.{i}", "delivered", recipient=f"9198500{i % 5000:05d}", ts=ts)
            items.append(signed(payload))
    return items, messages


def measure(layout: Layout, *, deliveries: int, channels: int, offered: float) -> None:
    """One layout on a fresh database: start it, offer the load, wait for it to be applied and mirrored."""
    tag = uuid.uuid4().hex[:6]
    with _common.mirror_stack("wabridge-bench-scale-") as (tmp, standins, redis_url, db_url):
        config = _common.write_config(tmp / "app.yaml", database_url=db_url, redis_url=redis_url,
                                      graph_url=standins.graph_url, slack_api_url=standins.slack_api_url,
                                      channels=bench_channels(channels), extra={"database_pool_size": POOL})
        with contextlib.ExitStack() as stack:
            web = stack.enter_context(_common.Serve(config, log_dir=tmp, name="web", role="web",
                                                    processes=layout.web))
            workers = [stack.enter_context(_common.Serve(config, log_dir=tmp, name=f"worker{n}", migrate=False,
                                                         role="worker")) for n in range(layout.workers)]
            assert web.proc is not None and all(w.proc is not None for w in workers)
            items, layout.messages = workload(deliveries, channels, tag)
            layout.deliveries = len(items)
            layout.load = _common.load_average()
            web_pids = [web.proc.pid, *_common.children_of(web.proc.pid)]
            meter = _common.CpuMeter({"web": web_pids, "workers": [w.proc.pid for w in workers if w.proc],
                                      "postgres": "postgres"}).start()
            sent, _, _ = asyncio.run(_common.open_loop(f"{web.url}/webhooks/meta", items, offered))
            first = min(sent.values())
            applied_at = asyncio.run(_applied(db_url, layout.deliveries))
            layout.applied = applied_at[0]
            layout.applied_s = layout.applied / (applied_at[1] - first) if applied_at[1] > first else float("nan")
            _common.mirrored(standins, f"mlat-{tag}", dict.fromkeys(range(layout.messages), first),
                             SETTLE_TIMEOUT)
            posts = _common.first_posts(standins, f"mlat-{tag}")
            layout.mirrored = len(posts)
            if posts:
                layout.mirrored_s = len(posts) / (max(posts.values()) - first)
            layout.cpu = meter.stop()


async def _applied(db_url: str, total: int) -> tuple[int, float]:
    """Wait until `total` deliveries are processed (or SETTLE_TIMEOUT); (processed, when the last was)."""
    async with Backlog(db_url) as backlog:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        done, last = 0, time.monotonic()
        while time.monotonic() < deadline:
            now_done, _ = await backlog.counts()
            if now_done != done:
                done, last = now_done, time.monotonic()
            if done >= total:
                break
            await asyncio.sleep(0.05)
        return done, last


def run(workers: Sequence[int], webs: Sequence[int], *, deliveries: int, channels: int, offered: float
        ) -> list[Layout]:
    layouts = [Layout(web=w, workers=n) for w, n in itertools.product(webs, workers)]
    for layout in layouts:
        measure(layout, deliveries=deliveries, channels=channels, offered=offered)
        print(f"  web x{layout.web}, workers x{layout.workers}: applied {layout.applied_s:.0f}/s, "
              f"mirrored {layout.mirrored_s:.0f}/s (load {layout.load:.2f})", flush=True)
    rows = [{"web": f"x{lay.web}", "workers": f"x{lay.workers}", "deliveries": lay.deliveries,
             "applied/s": lay.applied_s, "not applied": lay.deliveries - lay.applied,
             "messages": lay.messages, "mirrored/s": lay.mirrored_s, "not mirrored": lay.messages - lay.mirrored,
             "cpu web": (lay.cpu or {}).get("web", float("nan")),
             "cpu workers": (lay.cpu or {}).get("workers", float("nan")),
             "cpu pg": (lay.cpu or {}).get("postgres", float("nan")), "load(1 min)": lay.load}
            for lay in layouts]
    print(_common.table(rows, f"Scale-out: {deliveries} deliveries offered at {offered:g}/s (1/4 customer messages "
                              f"over {channels} channels, 3/4 statuses) per layout, one PostgreSQL; "
                              f"{_common.machine()}"))
    print("\napplied/s: deliveries processed ÷ seconds from the first sent to the last processed; mirrored/s: "
          "customer messages in Slack ÷ seconds from the first sent to the last post; CPU as a share of one core")
    return layouts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts (default 1 2 4)")
    parser.add_argument("--web", type=int, nargs="+", default=None, help="web process counts (default 1 2)")
    parser.add_argument("--deliveries", type=int, default=None, help="per layout (default 12000; 2000 with --quick)")
    parser.add_argument("--channels", type=int, default=1024, help="WhatsApp numbers, each its own Slack channel")
    parser.add_argument("--offered", type=float, default=3000.0, help="deliveries per second offered")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    workers = args.workers or ([1, 2] if args.quick else [1, 2, 4])
    webs = args.web or ([1] if args.quick else [1, 2])
    deliveries = args.deliveries or (2000 if args.quick else 12000)
    run(workers, webs, deliveries=deliveries, channels=args.channels, offered=args.offered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
