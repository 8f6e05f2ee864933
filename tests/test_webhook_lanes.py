"""Lanes and batches: live deliveries go first, batches apply many deliveries at once, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app.factory import create_app
from bot.bridge import message_batch, meta_events
from bot.bridge.meta_events import EventContext
from bot.bridge.webhook_worker import WebhookWorker
from bot.core.loops import WEBHOOKS
from bot.core.metrics import Metrics
from bot.handlers import appkeys
from storage import webhook_logs
from storage.lanes import lane_for
from storage.models import Message, MessageStatus, SlackOutbox, WebhookLog
from tests.helpers import echo_text, inbound_text, make_settings, signed, status


def _worker(app: Any, metrics: Metrics | None = None, **kwargs: Any) -> WebhookWorker:
    return WebhookWorker(app[appkeys.SESSIONS],
                         lambda: EventContext(app[appkeys.SETTINGS], app[appkeys.CHANNEL_IDS]),
                         metrics or app[appkeys.METRICS], **kwargs)


async def _store(app: Any, payloads: list[dict[str, Any]]) -> list[int]:
    """Store deliveries as the ingest writer does (one multi-row INSERT), without processing them."""
    rows = [(json.dumps(p).encode(), _event_type(p)) for p in payloads]
    async with app[appkeys.ENGINE].begin() as conn:
        return await webhook_logs.store_many(conn, rows)


def _event_type(payload: dict[str, Any]) -> str:
    from bot.meta.parser import event_type_of

    return event_type_of(payload)


async def _count(app: Any, model: Any, *where: Any) -> int:
    async with app[appkeys.SESSIONS]() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _drain(worker: WebhookWorker) -> int:
    batches = 0
    while await worker.process_available():
        batches += 1
    return batches


async def _message(app: Any, wamid: str) -> Message:
    async with app[appkeys.SESSIONS]() as s:
        return (await s.scalars(select(Message).where(Message.wamid == wamid))).one()


@pytest.mark.parametrize(("event_type", "lane"), [
    ("message", "live"), ("smb_message_echo", "live"), ("mixed", "live"), ("status", "bulk"),
    ("history", "bulk"), ("app_state_sync", "bulk"), ("template_status", "bulk"), ("account_update", "bulk"),
    ("quality_update", "bulk"), ("unknown", "bulk"),
])
def test_lane_follows_the_event_type(event_type: str, lane: str) -> None:
    assert lane_for(event_type) == lane


async def test_lane_is_stored_on_the_ack_path(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    for payload in (inbound_text("wamid.IN", "hello"), status("wamid.OUT", "sent")):
        body, headers = signed(payload)
        assert (await client.post("/webhooks/meta", data=body, headers=headers)).status == 200
    async with client.app[appkeys.SESSIONS]() as s:
        lanes = dict((await s.execute(select(WebhookLog.event_type, WebhookLog.lane))).tuples().all())
    assert lanes == {"message": "live", "status": "bulk"}


async def test_customer_message_overtakes_a_status_storm(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    storm = [status(f"wamid.C{i}", state, ts=1_760_000_000 + i)
             for i in range(300) for state in ("sent", "delivered", "read")]
    await _store(app, storm[:450])
    worker = _worker(app, batch=50, bulk_batch=100)
    assert await worker.process_available() == 100  # a bulk batch is under way when the customer writes
    await _store(app, [inbound_text("wamid.LIVE", "Is my order ready?", ts=1_760_001_000)])
    await _store(app, storm[450:])
    assert await worker.process_available() == 1  # the very next batch is the customer's message alone
    assert await _count(app, Message, Message.wamid == "wamid.LIVE") == 1
    assert await _count(app, WebhookLog, WebhookLog.processed_at.is_(None)) == len(storm) - 100
    await _drain(worker)
    assert await _count(app, MessageStatus) == len(storm)


async def test_statuses_in_one_batch_are_coalesced_to_the_furthest_state_with_all_errors(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    worker = _worker(app)
    await _store(app, [echo_text("wamid.A", "Fees are due", ts=1_760_000_100),
                       echo_text("wamid.B", "See you", ts=1_760_000_101)])
    await _drain(worker)
    await _store(app, [
        status("wamid.A", "read", ts=1_760_000_400), status("wamid.A", "sent", ts=1_760_000_200),
        status("wamid.A", "delivered", ts=1_760_000_300), status("wamid.A", "sent", ts=1_760_000_200),
        status("wamid.B", "sent", ts=1_760_000_200), status("wamid.B", "failed", ts=1_760_000_300,
                                                             error_code=131047),
    ])
    assert await worker.process_available() == 6
    a, b = await _message(app, "wamid.A"), await _message(app, "wamid.B")
    assert a.status == "read"
    assert [h["status"] for h in a.status_history] == ["sent", "delivered", "read"]
    assert (b.status, b.error_code, b.error_title) == ("failed", 131047, "Re-engagement message")
    assert b.status_history[-1] == {"status": "failed", "at": datetime.fromtimestamp(1_760_000_300, UTC).isoformat(),
                                    "error_code": 131047}
    assert await _count(app, MessageStatus) == 5
    # Slack hears each state once: reactions for A, the failure note for B.
    keys = set(await _outbox_keys(app))
    assert {"status:wamid.A:sent", "status:wamid.A:delivered", "status:wamid.A:read",
            "status:wamid.B:sent", "status:wamid.B:failed"} <= keys


async def _outbox_keys(app: Any) -> list[str]:
    async with app[appkeys.SESSIONS]() as s:
        return list((await s.scalars(select(SlackOutbox.dedupe_key).order_by(SlackOutbox.id))).all())


async def test_status_stored_before_its_message_lands_on_it_across_lanes(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    worker = _worker(app)
    # The statuses are stored first; the echo (live lane) is still applied first.
    await _store(app, [status("wamid.OUT", "delivered", ts=1_760_000_300),
                       status("wamid.OUT", "sent", ts=1_760_000_200)])
    await _store(app, [echo_text("wamid.OUT", "Fees are due", ts=1_760_000_100)])
    await _drain(worker)
    msg = await _message(app, "wamid.OUT")
    assert msg.status == "delivered"
    assert [h["status"] for h in msg.status_history] == ["sent", "delivered"]
    # And the other way round: statuses applied in an earlier batch, message later.
    await _store(app, [status("wamid.OUT2", "read", ts=1_760_000_500)])
    await _drain(worker)
    await _store(app, [echo_text("wamid.OUT2", "Thanks", ts=1_760_000_400)])
    await _drain(worker)
    assert (await _message(app, "wamid.OUT2")).status == "read"


async def test_conversation_order_is_kept_across_lanes_and_batches(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    worker = _worker(app, batch=3, bulk_batch=5)
    payloads: list[dict[str, Any]] = []
    for i in range(12):
        ts = 1_760_000_000 + 10 * i
        if i % 3 == 2:
            payloads.append(echo_text(f"wamid.M{i}", f"reply {i}", ts=ts))
            payloads.append(status(f"wamid.M{i}", "delivered", ts=ts + 1))
        else:
            payloads.append(inbound_text(f"wamid.M{i}", f"msg {i}", ts=ts))
    for start in range(0, len(payloads), 4):  # arriving in several groups, lanes interleaved
        await _store(app, payloads[start:start + 4])
    assert await _drain(worker) > 3
    async with app[appkeys.SESSIONS]() as s:
        rows = (await s.execute(
            select(SlackOutbox.thread_key, SlackOutbox.payload, SlackOutbox.order_ts)
            .where(SlackOutbox.kind == "message").order_by(SlackOutbox.thread_key, SlackOutbox.order_ts,
                                                            SlackOutbox.id))).all()
        texts = {m.id: m.text for m in (await s.scalars(select(Message))).all()}
    assert {r.thread_key for r in rows} == {rows[0].thread_key}  # one conversation, one thread
    # The Slack outbox delivers a thread in order_ts order: that is WhatsApp's order.
    assert [texts[r.payload["message_id"]] for r in rows] == [
        f"reply {i}" if i % 3 == 2 else f"msg {i}" for i in range(12)]


async def test_a_poison_delivery_in_a_batch_of_500_fails_alone_and_keeps_its_retry(
    aiohttp_client, db_url, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    real = meta_events.on_inbound

    async def poisoned(session: Any, ctx: Any, e: Any) -> None:
        await real(session, ctx, e)  # its writes must be rolled back with it
        if e.wamid == "wamid.POISON":
            raise RuntimeError("cannot apply this delivery")

    real_plain = message_batch.store_plain

    async def poisoned_plain(session: Any, ctx: Any, messages: Any, convs: Any) -> None:
        await real_plain(session, ctx, messages, convs)
        if any(m.event.wamid == "wamid.POISON" for m in messages):
            raise RuntimeError("cannot apply this delivery")

    monkeypatch.setitem(meta_events._HANDLERS, meta_events.ev.InboundMessage, poisoned)
    monkeypatch.setattr(message_batch, "store_plain", poisoned_plain)
    payloads: list[dict[str, Any]] = []
    for i in range(500):
        if i == 250:
            payloads.append(inbound_text("wamid.POISON", "bad", wa_id="919800000250", ts=1_760_000_000 + i))
        elif i % 2:
            payloads.append(inbound_text(f"wamid.P{i}", f"msg {i}", wa_id=f"9198{i:08d}", ts=1_760_000_000 + i))
        else:
            payloads.append(echo_text(f"wamid.P{i}", f"reply {i}", to=f"9198{i:08d}", ts=1_760_000_000 + i))
    ids = await _store(app, payloads)
    worker = _worker(app, batch=500, bulk_batch=500)
    assert await worker.process_available() == 500
    assert await _count(app, Message) == 499
    assert await _count(app, Message, Message.wamid == "wamid.POISON") == 0
    assert await _count(app, SlackOutbox, SlackOutbox.kind == "message") == 499
    await _assert_failed_alone(app, ids[250], "cannot apply this delivery")


async def _assert_failed_alone(app: Any, log_id: int, error: str) -> None:
    async with app[appkeys.SESSIONS]() as s:
        poison = (await s.scalars(select(WebhookLog).where(WebhookLog.id == log_id))).one()
        pending = await s.scalar(select(func.count()).select_from(WebhookLog)
                                 .where(WebhookLog.processed_at.is_(None)))
    assert pending == 1
    assert poison.processed_at is None and poison.attempts == 1
    assert poison.error is not None and error in poison.error
    assert poison.claimed_until is not None  # retried after its back-off, like any failed delivery


@pytest.mark.parametrize("kind", ["status", "message"])
async def test_a_delivery_postgresql_refuses_in_a_batch_of_500_fails_alone(
    aiohttp_client, pg_url, kind  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(pg_url), workers=False))
    app = client.app
    long_wamid = "wamid." + "X" * 300  # longer than the wamid column
    if kind == "status":
        payloads = [status(f"wamid.S{i}", "delivered", ts=1_760_000_000 + i) for i in range(500)]
        payloads[250] = status(long_wamid, "delivered")
    else:
        payloads = [inbound_text(f"wamid.M{i}", f"msg {i}", wa_id=f"9198{i % 50:08d}", ts=1_760_000_000 + i)
                    for i in range(500)]
        payloads[250] = inbound_text(long_wamid, "bad", wa_id="919800000007")
    ids = await _store(app, payloads)
    worker = _worker(app, batch=500, bulk_batch=500)
    assert await worker.process_available() == 500
    model = MessageStatus if kind == "status" else Message
    assert await _count(app, model) == 499
    if kind == "message":
        assert await _count(app, SlackOutbox, SlackOutbox.kind == "message") == 499
    await _assert_failed_alone(app, ids[250], "StringDataRightTruncation")


async def test_the_same_delivery_five_times_in_one_batch_gives_one_row_and_one_post(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    await _store(app, [echo_text("wamid.E", "Saturday 10am", ts=1_760_000_100)] * 5
                 + [inbound_text("wamid.DUP", "Is the Monday batch full?")] * 5
                 + [status("wamid.E", "failed", error_code=131047)] * 5)
    assert await _drain(_worker(app)) == 2
    assert await _count(app, Message, Message.wamid == "wamid.DUP") == 1
    assert await _count(app, SlackOutbox, SlackOutbox.kind == "message") == 2
    assert await _count(app, MessageStatus) == 1
    assert await _count(app, SlackOutbox, SlackOutbox.kind == "status") == 1
    assert [h["status"] for h in (await _message(app, "wamid.E")).status_history] == ["failed"]
    assert await _count(app, WebhookLog, WebhookLog.processed_at.is_(None)) == 0


async def test_two_workers_on_one_postgresql_never_apply_a_delivery_twice(
    aiohttp_client, pg_url  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings(pg_url)
    a = await aiohttp_client(create_app(settings, workers=False))
    b = await aiohttp_client(create_app(settings, run_migrations=False, workers=False))
    payloads: list[dict[str, Any]] = []
    for i in range(600):
        if i % 10 < 3:
            payloads.append(inbound_text(f"wamid.T{i}", f"msg {i}", wa_id=f"9198{i % 40:08d}", ts=1_760_000_000 + i))
        else:
            payloads.append(status(f"wamid.T{i - i % 10}", ("sent", "delivered", "read")[i % 3],
                                   ts=1_760_000_000 + i))
    await _store(a.app, payloads)
    ma, mb = Metrics(), Metrics()
    wa, wb = _worker(a.app, ma, batch=20, bulk_batch=40), _worker(b.app, mb, batch=20, bulk_batch=40)
    await asyncio.gather(_drain(wa), _drain(wb))

    def applied(m: Metrics) -> float:
        return sum(s.value for metric in m.webhooks_processed.collect() for s in metric.samples
                   if s.name.endswith("_total") and s.labels["outcome"] == "ok")

    assert applied(ma) > 0 and applied(mb) > 0  # both took part
    assert applied(ma) + applied(mb) == len(payloads)  # and no delivery was applied by both
    async with a.app[appkeys.SESSIONS]() as s:
        attempts = (await s.scalars(select(WebhookLog.attempts))).all()
    assert set(attempts) == {1}
    assert await _count(a.app, WebhookLog, WebhookLog.processed_at.is_(None)) == 0
    assert await _count(a.app, Message) == 180
    assert await _count(a.app, SlackOutbox, SlackOutbox.kind == "message") == 180


async def test_a_customer_message_is_applied_while_a_bulk_batch_is_still_in_progress(
    aiohttp_client, pg_url, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    from bot.bridge import webhook_batch

    client = await aiohttp_client(create_app(make_settings(pg_url), workers=False))
    app = client.app
    entered, release = asyncio.Event(), asyncio.Event()
    real = webhook_batch.apply_status_batch

    async def slow_statuses(session: Any, rows: Any) -> Any:
        entered.set()
        await release.wait()  # the bulk batch holds its transaction open meanwhile
        return await real(session, rows)

    monkeypatch.setattr(webhook_batch, "apply_status_batch", slow_statuses)
    await _store(app, [status(f"wamid.C{i}", "sent", ts=1_760_000_000 + i) for i in range(200)])
    worker = _worker(app, poll_interval=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(entered.wait(), timeout=60)
        await _store(app, [inbound_text("wamid.LIVE", "Is my order ready?", ts=1_760_001_000)])
        worker.wakes.wake(WEBHOOKS)
        for _ in range(600):
            if await _count(app, Message, Message.wamid == "wamid.LIVE"):
                break
            await asyncio.sleep(0.05)
        assert await _count(app, Message, Message.wamid == "wamid.LIVE") == 1
        assert await _count(app, MessageStatus) == 0  # the bulk batch has not committed yet
        release.set()
        for _ in range(600):
            if not await _count(app, WebhookLog, WebhookLog.processed_at.is_(None)):
                break
            await asyncio.sleep(0.05)
        assert await _count(app, MessageStatus) == 200
    finally:
        release.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_status_committing_while_its_echo_is_being_stored_is_still_folded_in(
    aiohttp_client, pg_url, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    """The two lanes race: each transaction looks for the other's row before that row is committed."""
    from bot.meta.parser import parse_delivery
    from storage import status_batch
    from storage.status_fold import StatusRow

    client = await aiohttp_client(create_app(make_settings(pg_url), workers=False))
    app = client.app
    sessions = app[appkeys.SESSIONS]
    inserted, go_on = asyncio.Event(), asyncio.Event()
    real_insert = status_batch._insert_new

    async def insert_then_wait(session: Any, rows: Any) -> Any:
        added = await real_insert(session, rows)
        inserted.set()
        await go_on.wait()  # the status is written, not committed, not yet folded
        return added

    monkeypatch.setattr(status_batch, "_insert_new", insert_then_wait)

    async def statuses() -> None:
        async with sessions() as s, s.begin():
            await status_batch.apply_status_batch(s, [StatusRow("wamid.RACE", "delivered",
                                                                datetime.fromtimestamp(1_760_000_200, UTC))])

    status_task = asyncio.create_task(statuses())
    await asyncio.wait_for(inserted.wait(), timeout=30)
    echo = parse_delivery(echo_text("wamid.RACE", "Fees are due", ts=1_760_000_100))
    ctx = EventContext(app[appkeys.SETTINGS], app[appkeys.CHANNEL_IDS])
    async with sessions() as s, s.begin():
        for event in echo:
            await meta_events.apply_event(s, ctx, event)  # finds no status: it is not committed
        go_on.set()
        await asyncio.sleep(0.5)  # the status batch looks for the message now; it is not committed either
        assert not status_task.done()  # it waits for this transaction instead of missing it
    await asyncio.wait_for(status_task, timeout=30)
    msg = await _message(app, "wamid.RACE")
    assert msg.status == "delivered" and [h["status"] for h in msg.status_history] == ["delivered"]
    assert await _count(app, SlackOutbox, SlackOutbox.kind == "status") == 1


async def test_the_processing_lag_is_read_at_most_once_a_second_not_after_every_batch(
    aiohttp_client, db_url, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    from bot.bridge import webhook_worker

    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    reads: list[float] = []
    real = webhook_logs.oldest_pending_age

    async def counted(sessions: Any) -> float:
        reads.append(await real(sessions))
        return reads[-1]

    monkeypatch.setattr(webhook_logs, "oldest_pending_age", counted)
    monkeypatch.setattr(webhook_worker, "LAG_REFRESH", 3600.0)
    metrics = Metrics()
    worker = _worker(app, metrics, batch=2)
    await _store(app, [inbound_text(f"wamid.L{i}", f"msg {i}", ts=1_760_000_000 + i) for i in range(6)])
    assert await _drain(worker) == 3
    assert len(reads) == 1 and reads[0] > 0  # read after the first batch only, while four deliveries waited
    monkeypatch.setattr(webhook_worker, "LAG_REFRESH", 0.0)  # the interval has passed
    assert await worker.process_available() == 0
    assert reads[1:] == [0.0]
    assert metrics.processing_lag._value.get() == 0.0  # type: ignore[attr-defined]
