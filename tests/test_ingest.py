"""Processing stored deliveries: idempotent, resumable, and faithful to direction and the 24-hour window."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select

from bot.app.factory import create_app
from bot.handlers import appkeys
from storage.models import Contact, Conversation, Message, SlackOutbox, WebhookLog
from tests.helpers import echo_text, envelope, inbound_text, make_settings, metadata, signed, status


async def _count(app, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with app[appkeys.SESSIONS]() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _drain(app) -> None:  # type: ignore[no-untyped-def]
    """Process until the log is empty (the worker is driven directly, not by its timer)."""
    from bot.bridge.meta_events import EventContext
    from bot.bridge.webhook_worker import WebhookWorker

    worker = WebhookWorker(app[appkeys.SESSIONS],
                           lambda: EventContext(app[appkeys.SETTINGS], app[appkeys.CHANNEL_IDS]),
                           app[appkeys.METRICS])
    while await worker.process_available():
        pass


async def _post(client, payload) -> None:  # type: ignore[no-untyped-def]
    body, headers = signed(payload)
    resp = await client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status == 200


async def test_same_delivery_posted_five_times_concurrently_stores_one_message(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url)))
    payload = inbound_text("wamid.DUP", "Is the Monday batch full?")
    await asyncio.gather(*(_post(client, payload) for _ in range(5)))
    app = client.app
    for _ in range(100):
        if await _count(app, WebhookLog, WebhookLog.processed_at.is_(None)) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _count(app, WebhookLog) == 5
    assert await _count(app, WebhookLog, WebhookLog.processed_at.is_(None)) == 0
    assert await _count(app, Message) == 1
    assert await _count(app, SlackOutbox) == 1
    assert await _count(app, Contact) == 1


async def test_two_instances_processing_one_database_store_each_wamid_once(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings(db_url)
    a = await aiohttp_client(create_app(settings, workers=False))
    b = await aiohttp_client(create_app(settings, run_migrations=False, workers=False))
    payloads = [inbound_text(f"wamid.{i}", f"msg {i}", ts=1_760_000_000 + i) for i in range(20)]
    for p in payloads:
        await _post(a, p)
        await _post(b, p)
    await asyncio.gather(_drain(a.app), _drain(b.app))
    assert await _count(a.app, WebhookLog, WebhookLog.processed_at.is_(None)) == 0
    assert await _count(a.app, Message) == 20
    assert await _count(a.app, SlackOutbox) == 20


async def test_unprocessed_logs_are_processed_after_a_restart(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(db_url)
    first = await aiohttp_client(create_app(settings, workers=False))  # a process that dies before processing
    await _post(first, inbound_text("wamid.R1", "before the crash"))
    await _post(first, echo_text("wamid.R2", "reply from the phone"))
    await first.close()
    second = await aiohttp_client(create_app(settings))
    for _ in range(100):
        if await _count(second.app, Message) == 2:
            break
        await asyncio.sleep(0.05)
    assert await _count(second.app, Message) == 2
    assert await _count(second.app, WebhookLog, WebhookLog.processed_at.is_(None)) == 0


async def test_echo_is_outbound_from_the_phone_app_and_does_not_move_the_window(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    await _post(client, inbound_text("wamid.IN", "When is the exam?", ts=1_760_000_000))
    await _post(client, echo_text("wamid.ECHO", "Saturday 10am", ts=1_760_009_000))
    await _drain(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        echo = (await s.scalars(select(Message).where(Message.wamid == "wamid.ECHO"))).one()
        conv = (await s.scalars(select(Conversation))).one()
    assert (echo.direction, echo.source, echo.text) == ("outbound", "phone_app", "Saturday 10am")
    assert conv.last_customer_message_at == datetime.fromtimestamp(1_760_000_000, UTC)


async def test_window_never_moves_backwards_on_out_of_order_deliveries(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    await _post(client, inbound_text("wamid.LATE", "second", ts=1_760_000_500))
    await _post(client, inbound_text("wamid.EARLY", "first", ts=1_760_000_000))
    await _drain(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        conv = (await s.scalars(select(Conversation))).one()
    assert conv.last_customer_message_at == datetime.fromtimestamp(1_760_000_500, UTC)


async def test_status_before_its_message_is_applied_when_the_message_arrives(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    await _post(client, status("wamid.OUT", "delivered", ts=1_760_000_300))
    await _post(client, status("wamid.OUT", "sent", ts=1_760_000_200))
    await _drain(client.app)
    await _post(client, echo_text("wamid.OUT", "Fees are due", ts=1_760_000_100))
    await _drain(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        msg = (await s.scalars(select(Message).where(Message.wamid == "wamid.OUT"))).one()
    assert msg.status == "delivered"
    assert [h["status"] for h in msg.status_history] == ["sent", "delivered"]


async def test_failed_status_records_meta_error_code(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    await _post(client, echo_text("wamid.F", "hello", ts=1_760_000_100))
    await _post(client, status("wamid.F", "failed", error_code=131047))
    await _post(client, status("wamid.F", "failed", error_code=131047))  # Meta's retry
    await _drain(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        msg = (await s.scalars(select(Message).where(Message.wamid == "wamid.F"))).one()
        notes = (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == "status"))).all()
    assert (msg.status, msg.error_code) == ("failed", 131047)
    assert len(notes) == 1 and notes[0].payload["error_code"] == 131047


async def test_a_batch_with_several_entries_and_changes_is_fully_applied(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    one = inbound_text("wamid.X1", "one")["entry"][0]
    two = echo_text("wamid.X2", "two")["entry"][0]
    three = envelope("messages", {"messaging_product": "whatsapp", "metadata": metadata(),
                                  "contacts": [{"profile": {"name": "Asha"}, "wa_id": "919800000001"}],
                                  "messages": [
                                      {"from": "919800000001", "id": "wamid.X3", "timestamp": "1760000001",
                                       "type": "text", "text": {"body": "three"}},
                                      {"from": "919800000001", "id": "wamid.X4", "timestamp": "1760000002",
                                       "type": "text", "text": {"body": "four"}}]})["entry"][0]
    one["changes"].append(two["changes"][0])
    batch = {"object": "whatsapp_business_account", "entry": [one, three]}
    await _post(client, batch)
    await _drain(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        got = sorted((await s.scalars(select(Message.wamid))).all())
    assert got == ["wamid.X1", "wamid.X2", "wamid.X3", "wamid.X4"]


async def test_stop_opts_the_contact_out_and_start_opts_back_in(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    await _post(client, inbound_text("wamid.S1", "stop", ts=1_760_000_000))
    await _drain(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        assert (await s.scalars(select(Contact))).one().opted_out is True
    await _post(client, inbound_text("wamid.S2", "START", ts=1_760_000_100))
    await _drain(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        assert (await s.scalars(select(Contact))).one().opted_out is False
        notes = (await s.scalars(select(SlackOutbox).where(SlackOutbox.kind == "note"))).all()
    assert len(notes) == 2


async def test_unknown_field_is_kept_in_the_log_and_marked_processed(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    await _post(client, envelope("some_future_field", {"anything": [1, 2, 3]}))
    await _drain(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        row = (await s.scalars(select(WebhookLog))).one()
    assert row.processed_at is not None and row.error is None
    assert row.event_type == "unknown"


async def test_meta_user_preference_stop_opts_the_contact_out(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    import json
    from pathlib import Path

    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    payload = json.loads((Path(__file__).parent / "fixtures" / "meta" / "user_preferences.json").read_text())
    await _post(client, payload)
    await _drain(client.app)
    async with client.app[appkeys.SESSIONS]() as s:
        contact = (await s.scalars(select(Contact))).one()
    assert contact.wa_id == "919812345678" and contact.opted_out is True
    assert contact.opt_out_reason == "User requested to stop marketing messages"
