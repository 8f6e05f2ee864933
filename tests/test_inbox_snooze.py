"""Snooze through the Slack stand-in: a conversation snoozed from its parent leaves the waiting lists, comes back
when its time comes (once, from the half-minute round), when the customer writes (not on an echo) or when
someone unsnoozes it; a date in the past or a resolved conversation is refused. And the snooze times (pure)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.app.insights_component import InsightsWorker
from bot.core.response_metrics import FirstResponseHistogram
from bot.handlers import appkeys
from bot.ops.insights_store import period_figures
from bot.slack.inbox_view import (
    MORE_BLOCK,
    RESOLVE_ACTION,
    SNOOZE_ACTION,
    SNOOZE_DATE_ACTION,
    UNSNOOZE_ACTION,
)
from bot.slack.snooze import until_date, until_for
from storage.models import Conversation, ConversationEvent, as_utc, utcnow
from tests.harness import STAFF, Bridge, BridgeFactory, bridges, eventually, now_ts
from tests.helpers import echo_text, inbound_text
from tests.test_slack_inbox import _thread, buttons, click, inbox_line

KOLKATA = "Asia/Kolkata"


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


def snooze(user: str, conversation_id: int, action_ts: str, *, choice: str | None = None,
           date: str | None = None) -> dict[str, Any]:
    """A block_actions payload for the parent's Snooze… menu or its date picker."""
    action: dict[str, Any] = {"action_ts": action_ts, "block_id": f"{MORE_BLOCK}:{conversation_id}"}
    if date is not None:
        action.update(action_id=SNOOZE_DATE_ACTION, type="datepicker", selected_date=date)
    else:
        action.update(action_id=SNOOZE_ACTION, type="static_select",
                      selected_option={"text": {"type": "plain_text", "text": choice}, "value": choice})
    return {"type": "block_actions", "user": {"id": user}, "actions": [action]}


def more_buttons(b: Bridge, ts: str) -> list[str]:
    from tests.test_slack_inbox import parent_of

    return [e["action_id"] for block in parent_of(b, ts).get("blocks") or []
            if str(block.get("block_id", "")).startswith(MORE_BLOCK) for e in block["elements"]]


def notes(b: Bridge, ts: str) -> list[str]:
    """What the thread's replies say (notes included)."""
    return [json.dumps(r.get("blocks") or r.get("text"), ensure_ascii=False) for r in b.replies(ts)]


async def waiting(b: Bridge) -> list[int]:
    found = await period_figures(b.app[appkeys.SESSIONS], since=datetime.now(UTC) - timedelta(days=1))
    return [w.conversation_id for w in found.waiting]


async def audit(b: Bridge) -> list[tuple[str, str]]:
    async with b.app[appkeys.SESSIONS]() as s:
        return [(e.action, e.actor) for e in (await s.scalars(select(ConversationEvent)
                                                              .order_by(ConversationEvent.id))).all()]


async def snoozed_until(b: Bridge) -> datetime | None:
    return (await b.one(Conversation)).snoozed_until


async def test_snoozed_leaves_waiting_and_comes_back_once_when_its_time_comes(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    assert more_buttons(b, ts) == [SNOOZE_ACTION, SNOOZE_DATE_ACTION]
    assert await waiting(b) == [conv_id]
    for _ in range(2):  # a replayed pick snoozes once
        await b.interaction(snooze(STAFF, conv_id, "20.1", choice="1h"))
    await eventually(lambda: "Snoozed until" in inbox_line(b, ts))
    await eventually(lambda: any(f"<@{STAFF}> snoozed this conversation until <!date^" in n for n in notes(b, ts)))
    assert more_buttons(b, ts) == [SNOOZE_ACTION, SNOOZE_DATE_ACTION, UNSNOOZE_ACTION]
    assert await waiting(b) == [] and await audit(b) == [("snooze", STAFF)]

    # The half-minute round in two processes: not yet; then, its time come, back once, with a note, waiting.
    rounds = [InsightsWorker(b.app[appkeys.SETTINGS], b.app[appkeys.SESSIONS], FirstResponseHistogram(),
                             b.app[appkeys.WAKES]) for _ in range(2)]
    await rounds[0].run_once()
    assert await snoozed_until(b) is not None
    async with b.app[appkeys.SESSIONS]() as s, s.begin():  # the hour has passed
        await s.execute(update(Conversation).where(Conversation.id == conv_id)
                        .values(snoozed_until=utcnow() - timedelta(seconds=1)))
    for worker in rounds:
        await worker.run_once()
    assert await snoozed_until(b) is None
    await eventually(lambda: any("Back from snooze: its time has come." in n for n in notes(b, ts)))
    await eventually(lambda: "Snoozed" not in inbox_line(b, ts))
    assert await waiting(b) == [conv_id]
    assert await audit(b) == [("snooze", STAFF), ("wake", "snooze")]
    assert sum("Back from snooze" in n for n in notes(b, ts)) == 1


async def test_the_customer_writing_wakes_it_an_echo_does_not(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    await b.interaction(snooze(STAFF, conv_id, "21.1", choice="tomorrow"))
    await eventually(lambda: "Snoozed until" in inbox_line(b, ts))
    await b.webhook(echo_text("wamid.ECHO1", "we will call you tomorrow", ts=now_ts()))
    await eventually(lambda: len(b.replies(ts)) >= 2)  # the note and the echo
    assert await snoozed_until(b) is not None
    await b.webhook(inbound_text("wamid.IN2", "actually, one more thing", ts=now_ts()))
    await eventually(lambda: any("Back from snooze: the customer wrote." in n for n in notes(b, ts)))
    assert await snoozed_until(b) is None and await waiting(b) == [conv_id]
    assert await audit(b) == [("snooze", STAFF), ("wake", "customer")]


async def test_dates_unsnooze_and_refusals(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    await b.interaction(snooze(STAFF, conv_id, "22.1", date="2020-01-01"))
    told = await eventually(lambda: b.slack.ephemerals)
    assert told[-1]["text"] == "Pick a time in the future to snooze this conversation until."
    day = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    await b.interaction(snooze(STAFF, conv_id, "22.2", date=day))
    await eventually(lambda: "Snoozed until" in inbox_line(b, ts))
    until = await eventually(lambda: snoozed_until(b))
    assert until is not None and as_utc(until) == until_date(day, utcnow(), KOLKATA)  # 9:00 there
    await b.interaction(click(UNSNOOZE_ACTION, STAFF, conv_id, "22.3"))
    await eventually(lambda: any(f"<@{STAFF}> ended the snooze." in n for n in notes(b, ts)))
    assert await snoozed_until(b) is None
    # A resolved conversation is not snoozed; resolving ends a snooze.
    await b.interaction(snooze(STAFF, conv_id, "22.4", choice="3h"))
    await eventually(lambda: snoozed_until(b))  # applied (the parent may still show the snooze before)
    await b.interaction(click(RESOLVE_ACTION, STAFF, conv_id, "22.5"))
    await eventually(lambda: "*Resolved*" in inbox_line(b, ts))
    assert await snoozed_until(b) is None and more_buttons(b, ts) == []
    await b.interaction(snooze(STAFF, conv_id, "22.6", choice="1h"))
    await eventually(lambda: any("resolved, or snoozed until then" in e["text"] for e in b.slack.ephemerals))
    assert [a for a, _ in await audit(b)] == ["snooze", "wake", "snooze", "resolve"]
    assert UNSNOOZE_ACTION not in json.dumps(buttons(b, ts))


@pytest.mark.parametrize(("choice", "now", "expected"), [
    ("1h", datetime(2026, 12, 6, 17, 0, tzinfo=UTC), datetime(2026, 12, 6, 18, 0, tzinfo=UTC)),
    ("3h", datetime(2026, 12, 6, 17, 0, tzinfo=UTC), datetime(2026, 12, 6, 20, 0, tzinfo=UTC)),
    # Sunday 22:30 in Kolkata: tomorrow 9:00 is Monday's, and next Monday is the same day.
    ("tomorrow", datetime(2026, 12, 6, 17, 0, tzinfo=UTC), datetime(2026, 12, 7, 3, 30, tzinfo=UTC)),
    ("monday", datetime(2026, 12, 6, 17, 0, tzinfo=UTC), datetime(2026, 12, 7, 3, 30, tzinfo=UTC)),
    # Monday 05:30 in Kolkata: next Monday is a week on.
    ("monday", datetime(2026, 12, 7, 0, 0, tzinfo=UTC), datetime(2026, 12, 14, 3, 30, tzinfo=UTC)),
    ("never", datetime(2026, 12, 7, 0, 0, tzinfo=UTC), None),
], ids=["1h", "3h", "tomorrow", "monday-from-sunday", "monday-from-monday", "unknown"])
def test_snooze_times(choice: str, now: datetime, expected: datetime | None) -> None:
    assert until_for(choice, now, KOLKATA) == expected


def test_snooze_dates() -> None:
    now = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)
    assert until_date("2026-12-09", now, KOLKATA) == datetime(2026, 12, 9, 3, 30, tzinfo=UTC)
    assert until_date("2026-12-06", now, KOLKATA) is None  # 9:00 today has passed
    assert until_date("someday", now, KOLKATA) is None
