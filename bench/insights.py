"""Managers' figures: how long the Home tab's data takes to compute from a week of stored messages.

Run from the repository root:

    .venv/bin/python -m bench.insights                        # 1k, 10k and 50k conversations, PostgreSQL
    .venv/bin/python -m bench.insights --quick                # 1k and 10k
    .venv/bin/python bench/insights.py --conversations 200 --messages 10 --db sqlite

Each conversation gets `--messages` messages spread over the last 7 days (customer messages, replies from
Slack and the phone app, notes, campaign sends). Measured, each the median of `--repeat` runs:
- select rows: the baseline, fetching the same message columns for the same period and nothing else;
- figures (week): bot.ops.insights_store.period_figures for this week, as the Home tab, the reminders and the
  /metrics histogram compute it (loading, classifying, the pure function);
- pure function: bot.ops.insights.figures over events already in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common

TARGET_SECONDS = 1.0  # the week's figures for 50k conversations (500k messages) within a second
LOOKBACK = timedelta(days=7)


async def fill(url: str, conversations: int, messages: int, seed: int = 11) -> None:
    """conversations x messages rows over the last week, written in large batches."""
    from sqlalchemy import insert

    from storage.db import make_engine, make_sessionmaker, migrate
    from storage.models import Channel, Contact, Conversation, Message, utcnow

    await migrate(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    rnd = random.Random(seed)
    now = utcnow()
    try:
        async with sessions() as s, s.begin():
            channel = Channel(name="lucknow", phone_number_id="1001", waba_id="2001", mode="coexistence", mps=5)
            s.add(channel)
            await s.flush()
            await s.execute(insert(Contact), [{"wa_id": f"9198{i:08d}", "profile_name": f"Customer {i}",
                                               "opted_out": False, "created_at": now, "updated_at": now}
                                              for i in range(conversations)])
            await s.execute(insert(Conversation), [{"channel_id": channel.id, "contact_id": i + 1,
                                                    "created_at": now} for i in range(conversations)])
        kinds = [("inbound", "customer", None), ("outbound", "slack", "U0ASHA"), ("outbound", "phone_app", None),
                 ("outbound", "slack", "U0BILAL"), ("outbound", "campaign", None)]
        batch: list[dict[str, Any]] = []
        for conv in range(1, conversations + 1):
            start = now - LOOKBACK + timedelta(seconds=rnd.randrange(3600))
            for j in range(messages):
                direction, source, user = kinds[0] if j % 2 == 0 else rnd.choice(kinds[1:])
                at = start + timedelta(seconds=j * (LOOKBACK.total_seconds() - 7200) / messages)
                batch.append({"conversation_id": conv, "direction": direction, "source": source, "type": "text",
                              "text": "hello", "slack_user": user, "is_note": rnd.random() < 0.05,
                              "is_history": False, "status_history": [], "wa_timestamp": at, "created_at": at,
                              "wamid": f"wamid.{conv}.{j}"})
                if len(batch) >= 5000:
                    async with sessions() as s, s.begin():
                        await s.execute(insert(Message), batch)
                    batch = []
        if batch:
            async with sessions() as s, s.begin():
                await s.execute(insert(Message), batch)
    finally:
        await engine.dispose()


async def measure(url: str, repeat: int) -> dict[str, float]:
    from sqlalchemy import select

    from bot.ops.insights import figures
    from bot.ops.insights_store import load_conversations, period_figures
    from storage.db import make_engine, make_sessionmaker
    from storage.models import Message, utcnow

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = utcnow()
    since = now - timedelta(days=7)
    times: dict[str, list[float]] = {"select rows": [], "figures (week)": [], "pure function": []}
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            async with sessions() as s:
                (await s.execute(select(Message.id, Message.conversation_id, Message.direction, Message.source,
                                        Message.type, Message.is_note, Message.is_history, Message.status,
                                        Message.slack_user, Message.wa_timestamp)
                                 .where(Message.wa_timestamp >= since - LOOKBACK,
                                        Message.wa_timestamp <= now))).all()
            times["select rows"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await period_figures(sessions, since=since, now=now)
            times["figures (week)"].append(time.perf_counter() - t0)
        loaded = await load_conversations(sessions, start=since - LOOKBACK, end=now)
        for _ in range(repeat):
            t0 = time.perf_counter()
            figures(loaded, since=since, now=now)
            times["pure function"].append(time.perf_counter() - t0)
    finally:
        await engine.dispose()
    return {k: statistics.median(v) for k, v in times.items()}


def run(sizes: Sequence[int], messages: int, dbs: Sequence[str], repeat: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for db in dbs:
        for n in sizes:
            if db == "postgres":
                with _common.pg_database() as url:
                    asyncio.run(fill(url, n, messages))
                    result = asyncio.run(measure(url, repeat))
            else:
                with _common.temp_dir("wabridge-bench-insights-") as tmp:
                    url = f"sqlite+aiosqlite:///{tmp}/bench.db"
                    asyncio.run(fill(url, n, messages))
                    result = asyncio.run(measure(url, repeat))
            rows.append({"db": db, "conversations": n, "messages": n * messages,
                         **{f"{k} s": v for k, v in result.items()},
                         "ratio": result["figures (week)"] / max(result["select rows"], 1e-9)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, nargs="+", default=None,
                        help="conversation counts (default 1000 10000 50000)")
    parser.add_argument("--messages", type=int, default=10, help="messages per conversation (default 10)")
    parser.add_argument("--db", nargs="+", default=["postgres"], choices=["postgres", "sqlite"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1k and 10k conversations")
    args = parser.parse_args(argv)
    sizes = args.conversations or ([1000, 10_000] if args.quick else [1000, 10_000, 50_000])
    rows = run(sizes, args.messages, args.db, args.repeat)
    print(_common.table(rows, f"Managers' figures over a week ({_common.machine()})"))
    for r in rows:
        if r["conversations"] == 50_000 and r["db"] == "postgres":
            seconds = float(r["figures (week) s"])  # type: ignore[arg-type]
            verdict = "met" if seconds <= TARGET_SECONDS else "missed"
            print(f"target: the week's figures for 50k conversations within {TARGET_SECONDS:.0f} s: {verdict} "
                  f"({seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
