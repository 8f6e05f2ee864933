"""The set-based path for plain customer messages and echoes (bot.bridge.message_batch)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text

from bot.app.factory import create_app
from bot.bridge.meta_events import EventContext, content_json
from bot.bridge.webhook_worker import WebhookWorker
from bot.core.workspace import DEFAULT_WORKSPACE
from bot.handlers import appkeys
from bot.meta import events as ev
from bot.meta.parser import event_type_of, parse_delivery
from storage import inbox, webhook_logs
from storage.contact_batch import ensure_conversations
from storage.models import Contact, ContactIdentity, Conversation, ConversationEvent, Message, SlackOutbox
from storage.outbox_kinds import MessagePost, outbox_row
from tests.harness import eventually
from tests.helpers import PNID, SLACK_CHANNEL, echo_text, inbound_text, make_settings

FIXTURES = Path(__file__).parent / "fixtures" / "meta"


def test_stored_content_is_what_asdict_gives_for_every_recorded_message() -> None:
    contents = []
    for path in sorted(FIXTURES.glob("*.json")):
        try:
            events = parse_delivery(json.loads(path.read_text()))
        except Exception:
            continue  # a recording of a malformed delivery: its parse error is tested elsewhere
        for e in events:
            for found in [getattr(e, "content", None)] + [getattr(m, "content", None)
                                                           for m in getattr(e, "messages", ())]:
                if isinstance(found, ev.MessageContent):
                    contents.append(found)
    assert len({c.kind for c in contents}) > 10  # text, media, location, contacts, interactive, … all seen
    for content in contents:
        stored = content_json(content)
        assert stored == asdict(content)
        assert json.dumps(stored) == json.dumps(asdict(content))  # same keys in the same order
        for key, value in stored.items():
            original = getattr(content, key)
            if isinstance(original, dict | list) and original:
                assert value is not original  # a copy: storing never shares the parsed event's objects


def _worker(app: Any) -> WebhookWorker:
    return WebhookWorker(app[appkeys.SESSIONS],
                         lambda: EventContext(app[appkeys.SETTINGS], app[appkeys.CHANNEL_IDS]), app[appkeys.METRICS])


async def _store(app: Any, payloads: list[dict[str, Any]]) -> None:
    async with app[appkeys.ENGINE].begin() as conn:
        await webhook_logs.store_many(conn, [(json.dumps(p).encode(), event_type_of(p)) for p in payloads])


async def test_the_set_based_path_owes_each_message_the_post_one_by_one_would(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    await _store(app, [inbound_text("wamid.NEW1", "Is the Monday batch full?", wa_id="919800000001", ts=1_760_000_000),
                       inbound_text("wamid.NEW2", "And Tuesday?", wa_id="919800000001", ts=1_760_000_005),
                       echo_text("wamid.NEW3", "Both have seats", to="919800000002", ts=1_760_000_009)])
    assert await _worker(app).process_available() == 3
    async with app[appkeys.SESSIONS]() as s:
        messages = {m.wamid: m for m in (await s.scalars(select(Message))).all()}
        posts = (await s.scalars(select(SlackOutbox).order_by(SlackOutbox.id))).all()
    assert [p.dedupe_key for p in posts] == [f"msg:{messages[w].id}"
                                             for w in ("wamid.NEW1", "wamid.NEW2", "wamid.NEW3")]
    for post in posts:
        message = next(m for m in messages.values() if post.dedupe_key == f"msg:{m.id}")
        expected = outbox_row(MessagePost(message.id, message.conversation_id), dedupe_key=post.dedupe_key,
                              order_ts=message.wa_timestamp)
        stored = {"dedupe_key": post.dedupe_key, "thread_key": post.thread_key, "kind": post.kind,
                  "payload": post.payload, "order_ts": post.order_ts, "conversation_id": post.conversation_id,
                  "attempts": post.attempts, "slack_team": post.slack_team}
        assert stored == {k: v for k, v in expected.items() if k != "created_at"}
        assert post.fence == 0 and post.done_at is None and post.owner_id is None
        item = MessagePost.from_row(post.payload, post.conversation_id)
        assert item == MessagePost(message.id, message.conversation_id)
    first = messages["wamid.NEW1"]
    assert (first.status_history, first.is_history, first.is_note, first.campaign_id) == ([], False, False, None)
    assert first.content == content_json(parse_delivery(inbound_text("wamid.NEW1", "Is the Monday batch full?"))[0]
                                         .content)  # type: ignore[union-attr]


async def test_known_customers_are_found_with_one_statement(aiohttp_client, db_url) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    channel_id = app[appkeys.CHANNEL_IDS][PNID]
    wanted = {(channel_id, f"91980000{i:04d}", SLACK_CHANNEL) for i in range(30)}
    async with app[appkeys.SESSIONS]() as s, s.begin():
        created = await ensure_conversations(s, wanted, {"919800000003": "Asha"})
    assert len({k.conversation_id for k in created.values()}) == 30
    assert created[(channel_id, "919800000003")].profile_name == "Asha"
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(app[appkeys.ENGINE].sync_engine, "before_cursor_execute", note)
    try:
        async with app[appkeys.SESSIONS]() as s, s.begin():
            found = await ensure_conversations(s, wanted)
    finally:
        event.remove(app[appkeys.ENGINE].sync_engine, "before_cursor_execute", note)
    assert found == created
    assert len([st for st in statements if not st.startswith(("BEGIN", "COMMIT"))]) == 1


async def test_a_customer_created_meanwhile_by_another_batch_is_found_not_doubled(
    aiohttp_client, pg_url  # type: ignore[no-untyped-def]
) -> None:
    """Read first, then insert what was missing: another transaction may create the same rows in between."""
    client = await aiohttp_client(create_app(make_settings(pg_url), workers=False))
    app = client.app
    sessions = app[appkeys.SESSIONS]
    channel_id = app[appkeys.CHANNEL_IDS][PNID]
    wanted = {(channel_id, "919800000001", SLACK_CHANNEL), (channel_id, "919800000002", SLACK_CHANNEL)}
    async with sessions() as other:
        await other.begin()
        theirs = await ensure_conversations(other, {(channel_id, "919800000001", SLACK_CHANNEL)},
                                            {"919800000001": "Ravi"})

        async def ours() -> dict[Any, Any]:
            async with sessions() as s, s.begin():
                return await ensure_conversations(s, wanted, {"919800000001": "Someone else"})

        task = asyncio.create_task(ours())

        async def waiting() -> bool:  # our insert waits for the other transaction's row
            async with sessions() as s:
                return bool(await s.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")))

        await eventually(waiting)
        await other.commit()
    mine = await asyncio.wait_for(task, timeout=30)
    key = (channel_id, "919800000001")
    assert mine[key] == theirs[key]  # the other transaction's contact and conversation, named by it
    assert mine[key].profile_name == "Ravi"
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Contact)) == 2
        assert await s.scalar(select(func.count()).select_from(Conversation)) == 2


async def test_one_batch_reopens_the_resolved_and_wakes_the_snoozed_leaving_the_rest(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    worker = _worker(app)
    customers = ["919800000001", "919800000002", "919800000003"]
    await _store(app, [inbound_text(f"wamid.A{i}", "hello", wa_id=w, ts=1_760_000_000)
                       for i, w in enumerate(customers)])
    assert await worker.process_available() == 3
    async with app[appkeys.SESSIONS]() as s:
        convs = dict((await s.execute(select(Contact.wa_id, Conversation.id)
                                      .join(Conversation, Conversation.contact_id == Contact.id))).tuples().all())
    resolved, snoozed, still = (convs[w] for w in customers)
    at = datetime.fromtimestamp(1_760_000_100, UTC)
    async with app[appkeys.SESSIONS]() as s, s.begin():
        assert await inbox.apply(s, inbox.Change(resolved, DEFAULT_WORKSPACE, inbox.InboxAction.RESOLVE, "UAGENT", at,
                                                 "resolve-1")) is inbox.Outcome.DONE
        assert await inbox.apply(s, inbox.Change(snoozed, DEFAULT_WORKSPACE, inbox.InboxAction.SNOOZE, "UAGENT", at,
                                                 "snooze-1", until=at + timedelta(days=1))) is inbox.Outcome.DONE
    await _store(app, [inbound_text(f"wamid.B{i}", "me again", wa_id=w, ts=1_760_000_200)
                       for i, w in enumerate(customers)])
    assert await worker.process_available() == 3
    async with app[appkeys.SESSIONS]() as s:
        rows = {r.id: r for r in (await s.scalars(select(Conversation))).all()}
        events = (await s.execute(select(ConversationEvent.conversation_id, ConversationEvent.action,
                                         ConversationEvent.actor).order_by(ConversationEvent.id))).tuples().all()
        notes = (await s.scalars(select(SlackOutbox.dedupe_key).where(SlackOutbox.kind == "note"))).all()
    assert (rows[resolved].inbox_status, rows[snoozed].snoozed_until) == ("open", None)
    assert (rows[still].inbox_status, rows[still].snoozed_until) == ("open", None)
    assert events[2:] == [(resolved, "reopen", "customer"), (snoozed, "wake", "customer")]
    assert len(notes) == 2 and {n.split(":")[1] for n in notes} == {"customer", "customer-wake"}


async def test_a_former_number_is_left_to_the_handlers_not_made_a_new_contact(
    aiohttp_client, db_url  # type: ignore[no-untyped-def]
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_url), workers=False))
    app = client.app
    channel_id = app[appkeys.CHANNEL_IDS][PNID]
    old, new, other = "919800000001", "919800000002", "919800000003"
    async with app[appkeys.SESSIONS]() as s, s.begin():
        keys = await ensure_conversations(s, {(channel_id, new, SLACK_CHANNEL)})
        s.add(ContactIdentity(contact_id=keys[(channel_id, new)].contact_id, kind="phone", value=old))
    moved: set[str] = set()
    async with app[appkeys.SESSIONS]() as s, s.begin():
        found = await ensure_conversations(s, {(channel_id, old, SLACK_CHANNEL), (channel_id, other, SLACK_CHANNEL)},
                                           moved=moved)
    assert moved == {old}
    assert set(found) == {(channel_id, other)}
    async with app[appkeys.SESSIONS]() as s:
        assert set((await s.scalars(select(Contact.wa_id))).all()) == {new, other}
