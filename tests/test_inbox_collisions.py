"""Two people on one conversation: Unassign, a take that finds someone holding it, and the private notice to who
answers a conversation someone else owns or just answered (the reply still goes, the notice comes once in ten
minutes and its failure changes nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from bot.handlers import appkeys
from bot.slack.inbox_view import ASSIGN_ACTION, RESOLVE_ACTION, TAKE_ACTION, UNASSIGN_ACTION
from storage.collisions import QUIET, claim_notice, others_on
from storage.models import Conversation, Message, utcnow
from tests.harness import STAFF, Bridge, BridgeFactory, bridges, eventually, now_ts
from tests.helpers import SLACK_CHANNEL, echo_text
from tests.test_slack_inbox import RAVI, _thread, buttons, click, events, inbox_line, notes

CUSTOMER = "919812345678"
HEADS_UP = ":busts_in_silhouette: Heads up:"


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


def told(b: Bridge, user: str) -> list[str]:
    return [str(e["text"]) for e in b.slack.ephemerals if e["user"] == user]


async def _reply(b: Bridge, ts: str, user: str, text: str, event_id: str) -> None:
    assert await b.event(b.slack.user_message(SLACK_CHANNEL, user, text, thread_ts=ts), event_id=event_id) == 200


async def test_unassign_leaves_nobody_owning_it_once(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    assert UNASSIGN_ACTION not in buttons(b, ts)  # nothing to unassign yet
    await b.interaction(click(TAKE_ACTION, STAFF, conv_id, "7.1"))
    await eventually(lambda: UNASSIGN_ACTION in buttons(b, ts))
    assert buttons(b, ts) == [TAKE_ACTION, ASSIGN_ACTION, UNASSIGN_ACTION, RESOLVE_ACTION]

    unassign = click(UNASSIGN_ACTION, RAVI, conv_id, "7.2")
    for _ in range(3):  # a replayed click unassigns once
        assert (await b.interaction(unassign))[0] == 200
    await eventually(lambda: inbox_line(b, ts).startswith("Owner: nobody yet"))
    await eventually(lambda: any(f"<@{RAVI}> unassigned <@{STAFF}>: nobody owns" in n for n in notes(b, ts)))
    assert UNASSIGN_ACTION not in buttons(b, ts)
    assert await events(b) == [("take", STAFF, None), ("unassign", RAVI, STAFF)]
    assert (await b.one(Conversation)).owner is None

    # A new click when nobody owns it is told so and leaves no row; letting go of one's own says so.
    await b.interaction(click(UNASSIGN_ACTION, RAVI, conv_id, "7.3"))
    assert (await eventually(lambda: told(b, RAVI)))[-1] == "Nobody owns this conversation."
    await b.interaction(click(TAKE_ACTION, RAVI, conv_id, "7.4"))
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{RAVI}>"))
    await b.interaction(click(UNASSIGN_ACTION, RAVI, conv_id, "7.5"))
    await eventually(lambda: any(f"<@{RAVI}> let go of this conversation" in n for n in notes(b, ts)))
    assert [e[0] for e in await events(b)] == ["take", "unassign", "take", "unassign"]
    # The old replayed click would now unassign nobody: still nothing more.
    await b.interaction(unassign)
    assert len(await events(b)) == 4


async def test_two_takes_at_once_give_one_owner_and_tell_the_second_who_holds_it(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    answers = await asyncio.gather(b.interaction(click(TAKE_ACTION, STAFF, conv_id, "8.1")),
                                   b.interaction(click(TAKE_ACTION, RAVI, conv_id, "8.2")))
    assert [a[0] for a in answers] == [200, 200]
    notice = await eventually(lambda: [e for e in b.slack.ephemerals if "holds this conversation" in e["text"]])
    owner = (await b.one(Conversation)).owner
    assert owner in (STAFF, RAVI)
    second = RAVI if owner == STAFF else STAFF
    assert [(e["user"], e["text"]) for e in notice] == [
        (second, f":raised_hand: <@{owner}> holds this conversation already. To take it over, pick yourself "
                 "in Assign…")]
    assert await events(b) == [("take", owner, None)]
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{owner}>"))
    # Taking over stays possible, deliberately, through Assign….
    await b.interaction(click(ASSIGN_ACTION, second, conv_id, "8.3", selected_user=second))
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{second}>"))


async def test_answering_someone_elses_conversation_sends_and_tells_who_else_is_on_it(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    await _reply(b, ts, STAFF, "Let me check", "EvC1")  # nobody owns it, nobody else answered: no notice
    await eventually(lambda: len(b.graph.sends_to(CUSTOMER)) == 1)
    await b.interaction(click(TAKE_ACTION, STAFF, conv_id, "9.1"))
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{STAFF}>"))

    await _reply(b, ts, RAVI, "The refund went out yesterday", "EvC2")
    await eventually(lambda: len(b.graph.sends_to(CUSTOMER)) == 2)  # sent all the same
    notice = await eventually(lambda: [t for t in told(b, RAVI) if t.startswith(HEADS_UP)])
    # Asha answered a moment ago too; as the owner she is named once.
    assert notice == [f"{HEADS_UP} <@{STAFF}> owns this conversation. Your reply was sent."]
    await _reply(b, ts, RAVI, "It takes three days", "EvC3")
    await eventually(lambda: len(b.graph.sends_to(CUSTOMER)) == 3)
    # The owner answers right after Ravi: told Ravi is on it too.
    await _reply(b, ts, STAFF, "Anything else?", "EvC4")
    await eventually(lambda: len(b.graph.sends_to(CUSTOMER)) == 4)
    staff_notice = await eventually(lambda: [t for t in told(b, STAFF) if t.startswith(HEADS_UP)])
    assert staff_notice == [f"{HEADS_UP} <@{RAVI}> also answered it in the last 2 minutes. Your reply was sent."]
    assert len([t for t in told(b, RAVI) if t.startswith(HEADS_UP)]) == 1  # once in ten minutes


async def test_a_failing_notice_never_stops_the_reply(make: BridgeFactory) -> None:
    b = await make()
    ts, conv_id = await _thread(b)
    await b.interaction(click(TAKE_ACTION, STAFF, conv_id, "10.1"))
    await eventually(lambda: inbox_line(b, ts).startswith(f"Owner: <@{STAFF}>"))
    b.slack.fail_next("chat.postEphemeral", "internal_error", times=5)
    await _reply(b, ts, RAVI, "On it", "EvF1")
    await eventually(lambda: len(b.graph.sends_to(CUSTOMER)) == 1)

    async def stored() -> bool:
        return await b.count(Message, Message.source == "slack", Message.slack_user == RAVI) == 1

    await eventually(stored)


async def test_who_else_and_the_ten_minute_ration(make: BridgeFactory) -> None:
    b = await make()
    _, conv_id = await _thread(b)
    await b.webhook(echo_text("wamid.ECHO1", "answered from the phone", ts=now_ts()))
    await eventually(lambda: b.count(Message, Message.wamid == "wamid.ECHO1"))
    sessions = b.app[appkeys.SESSIONS]
    now = utcnow()
    async with sessions() as s:
        others = await others_on(s, conv_id, RAVI, now)
        assert (others.owner, others.answered, others.phone_app) == (None, (), True)
        assert not await others_on(s, conv_id, RAVI, now + timedelta(minutes=3))  # the echo is old news by then
    async with sessions() as s, s.begin():
        assert await claim_notice(s, conv_id, RAVI, now)
        assert not await claim_notice(s, conv_id, RAVI, now + QUIET - timedelta(seconds=1))
        assert await claim_notice(s, conv_id, STAFF, now)  # per person
        assert await claim_notice(s, conv_id, RAVI, now + QUIET)
        assert not await claim_notice(s, conv_id, RAVI, now + QUIET + timedelta(minutes=1))
