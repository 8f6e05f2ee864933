"""Satisfaction surveys through both stand-ins: sent once after a resolve from Slack, recorded from a button
reply (credited to the owner, noted in the thread, no reopen, no wait), with a comment from the next message;
skipped outside the window, for opted-out customers, in notes-only channels, within the quiet days."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.core.origin import Source
from bot.handlers import appkeys
from bot.ops.insights_store import period_figures
from bot.slack.inbox_view import REOPEN_ACTION, RESOLVE_ACTION, TAKE_ACTION
from bot.standins.graph import SendRecord
from storage.models import AutoReply, Contact, Conversation, Message
from tests.harness import WA_ID, Bridge, BridgeFactory, bridges, eventually, now_ts, thread_with
from tests.helpers import BUSINESS, SLACK_CHANNEL, envelope, inbound_text, metadata
from tests.test_away_messages import settled_rows
from tests.test_slack_inbox import RAVI, click, inbox_line

SURVEY = {"enabled": True, "texts": {"en": {"question": "How did we do, from 1 to 3?",
                                            "buttons": ["Great", "Fine", "Poor"]}}}


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


def tap(wamid: str, button: dict[str, Any], *, context: str, ts: int) -> dict[str, Any]:
    """The customer tapping one of a survey's reply buttons, as Meta delivers it."""
    reply = button["reply"]
    msg = {"from": WA_ID, "id": wamid, "timestamp": str(ts), "type": "interactive",
           "context": {"from": BUSINESS, "id": context},
           "interactive": {"type": "button_reply", "button_reply": {"id": reply["id"], "title": reply["title"]}}}
    return envelope("messages", {"messaging_product": "whatsapp", "metadata": metadata(),
                                 "contacts": [{"profile": {"name": "Ravi"}, "wa_id": WA_ID}], "messages": [msg]})


def surveys(b: Bridge) -> list[SendRecord]:
    return [r for r in b.graph.sends if r.to == WA_ID and r.type == "interactive"]


async def rows(b: Bridge) -> list[AutoReply]:
    """Every survey once none is left pending or half-sent (this process's loop may be sending one right now)."""
    return await settled_rows(b)


async def customer_thread(b: Bridge, *, age: int = 120) -> tuple[str, int]:
    b.slack.add_user(RAVI, "ravi", real_name="Ravi")
    b.slack.join(SLACK_CHANNEL, RAVI)
    await b.webhook(inbound_text("wamid.IN1", "about my fee refund", ts=now_ts(-age)))
    parent, _ = await thread_with(b, 1)
    return str(parent["ts"]), (await b.one(Conversation)).id


async def test_a_resolve_sends_one_survey_and_the_answer_is_kept_for_the_owner(make: BridgeFactory) -> None:
    b = await make(channel_extra={"csat": SURVEY})
    ts, conv_id = await customer_thread(b)
    await b.interaction(click(TAKE_ACTION, RAVI, conv_id, "1.1"))
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{RAVI}>"))
    resolve = click(RESOLVE_ACTION, "U0STAFF", conv_id, "1.2")
    for _ in range(3):  # Slack retrying the click
        await b.interaction(resolve)
    sent = (await eventually(lambda: surveys(b)))[0]
    body = sent.payload["interactive"]
    assert body["type"] == "button" and body["body"]["text"] == "How did we do, from 1 to 3?"
    assert [x["reply"]["title"] for x in body["action"]["buttons"]] == ["Great", "Fine", "Poor"]
    shown = await eventually(lambda: [r for r in b.replies(ts) if "satisfaction survey" in str(r.get("blocks"))])
    assert "Sent automatically by Wabridge: the satisfaction survey" in str(shown[0]["blocks"])
    assert "How did we do, from 1 to 3?" in str(shown[0]["blocks"])
    [row] = await rows(b)
    assert (row.kind, row.state, row.staff, row.score) == ("csat", "sent", RAVI, None)
    assert len(surveys(b)) == 1

    # The customer taps "Great" (Meta delivers it twice): kept once, noted once, the conversation stays resolved.
    great = tap("wamid.TAP1", body["action"]["buttons"][0], context=str(sent.wamid), ts=now_ts())
    await b.webhook(great)
    await b.webhook(great)
    note = await eventually(lambda: [r for r in b.replies(ts) if "rated this conversation" in str(r)])
    assert "*Great* (3/3)" in str(note[0]) and f"<@{RAVI}>" in str(note[0])
    [row] = await rows(b)
    assert (row.score, row.answer, row.staff) == (3, "Great", RAVI)
    assert (await b.one(Conversation)).inbox_status == "resolved"
    figures = await period_figures(b.app[appkeys.SESSIONS], since=datetime.now(UTC) - timedelta(days=1))
    assert figures.waiting == ()  # the tap asks nothing of anyone

    # A later tap on another button changes nothing; a text soon after is the answer's comment.
    await b.webhook(tap("wamid.TAP2", body["action"]["buttons"][2], context=str(sent.wamid), ts=now_ts()))
    await b.webhook(inbound_text("wamid.C1", "Asha explained the refund very well", ts=now_ts()))
    await eventually(lambda: b.count(Message, Message.wamid == "wamid.C1"))
    [row] = await rows(b)
    assert (row.score, row.comment) == (3, "Asha explained the refund very well")
    assert len([r for r in b.replies(ts) if "rated this conversation" in str(r)]) == 1


async def test_no_second_survey_within_the_quiet_days(make: BridgeFactory) -> None:
    b = await make(channel_extra={"csat": SURVEY})
    ts, conv_id = await customer_thread(b)
    await b.interaction(click(RESOLVE_ACTION, RAVI, conv_id, "2.1"))
    await eventually(lambda: surveys(b))
    await b.interaction(click(REOPEN_ACTION, RAVI, conv_id, "2.2"))
    await eventually(lambda: "*Open*" in inbox_line(b, ts))
    await b.interaction(click(RESOLVE_ACTION, RAVI, conv_id, "2.3"))
    await eventually(lambda: "*Resolved*" in inbox_line(b, ts))
    assert [r.state for r in await rows(b)] == ["sent"]
    assert len(surveys(b)) == 1


async def _resolved_without_survey(b: Bridge, conv_id: int, ts: str) -> None:
    await b.interaction(click(RESOLVE_ACTION, RAVI, conv_id, "3.1"))
    await eventually(lambda: "*Resolved*" in inbox_line(b, ts))
    assert await rows(b) == []
    assert surveys(b) == []


async def test_no_survey_outside_the_window(make: BridgeFactory) -> None:
    b = await make(channel_extra={"csat": SURVEY})
    ts, conv_id = await customer_thread(b, age=25 * 3600)
    await _resolved_without_survey(b, conv_id, ts)


async def test_no_survey_to_an_opted_out_customer(make: BridgeFactory) -> None:
    b = await make(channel_extra={"csat": SURVEY})
    ts, conv_id = await customer_thread(b)
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        await s.execute(update(Contact).values(opted_out=True))
    await _resolved_without_survey(b, conv_id, ts)


async def test_no_survey_when_off_or_in_a_notes_only_channel(make: BridgeFactory) -> None:
    off = await make()
    ts, conv_id = await customer_thread(off)
    await _resolved_without_survey(off, conv_id, ts)


async def test_no_survey_in_a_notes_only_channel(make: BridgeFactory) -> None:
    b = await make(channel_extra={"csat": SURVEY, "thread_replies": "notes_only"})
    ts, conv_id = await customer_thread(b)
    await _resolved_without_survey(b, conv_id, ts)


async def test_a_survey_the_customer_cannot_get_any_more_is_skipped_not_sent(make: BridgeFactory) -> None:
    # Owed at the resolve, but the customer opts out before the sender takes it: it looks again and skips.
    b = await make(channel_extra={"csat": SURVEY})
    ts, conv_id = await customer_thread(b)
    sender = b.app[appkeys.AUTO_REPLIES]
    sender.run_once = _never  # type: ignore[method-assign]  # this process's loop takes nothing meanwhile
    await b.interaction(click(RESOLVE_ACTION, RAVI, conv_id, "4.1"))
    await eventually(lambda: "*Resolved*" in inbox_line(b, ts))
    async with b.app[appkeys.SESSIONS]() as s, s.begin():
        assert (await s.scalars(select(AutoReply.state))).all() == ["pending"]
        await s.execute(update(Contact).values(opted_out=True))
    del sender.run_once
    [row] = await rows(b)
    assert (row.state, row.reason) == ("skipped", "the customer opted out")
    assert surveys(b) == [] and await b.count(Message, Message.source == Source.BRIDGE.value) == 0


async def _never(now: datetime | None = None) -> int:
    return 0


@pytest.mark.parametrize(("csat", "key", "words"), [
    ({"texts": {"en": {"buttons": ["Great", "OK"]}}}, "csat.texts.en.buttons", "at least 3"),
    ({"texts": {"en": {"buttons": ["Great", "OK", "A very long button title"]}}}, "csat.texts.en.buttons",
     "1 to 20 characters"),
    ({"texts": {"en": {"buttons": ["Great", "OK", "OK"]}}}, "csat.texts.en.buttons", "different titles"),
    ({"language": "hi"}, "csat.language", "no entry under csat.texts"),
    ({"quiet_days": -1}, "csat.quiet_days", "greater than or equal to 0"),
], ids=["two-buttons", "long-title", "same-titles", "language", "quiet"])
def test_survey_keys_are_checked_at_start_up_with_one_line(csat: dict[str, Any], key: str, words: str) -> None:
    from bot.core.config import ConfigError, parse_settings

    with pytest.raises(ConfigError) as err:
        parse_settings({"meta": {"app_secret": "s", "verify_token": "v"},
                        "slack": {"bot_token": "b", "signing_secret": "s"}, "csat": csat})
    assert err.value.key == key, err.value
    assert words in err.value.message and "\n" not in str(err.value)


@pytest.mark.parametrize(("value", "expected"), [
    ("csat:12:3", (12, 3)), ("csat:12:4", None), ("csat:x:3", None), ("STOP", None), (None, None),
    ("csat:12:3 ", None)], ids=["ok", "score", "id", "other", "none", "space"])
def test_only_a_survey_button_names_an_answer(value: object, expected: tuple[int, int] | None) -> None:
    from bot.bridge.csat import parse_answer

    found = parse_answer(value)
    assert (None if found is None else (found.survey_id, found.score)) == expected


async def test_a_customers_answer_and_comment_are_in_their_export_and_go_with_their_erasure(
        make: BridgeFactory) -> None:
    from bot.ops.privacy import export_person, forget, one_client

    b = await make(channel_extra={"csat": SURVEY}, settings_extra={"privacy": {"salt": "test-privacy-salt-0123"}})
    _, conv_id = await customer_thread(b)
    await b.interaction(click(RESOLVE_ACTION, RAVI, conv_id, "5.1"))
    sent = (await eventually(lambda: surveys(b)))[0]
    await b.webhook(tap("wamid.TAP5", sent.payload["interactive"]["action"]["buttons"][1], context=str(sent.wamid),
                        ts=now_ts()))
    await b.webhook(inbound_text("wamid.C5", "the receipt never came", ts=now_ts()))
    await eventually(lambda: _commented(b))
    deps = b.app[appkeys.DEPS]
    doc = await export_person(deps.sessions, deps.settings, WA_ID, exported_by="UMANAGER")
    [survey] = doc["automatic_messages"]
    assert (survey["kind"], survey["score"], survey["answer"], survey["comment"]) == (
        "csat", 2, "Fine", "the receipt never came")
    outcome = await forget(deps.sessions, deps.settings, one_client(deps.slack), WA_ID, requested_by="UMANAGER")
    assert outcome.state == "done"
    assert await b.count(AutoReply) == 0


async def _commented(b: Bridge) -> bool:
    async with b.app[appkeys.SESSIONS]() as s:
        return await s.scalar(select(AutoReply.comment)) is not None
