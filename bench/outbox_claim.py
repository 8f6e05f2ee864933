"""Outbox claim: how long the Slack outbox takes to find and lease thread heads in a burst's backlog, when
PostgreSQL's statistics were taken before the burst (as they are: autovacuum analyzes a table after it changed,
not while it does).

Run from the repository root:

    .venv/bin/python -m bench.outbox_claim                 # 3,000 pending (1,500 messages, 1,500 parent refreshes)
    .venv/bin/python -m bench.outbox_claim --quick         # 600 pending, 5 claims per path
    .venv/bin/python -m bench.outbox_claim --pending 6000 --claims 50

On a fresh database: 4,000 finished message posts and 1,500 finished parent refreshes, then ANALYZE, then the
backlog (`--pending` items over 512 conversations' threads and their parent threads). Each claim asks for 32
urgent heads, as a busy worker does, and is handed back unstarted so that the next finds the same backlog.

Baseline in the same run: the same claims after a fresh ANALYZE (statistics that know the backlog), and, for
the same backlog, the heads query the outbox used before 0.7.0 (correlated NOT EXISTS), with both statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common

THREADS = 512
URGENT = ["message", "note", "alert"]


def _row(key: str, thread: str, kind: str, at: Any, done: bool) -> dict[str, Any]:
    return {"k": key, "t": thread, "kind": kind, "ts": at, "done": at if done else None}


async def _fill(url: str, pending: int) -> None:
    from sqlalchemy import text

    from storage.db import make_engine, migrate
    from storage.models import utcnow

    await migrate(url)
    engine = make_engine(url)
    now = utcnow()
    insert = text("INSERT INTO slack_outbox (dedupe_key, thread_key, kind, payload, order_ts, attempts, created_at, "
                  "slack_team, done_at) VALUES (:k, :t, :kind, '{}', :ts, 0, :ts, 'default', :done)")
    finished = ([_row(f"m{i}", f"conv:{i % THREADS}", "message", now - timedelta(seconds=600 - i / 10), True)
                 for i in range(4000)]
                + [_row(f"r{i}", f"parent:{i % THREADS}", "thread_parent", now - timedelta(seconds=600 - i / 10),
                        True) for i in range(1500)])
    half = pending // 2
    backlog = ([_row(f"p{i}", f"conv:{i % THREADS}", "message", now - timedelta(seconds=30 - i / 100), False)
                for i in range(half)]
               + [_row(f"q{i}", f"parent:{i % THREADS}", "thread_parent", now - timedelta(seconds=30 - i / 100),
                       False) for i in range(pending - half)])
    try:
        async with engine.begin() as conn:
            await conn.execute(insert, finished)
        async with engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("ANALYZE slack_outbox"))  # statistics of the quiet table, before the burst
        async with engine.begin() as conn:
            await conn.execute(insert, backlog)
    finally:
        await engine.dispose()


def _correlated_heads() -> Any:
    """The heads query before 0.7.0: a head is a pending row with no earlier pending row in its thread."""
    from sqlalchemy import Integer, and_, bindparam, exists, or_, select
    from sqlalchemy.orm import aliased

    from storage.models import SlackOutbox

    o = SlackOutbox
    now = bindparam("now", type_=o.claimed_until.type)
    earlier, busy = aliased(SlackOutbox), aliased(SlackOutbox)
    before = or_(earlier.order_ts < o.order_ts, and_(earlier.order_ts == o.order_ts, earlier.id < o.id))
    is_head = ~exists().where(earlier.thread_key == o.thread_key, earlier.done_at.is_(None), before)
    idle = ~exists().where(busy.thread_key == o.thread_key, busy.done_at.is_(None), busy.claimed_until.is_not(None),
                           busy.claimed_until >= now)
    due = or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now)
    return (select(o.id, o.owner_id).where(o.done_at.is_(None), is_head, idle, due,
                                            o.kind.in_(bindparam("kinds", expanding=True)))
            .order_by(o.order_ts, o.id).limit(bindparam("limit", type_=Integer)))


async def _measure(url: str, claims: int) -> list[dict[str, object]]:
    from sqlalchemy import text

    from bot.slack.outbox_queue import OutboxQueue
    from storage.db import make_engine, make_sessionmaker
    from storage.models import utcnow

    engine = make_engine(url)
    queue = OutboxQueue(make_sessionmaker(engine), timedelta(minutes=2))
    old = _correlated_heads()
    rows: list[dict[str, object]] = []

    async def heads_query(label: str) -> None:
        took = []
        for _ in range(claims):
            async with engine.connect() as conn:
                started = time.perf_counter()
                found = (await conn.execute(old, {"now": utcnow(), "limit": 32, "kinds": URGENT})).all()
                took.append(time.perf_counter() - started)
        rows.append(_stats(f"heads, correlated NOT EXISTS (before 0.7.0), {label}", took, len(found)))

    async def claim(label: str) -> None:
        took = []
        for _ in range(claims):
            started = time.perf_counter()
            items = await queue.claim(32, kinds=URGENT)
            took.append(time.perf_counter() - started)
            await queue.unclaim(items)
        rows.append(_stats(f"claim, {label}", took, len(items)))

    try:
        for label in ("statistics from before the burst", "statistics after ANALYZE"):
            if label.endswith("ANALYZE"):
                async with engine.connect() as conn:
                    await conn.execute(text("COMMIT"))
                    await conn.execute(text("ANALYZE slack_outbox"))
            await claim(label)
            await heads_query(label)
    finally:
        await engine.dispose()
    base = next(float(str(r["p50 ms"])) for r in rows if str(r["path"]).startswith("claim, statistics after"))
    for row in rows:
        row["ratio p50"] = float(str(row["p50 ms"])) / base
    return rows


def _stats(path: str, took: list[float], found: int) -> dict[str, object]:
    ms = [t * 1000 for t in took]
    return {"path": path, "n": len(ms), "heads": found, "p50 ms": _common.percentile(ms, 50),
            "p99 ms": _common.percentile(ms, 99), "max ms": max(ms)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=3000, help="items in the backlog (half messages)")
    parser.add_argument("--claims", type=int, default=20, help="claims measured per path")
    parser.add_argument("--quick", action="store_true", help="600 pending, 5 claims per path")
    args = parser.parse_args(argv)
    if args.quick:
        args.pending, args.claims = 600, 5
    with _common.pg_database() as url:
        asyncio.run(_fill(url, args.pending))
        rows = asyncio.run(_measure(url, args.claims))
    print(_common.table(rows, f"Outbox claim: {args.pending:,} pending over {THREADS} threads and their parent "
                              f"threads; {_common.machine()}"))
    print("ratio p50: against the claim with statistics after ANALYZE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
