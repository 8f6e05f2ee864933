"""Status storm: customers' messages reach Slack while a campaign's statuses pour in; and a worker's drain rate.

Run from the repository root:

    .venv/bin/python -m bench.status_storm                       # 2,400 recipients at 80 mps, then 10,000
    .venv/bin/python -m bench.status_storm --quick               # 240 recipients, 5 s baseline
    .venv/bin/python -m bench.status_storm --recipients 2400 --mps 80
    .venv/bin/python -m bench.status_storm --drain 50000         # `serve --role worker` alone on a backlog
    .venv/bin/python -m bench.status_storm --drain 2000 --quick
    .venv/bin/python -m bench.status_storm --with-retention 200000   # retention deletes old messages meanwhile

Storm: `serve` runs on a fresh PostgreSQL database with a private Redis; the Graph stand-in (a process of its
own) answers every campaign send with a `sent`, `delivered` and `read` status webhook, signed, as Meta does,
so a campaign at 80 mps brings about 240 deliveries/s. Meanwhile customers write, one message every 1.25 s
(under Slack's one post per second per channel; see LIVE_INTERVAL), over 20 conversations; each
message carries a marker, and its latency is webhook POST -> the Slack stand-in receiving chat.postMessage.
The baseline is the same customer traffic with no campaign, in the same run, before the campaign starts.
Also printed: how long after the last status webhook the last one was applied (no delivery left pending).

With retention (`--with-retention N`): before each campaign, N messages older than `retention.messages_days`
are stored, each with a Slack post of its own, and the retention pass (every second here) deletes them in its
batches while the storm runs, owing each post a redaction that the server's redaction worker carries out
(chat.update at the lowest priority, behind live posts): the live p99 is then measured with retention at work
(docs/privacy.md); "retention rows" is the messages it deleted, "posts redacted" the Slack posts redacted by
the end of the storm (paced at Slack's chat.update allowance, so far fewer).

Drain: N mixed deliveries (70 % statuses of campaign messages, 30 % customer messages over 500
conversations) are stored before `serve --role worker` starts; figures are deliveries applied per second,
CPU (share of one core) of the worker and of PostgreSQL, and SQL statements per delivery (the worker's
`wabridge_db_statements_total`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common
from bench.campaign_throughput import TEMPLATE, write_audience
from bench.mirror_latency import _send
from bot.meta.parser import event_type_of
from tests.helpers import PNID, inbound_text, status

# Slack takes about one chat.postMessage per second per channel (the pacer holds to it, bot/slack/pacing.py),
# and every conversation of a number shares its channel: live traffic above that rate queues in front of
# Slack whatever the bridge does, so the default stays under it. `--live-interval 0.5` shows the queue.
LIVE_INTERVAL = 1.25
CONVERSATIONS = 20
TARGET_P99_MS = 300.0
TARGET_APPLY_S = 5.0
TARGET_DRAIN_PER_S = 1000.0
SETTLE_TIMEOUT = 120.0


def _pending(db_url: str) -> bool:
    """Whether any delivery is still unprocessed (an indexed look-up, light on the database being measured)."""
    async def any_pending() -> bool:
        from sqlalchemy import select

        from storage.db import make_engine
        from storage.models import WebhookLog

        engine = make_engine(db_url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as conn:
                return (await conn.scalar(select(WebhookLog.id).where(WebhookLog.processed_at.is_(None))
                                          .order_by(WebhookLog.id).limit(1))) is not None
        finally:
            await engine.dispose()

    return asyncio.run(any_pending())


def _metric(url: str, name: str, label: str = "") -> float:
    """The sum of a /metrics sample over its labels (only those whose labels include `label`, when given)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(v) for labels, v in re.findall(rf"^{name}(?:{{([^}}]*)}})? ([0-9.e+]+)$", text, re.M)
               if label in labels)


def _latencies(standins: _common.Standins, sent: dict[int, float], tag: str) -> list[float]:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    arrived = _common.first_posts(standins, f"mlat-{tag}")
    while len(arrived) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.5)
        arrived = _common.first_posts(standins, f"mlat-{tag}")
    return [arrived[i] - t for i, t in sent.items() if i in arrived]


def _stats(values: Sequence[float]) -> dict[str, object]:
    return {"n": len(values), "p50 ms": _common.percentile(values, 50) * 1000,
            "p99 ms": _common.percentile(values, 99) * 1000, "max ms": max(values, default=float("nan")) * 1000}


def storm(recipients: Sequence[int], mps: int, baseline_seconds: float,
          live_rate: float = 1 / LIVE_INTERVAL, old_messages: int = 0) -> list[dict[str, object]]:
    """The baseline, then one campaign per size in `recipients` (each with old_messages for retention to delete
    during it); returns the table's rows."""
    tag = uuid.uuid4().hex[:6]
    rows: list[dict[str, object]] = []
    extra = {"retention": {"messages_days": RETENTION_DAYS, "interval_seconds": 1}} if old_messages else None
    with _common.temp_dir("wabridge-bench-storm-") as tmp, _common.Standins({PNID: mps}) as standins, \
            _common.redis_server() as redis_url, _common.pg_database() as db_url:
        config = _common.write_config(Path(tmp) / "app.yaml", database_url=db_url, redis_url=redis_url,
                                      graph_url=standins.graph_url, slack_api_url=standins.slack_api_url,
                                      channels=[_common.Channel("storm", PNID, mode="cloud_api", mps=mps)],
                                      extra=extra)
        with _common.Serve(config, log_dir=Path(tmp)) as serve:
            webhook = f"{serve.url}/webhooks/meta"
            sent, _, errors = asyncio.run(_send(webhook, live_rate, CONVERSATIONS, baseline_seconds, f"{tag}b"))
            rows.append({"run": "baseline (no campaign)", "recipients": 0, **_stats(
                _latencies(standins, sent, f"{tag}b")), "errors": errors, "statuses": 0, "applied after last s": "-",
                         "cpu serve": "-", "cpu pg": "-"})
            if old_messages:
                rows[0]["retention rows"] = rows[0]["posts redacted"] = "-"
            standins.send_status_webhooks(webhook)
            for n, count in enumerate(recipients):
                if old_messages:
                    asyncio.run(_old_messages(db_url, old_messages, n))
                rows.append(_one_storm(config, standins, serve, db_url, Path(tmp), count, mps, f"{tag}s{n}", n,
                                       live_rate))
                if old_messages:
                    rows[-1]["retention rows"] = _retained(serve.url, old_messages * (n + 1)) - old_messages * n
                    rows[-1]["posts redacted"] = int(_metric(serve.url, "wabridge_retention_rows_total",
                                                             'table="slack_posts"'))
    return rows


RETENTION_DAYS = 30


async def _old_messages(db_url: str, n: int, block: int) -> None:
    """n messages of one customer, older than the retention period, each with its Slack post (the stand-in
    answers message_not_found to their redaction: the cost is the same, calls and rows), for the retention pass
    to delete."""
    from datetime import timedelta

    from sqlalchemy import insert, select

    from storage.db import make_engine, make_sessionmaker
    from storage.models import Channel, Contact, Conversation, Message, utcnow

    engine = make_engine(db_url)
    old = utcnow() - timedelta(days=RETENTION_DAYS * 2)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            channel_id = await s.scalar(select(Channel.id).where(Channel.name == "storm"))
            contact = Contact(wa_id=f"9199{block:08d}")
            s.add(contact)
            await s.flush()
            conv = Conversation(channel_id=channel_id, contact_id=contact.id, slack_channel="C0BENCH",
                                slack_thread_ts=f"1500000000.{block:06d}")
            s.add(conv)
            await s.flush()
            conv_id = conv.id
        for start in range(0, n, 5000):
            async with engine.begin() as conn:
                await conn.execute(insert(Message), [
                    {"conversation_id": conv_id, "direction": "inbound", "source": "customer", "type": "text",
                     "text": f"old message {i}", "wamid": f"wamid.old.{block}.{i}", "wa_timestamp": old,
                     "slack_ts": f"1600{block:06d}.{i:06d}",
                     "created_at": old, "status_history": [], "is_history": False, "is_note": False}
                    for i in range(start, min(n, start + 5000))])
    finally:
        await engine.dispose()


def _retained(url: str, at_least: int) -> int:
    """Messages the retention pass has deleted so far, once at least `at_least` (or the settle time is over)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    done = int(_metric(url, "wabridge_retention_rows_total", 'table="messages"'))
    while done < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
        done = int(_metric(url, "wabridge_retention_rows_total", 'table="messages"'))
    return done


def _one_storm(config: Path, standins: _common.Standins, serve: _common.Serve, db_url: str, tmp: Path,
               count: int, mps: int, tag: str, block: int, live_rate: float) -> dict[str, object]:
    audience = write_audience(tmp / f"audience-{block}.csv", count, block + 1)
    before = standins.status_feed()["delivered"]
    assert serve.proc is not None and standins.proc is not None
    meter = _common.CpuMeter({"serve": [serve.proc.pid], "postgres": "postgres"}).start()
    _common.cli(config, "campaign", "create", "--channel", "storm", "--template", TEMPLATE, "--language", "en",
                "--audience", str(audience), "--category", "marketing", "--name", f"storm {count}")
    # Customers write for as long as the campaign sends.
    sent, _, errors = asyncio.run(_send(f"{serve.url}/webhooks/meta", live_rate, CONVERSATIONS, count / mps, tag))
    deadline = time.monotonic() + SETTLE_TIMEOUT + count / mps
    feed = standins.status_feed()
    while time.monotonic() < deadline and (feed["delivered"] - before < 3 * count or feed["pending"]):
        time.sleep(0.25)
        feed = standins.status_feed()
    while time.monotonic() < deadline and _pending(db_url):
        time.sleep(0.1)
    applied_at = time.monotonic()
    cpu = meter.stop()
    latencies = _latencies(standins, sent, tag)
    return {"run": f"storm at {mps} mps", "recipients": count, **_stats(latencies), "errors": errors,
            "statuses": int(feed["delivered"] - before),
            "applied after last s": max(0.0, applied_at - float(feed["last_delivered_at"])),
            "cpu serve": cpu["serve"], "cpu pg": cpu["postgres"]}


def _backlog(n: int) -> list[tuple[bytes, str]]:
    """n deliveries: 70 % statuses (sent/delivered/read of campaign messages), 30 % customer messages."""
    out: list[tuple[bytes, str]] = []
    ts0 = int(time.time()) - 3600
    for i in range(n):
        if i % 10 < 7:
            payload = status(f"wamid.drain.c{i // 3}", ("sent", "delivered", "read")[i % 3], ts=ts0 + i,
                             recipient=f"9198{i // 3:08d}")
        else:
            payload = inbound_text(f"wamid.drain.m{i}", f"drain message {i}", wa_id=f"9197{i % 500:08d}",
                                   ts=ts0 + i)
        out.append((json.dumps(payload).encode(), event_type_of(payload)))
    return out


def drain(n: int) -> list[dict[str, object]]:
    """Store n deliveries, start `serve --role worker`, time it until none is pending."""
    with _common.temp_dir("wabridge-bench-drain-") as tmp, _common.Standins() as standins, \
            _common.redis_server() as redis_url, _common.pg_database() as db_url:
        config = _common.write_config(Path(tmp) / "app.yaml", database_url=db_url, redis_url=redis_url,
                                      graph_url=standins.graph_url, slack_api_url=standins.slack_api_url,
                                      channels=[_common.Channel("storm", PNID, mode="cloud_api", mps=80)])
        _common.cli(config, "migrate")
        asyncio.run(_store(db_url, _backlog(n)))
        serve = _common.Serve(config, log_dir=Path(tmp), role="worker", migrate=False, log_level="WARNING")
        with serve:
            assert serve.proc is not None
            started = time.monotonic()
            meter = _common.CpuMeter({"worker": [serve.proc.pid], "postgres": "postgres"}).start()
            while _pending(db_url):
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            cpu = meter.stop()
            statements = _metric(serve.url, "wabridge_db_statements_total")
    return [{"deliveries": n, "seconds": elapsed, "applied/s": n / elapsed, "cpu worker": cpu["worker"],
             "cpu pg": cpu["postgres"], "statements/delivery": statements / n}]


async def _store(db_url: str, rows: list[tuple[bytes, str]]) -> None:
    from storage import webhook_logs
    from storage.db import make_engine

    engine = make_engine(db_url)
    try:
        for start in range(0, len(rows), 1000):
            async with engine.begin() as conn:
                await webhook_logs.store_many(conn, rows[start:start + 1000])
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, nargs="+", default=None,
                        help="campaign sizes, in order (default 2400 10000; 240 with --quick)")
    parser.add_argument("--mps", type=int, default=80)
    parser.add_argument("--baseline-seconds", type=float, default=None, help="default 15 (5 with --quick)")
    parser.add_argument("--drain", type=int, default=0, metavar="N",
                        help="instead: the worker alone on a backlog of N stored deliveries")
    parser.add_argument("--live-interval", type=float, default=LIVE_INTERVAL, metavar="S",
                        help=f"seconds between two customer messages (default {LIVE_INTERVAL:g})")
    parser.add_argument("--with-retention", type=int, default=0, metavar="N",
                        help="store N messages past retention before each campaign; the retention pass deletes "
                             "them during it")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.drain:
        rows = drain(args.drain)
        print(_common.table(rows, f"Worker drain: {args.drain} deliveries (70 % statuses); {_common.machine()}"))
        rate = float(rows[0]["applied/s"])  # type: ignore[arg-type]
        print(f"\napplied {rate:.0f}/s (target >= {TARGET_DRAIN_PER_S:g}: "
              f"{'met' if rate >= TARGET_DRAIN_PER_S else 'MISSED'})")
        return 0
    sizes = args.recipients or ([240] if args.quick else [2400, 10000])
    rows = storm(sizes, args.mps, args.baseline_seconds or (5.0 if args.quick else 15.0), 1 / args.live_interval,
                 args.with_retention)
    print(_common.table(rows, f"Status storm: a customer message every {args.live_interval:g} s during campaigns at "
                              f"{args.mps} mps; {_common.machine()}"))
    for row in rows[1:]:
        p99, lag = float(row["p99 ms"]), float(row["applied after last s"])  # type: ignore[arg-type]
        print(f"{row['recipients']} recipients: live p99 {p99:.0f} ms (target < {TARGET_P99_MS:g}: "
              f"{'met' if p99 < TARGET_P99_MS else 'MISSED'}); statuses applied {lag:.1f} s after the last "
              f"(target < {TARGET_APPLY_S:g}: {'met' if lag < TARGET_APPLY_S else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
