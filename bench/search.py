"""Search: how fast `/wabridge find` answers over many stored messages (target on PostgreSQL, 1M messages:
p95 < 200 ms).

Run from the repository root:

    .venv/bin/python -m bench.search                          # 1M messages over 50k conversations, PostgreSQL
    .venv/bin/python -m bench.search --quick                  # 100k messages
    .venv/bin/python bench/search.py --messages 20000 --db sqlite

The messages are written by the database itself (PostgreSQL: one INSERT … SELECT over generate_series) from a
vocabulary where a few words are common ("fee" is in about one message in six) and most are rare, so the
searches cover a common word, two words, a rare word, a prefix, a customer's name and number, a word with an
owner filter, a word found by its stem ("refunds") and a quoted phrase. Each kind runs `--repeat` times in a
shuffled order through storage.search.find, as the command does (one session, the whole answer: ids, names,
newest messages); p50 and p95 per kind and over all.

Baseline in the same run: building the answer alone (storage.search's last step: 20 conversations by id with
their newest messages), which every search pays whatever its index.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common

TARGET_P95_MS = 200.0
TARGET_MESSAGES = 1_000_000
COMMON = ["fee", "please", "thanks", "when", "school", "form", "bus", "class", "admission", "refund"]
RARE = [f"word{i}" for i in range(2000)]
OWNERS = ["U0ASHA", "U0RAVI", "U0BILAL", None]


def _text(rnd: random.Random) -> str:
    words = [rnd.choice(COMMON) if rnd.random() < 0.35 else rnd.choice(RARE) for _ in range(rnd.randint(3, 12))]
    return " ".join(words)


async def fill(url: str, messages: int, per_conversation: int) -> tuple[int, int]:
    """Stored messages (and their conversations); returns (conversations, channel id)."""
    from sqlalchemy import insert, text

    from storage.db import make_engine, make_sessionmaker, migrate
    from storage.models import Channel, Contact, Conversation, Message, utcnow

    await migrate(url)
    conversations = max(1, messages // per_conversation)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = utcnow()
    try:
        async with sessions() as s, s.begin():
            channel = Channel(name="lucknow", phone_number_id="1001", waba_id="2001", mode="coexistence", mps=5)
            s.add(channel)
            await s.flush()
            channel_id = channel.id
            await s.execute(insert(Contact), [{"wa_id": f"9198{i:08d}", "profile_name": f"Customer {i}",
                                               "opted_out": False, "created_at": now, "updated_at": now}
                                              for i in range(conversations)])
            await s.execute(insert(Conversation), [
                {"channel_id": channel_id, "contact_id": i + 1, "created_at": now, "slack_team": "default",
                 "owner": OWNERS[i % len(OWNERS)], "inbox_status": "resolved" if i % 3 == 0 else "open"}
                for i in range(conversations)])
        if engine.dialect.name == "postgresql":
            common = "ARRAY[" + ",".join(f"'{w}'" for w in COMMON) + "]"
            word = (f"CASE WHEN random() < 0.35 THEN ({common})[1 + floor(random() * {len(COMMON)})::int] "
                    f"ELSE 'word' || floor(random() * {len(RARE)})::int END")
            body = " || ' ' || ".join([word] * 6)
            async with engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO messages (wamid, conversation_id, direction, source, type, text, status_history, "
                    "is_history, is_note, wa_timestamp, created_at) "
                    f"SELECT 'wamid.' || g, 1 + (g % {conversations}), 'inbound', 'customer', 'text', {body}, "
                    "'[]', false, false, now() - (g || ' seconds')::interval, now() "
                    f"FROM generate_series(1, {messages}) AS g"))
                await conn.execute(text("ANALYZE messages"))
                await conn.execute(text("ANALYZE conversations"))
                await conn.execute(text("ANALYZE contacts"))
        else:
            rnd = random.Random(5)
            batch = []
            for g in range(1, messages + 1):
                batch.append({"wamid": f"wamid.{g}", "conversation_id": 1 + g % conversations,
                              "direction": "inbound", "source": "customer", "type": "text", "text": _text(rnd),
                              "status_history": [], "is_history": False, "is_note": False, "wa_timestamp": now,
                              "created_at": now})
                if len(batch) >= 5000:
                    async with sessions() as s, s.begin():
                        await s.execute(insert(Message), batch)
                    batch = []
            if batch:
                async with sessions() as s, s.begin():
                    await s.execute(insert(Message), batch)
    finally:
        await engine.dispose()
    return conversations, channel_id


def queries(conversations: int) -> dict[str, object]:
    from storage.search import Query, words_of

    return {
        "common word": Query(("fee",)),
        "two words": Query(("fee", "refund")),
        "rare word": Query(("word1234",)),
        "prefix": Query(("refu",)),
        "name": Query(words_of(f"Customer {conversations // 2}")),
        "number": Query(words_of(f"9198{conversations // 3:08d}")),
        "word + owner + status": Query(("school",), owner="U0ASHA", status="open"),
        "word by its stem": Query(("refunds",)),
        "quoted phrase": Query(phrases=(("fee", "refund"),)),
    }


async def measure(url: str, conversations: int, channel_id: int, repeat: int) -> dict[str, list[float]]:
    from storage.db import make_engine, make_sessionmaker
    from storage.search import find, hits_for

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    asked = queries(conversations)
    order = [kind for kind in asked for _ in range(repeat)]
    random.Random(3).shuffle(order)
    times: dict[str, list[float]] = {kind: [] for kind in asked}
    times["baseline: the answer alone"] = []
    ids = list(range(1, min(conversations, 20) + 1))
    try:
        async with sessions() as s:  # warm the connection and the caches once, as a running server has them
            for q in asked.values():
                await find(s, q, workspace="default", channel_ids=[channel_id])
        for kind in order:
            async with sessions() as s:
                t0 = time.perf_counter()
                await find(s, asked[kind], workspace="default", channel_ids=[channel_id])
                times[kind].append(time.perf_counter() - t0)
            async with sessions() as s:
                t0 = time.perf_counter()
                await hits_for(s, ids)
                times["baseline: the answer alone"].append(time.perf_counter() - t0)
    finally:
        await engine.dispose()
    return times


def run(messages: int, per_conversation: int, db: str, repeat: int) -> list[dict[str, object]]:
    if db == "postgres":
        with _common.pg_database() as url:
            t0 = time.perf_counter()
            conversations, channel_id = asyncio.run(fill(url, messages, per_conversation))
            filled = time.perf_counter() - t0
            times = asyncio.run(measure(url, conversations, channel_id, repeat))
    else:
        with _common.temp_dir("wabridge-bench-search-") as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            t0 = time.perf_counter()
            conversations, channel_id = asyncio.run(fill(url, messages, per_conversation))
            filled = time.perf_counter() - t0
            times = asyncio.run(measure(url, conversations, channel_id, repeat))
    print(f"filled {messages:,} messages over {conversations:,} conversations ({db}) in {filled:.0f} s")
    baseline = _common.percentile(times["baseline: the answer alone"], 95)
    rows: list[dict[str, object]] = []
    every = [t for kind, ts in times.items() if not kind.startswith("baseline") for t in ts]
    for kind, ts in [*times.items(), ("all searches", every)]:
        p95 = _common.percentile(ts, 95)
        rows.append({"search": kind, "db": db, "messages": messages, "runs": len(ts),
                     "p50 ms": _common.percentile(ts, 50) * 1000, "p95 ms": p95 * 1000,
                     "p95 ÷ baseline": p95 / max(baseline, 1e-9)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help=f"messages stored (default {TARGET_MESSAGES:,})")
    parser.add_argument("--per-conversation", type=int, default=20, help="messages per conversation (default 20)")
    parser.add_argument("--db", default="postgres", choices=["postgres", "sqlite"])
    parser.add_argument("--repeat", type=int, default=30, help="runs of each kind of search (default 30)")
    parser.add_argument("--quick", action="store_true", help="100k messages, 10 runs each")
    args = parser.parse_args(argv)
    messages = args.messages or (100_000 if args.quick else TARGET_MESSAGES)
    repeat = 10 if args.quick and args.repeat == 30 else args.repeat
    print(f"machine: {_common.machine()}")
    rows = run(messages, args.per_conversation, args.db, repeat)
    print(_common.table(rows, f"/wabridge find over {messages:,} messages"))
    overall = next(r for r in rows if r["search"] == "all searches")
    p95 = float(overall["p95 ms"])  # type: ignore[arg-type]
    if args.db == "postgres" and messages >= TARGET_MESSAGES:
        verdict = "met" if p95 < TARGET_P95_MS else "missed"
        print(f"target: p95 < {TARGET_P95_MS:.0f} ms over {TARGET_MESSAGES:,} messages on PostgreSQL: {verdict} "
              f"({p95:.1f} ms)")
    else:
        print(f"target applies to {TARGET_MESSAGES:,} messages on PostgreSQL; this run: p95 {p95:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
