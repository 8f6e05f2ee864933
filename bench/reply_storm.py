"""Reply storm: N first-time customers write at once; how long until Slack shows them all, and at what cost.

Run from the repository root:

    .venv/bin/python -m bench.reply_storm                   # 60 customers, one message each
    .venv/bin/python -m bench.reply_storm --customers 20 --messages 2
    .venv/bin/python bench/reply_storm.py --quick           # 10 customers

`serve` runs as a subprocess on a fresh PostgreSQL database with the Slack stand-in in a process of its own,
limited as Slack documents chat.postMessage: 1 post per second per channel with a burst of 3 (calls beyond
are answered 429 + Retry-After). Every customer is new, so every first message opens a thread.

Baseline, in the same run: the physical limit, i.e. the posts needed at the channel's rate (one post per
message when a new thread's parent carries its first message). Targets: all visible within 1.1 x that
limit, at most 5 % of chat.postMessage calls refused, every message posted exactly once, in order per thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench import _common
from tests.helpers import inbound_text, signed

RATE = 1.0  # chat.postMessage per second per channel, as Slack documents it
BURST = 3
TARGET_RATIO = 1.1
TARGET_REFUSED = 0.05


async def _storm(url: str, customers: int, messages: int, tag: str) -> tuple[float, int]:
    """Every customer's messages, all at once (each customer's in order); returns (start time, errors)."""
    base_ts = int(time.time()) - 60
    errors = 0

    async def customer(session: aiohttp.ClientSession, c: int) -> None:
        nonlocal errors
        wa_id = f"9197700{c:05d}"
        for k in range(messages):
            body, headers = signed(inbound_text(f"wamid.storm.{tag}.{c}.{k}", f"storm-{tag}-{c}-{k} when is the "
                                                f"next batch?", wa_id=wa_id, name=f"Storm {c}", ts=base_ts + k))
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    errors += resp.status != 200
            except (aiohttp.ClientError, TimeoutError):
                errors += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.monotonic()
        await asyncio.gather(*(customer(session, c) for c in range(customers)))
    return start, errors


def _marks(tag: str, blob: str) -> list[tuple[int, int]]:
    return [(int(c), int(k)) for c, k in re.findall(rf"storm-{re.escape(tag)}-(\d+)-(\d+)\b", blob)]


def run(customers: int, messages: int, timeout: float | None = None) -> dict[str, object]:
    """One storm; returns the figures (also printed as a table)."""
    tag = uuid.uuid4().hex[:6]
    total = customers * messages
    physical = total / RATE
    wait_limit = timeout if timeout is not None else physical * 3 + 60
    with _common.temp_dir("wabridge-bench-storm-") as tmp, \
            _common.Standins(slack_limits={"chat.postMessage": (RATE, BURST)}) as standins, \
            _common.redis_server() as redis_url, _common.pg_database() as db_url:
        config = _common.write_config(Path(tmp) / "app.yaml", database_url=db_url, redis_url=redis_url,
                                      graph_url=standins.graph_url, slack_api_url=standins.slack_api_url,
                                      channels=[_common.Channel("lucknow", "100000000000001")])
        with _common.Serve(config, log_dir=Path(tmp)) as serve:
            start, errors = asyncio.run(_storm(f"{serve.url}/webhooks/meta", customers, messages, tag))
            deadline = time.monotonic() + wait_limit
            posts = standins.slack_posts()
            while time.monotonic() < deadline:
                seen = {m for p in posts if p["ok"] for m in _marks(tag, p["blob"])}
                if len(seen) >= total:
                    break
                time.sleep(0.5)
                posts = standins.slack_posts()
            time.sleep(1.0)  # anything doubled or late shows up now
            posts = standins.slack_posts()
    ok = [p for p in posts if p["ok"]]
    refused = sum(1 for p in posts if p.get("status") == 429)
    times: dict[tuple[int, int], list[float]] = {}
    threads: dict[int, list[tuple[float, int]]] = {}
    for p in ok:
        for c, k in set(_marks(tag, p["blob"])):
            times.setdefault((c, k), []).append(p["t"])
            threads.setdefault(c, []).append((p["t"], k))
    lost = total - len(times)
    doubled = sum(len(v) - 1 for v in times.values())
    out_of_order = sum(1 for seq in threads.values() if [k for _, k in sorted(seq)] != sorted(k for _, k in seq))
    visible = max((min(v) for v in times.values()), default=start) - start
    row = {"customers": customers, "messages": total, "visible after s": visible, "physical limit s": physical,
           "ratio": visible / physical if physical else float("nan"), "posts": len(ok),
           "429s": refused, "refused share": refused / len(posts) if posts else 0.0, "lost": lost,
           "doubled": doubled, "out of order": out_of_order, "webhook errors": errors}
    print(_common.table([row], f"Reply storm: {customers} new customers x {messages} message(s), Slack "
                               f"stand-in at {RATE:g} post/s per channel, burst {BURST}; {_common.machine()}"))
    met_time = row["ratio"] <= TARGET_RATIO  # type: ignore[operator]
    met_refused = row["refused share"] <= TARGET_REFUSED  # type: ignore[operator]
    print(f"\nall visible after {visible:.1f} s against {physical:.1f} s at the channel's rate "
          f"(target <= {TARGET_RATIO:g}x: {'met' if met_time else 'MISSED'}); "
          f"{refused} of {len(posts)} chat.postMessage calls refused "
          f"(target <= {TARGET_REFUSED:.0%}: {'met' if met_refused else 'MISSED'}); "
          f"lost {lost}, doubled {doubled}, out of order {out_of_order}")
    print(json.dumps({"ratio": row["ratio"], "refused_share": row["refused share"]}))
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=None, help="default 60 (10 with --quick)")
    parser.add_argument("--messages", type=int, default=1, help="messages per customer, sent in order")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for every post")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    run(args.customers or (10 if args.quick else 60), args.messages, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
