"""The team inbox on the Home tab, against the Slack stand-in: "Mine" and "Unassigned and waiting" (with Take it)
for everyone, the team view per owner for managers, and a tab that still goes out when the inbox cannot be read."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, text, update

from bot.app.home_component import HOME, period_starts
from bot.handlers import appkeys
from bot.ops.home_inbox_view import UNREADABLE
from bot.ops.inbox_home import read_inbox
from bot.slack.display_names import isolate
from bot.slack.inbox_view import TAKE_ACTION
from storage import inbox
from storage.inbox import Change, InboxAction, Outcome
from storage.models import Channel, Contact, Conversation, utcnow
from tests.harness import eventually
from tests.helpers import PNID, SIGNING_SECRET, SLACK_CHANNEL
from tests.insights_seed import Msg, seed
from tests.test_home import AGENT, MANAGER, Home
from tests.test_home import home as home  # the fixture

RAVI_STAFF = "U0RAVI"


async def _change(h: Home, conv_id: int, action: InboxAction, actor: str, minutes_ago: float,
                  assignee: str | None = None) -> None:
    async with h.client.app[appkeys.SESSIONS]() as s, s.begin():
        team = await s.scalar(select(Conversation.slack_team).where(Conversation.id == conv_id))
        change = Change(conv_id, str(team), action, actor, utcnow() - timedelta(minutes=minutes_ago),
                        f"test:{conv_id}:{action.value}:{minutes_ago}", assignee)
        assert await inbox.apply(s, change) is Outcome.DONE


async def _scenario(h: Home) -> dict[str, int]:
    """Four customers: Ravi and Sita wait (Sita is Asha's), Gopal is Asha's and answered, Mohan was resolved."""
    h.slack.add_user(RAVI_STAFF, "ravi", real_name="Ravi Staff")
    h.slack.join(SLACK_CHANNEL, AGENT, MANAGER, RAVI_STAFF)
    sessions = h.client.app[appkeys.SESSIONS]
    channel_id = h.client.app[appkeys.CHANNEL_IDS][PNID]
    now = utcnow()
    ids = {
        "ravi": await seed(sessions, channel_id, "919800000001", "Ravi", now - timedelta(minutes=50),
                           [Msg(0, "customer")], thread=await h.thread("Ravi")),
        "sita": await seed(sessions, channel_id, "919800000002", "Sita", now - timedelta(minutes=30),
                           [Msg(0, "customer")], thread=await h.thread("Sita")),
        "gopal": await seed(sessions, channel_id, "919800000003", "Gopal", now - timedelta(minutes=40),
                            [Msg(0, "customer"), Msg(5, "slack", AGENT)], thread=await h.thread("Gopal")),
        "mohan": await seed(sessions, channel_id, "919800000004", "Mohan", now - timedelta(minutes=90),
                            [Msg(0, "customer"), Msg(10, "slack", RAVI_STAFF)], thread=await h.thread("Mohan")),
    }
    await _change(h, ids["sita"], InboxAction.TAKE, AGENT, 25)
    await _change(h, ids["gopal"], InboxAction.ASSIGN, MANAGER, 35, AGENT)
    # Mohan: Asha took it, handed it to Ravi, who resolved it 60 minutes after the conversation began.
    async with sessions() as s, s.begin():  # the conversation began with Mohan's message
        mohan = await s.get(Conversation, ids["mohan"])
        assert mohan is not None
        mohan.created_at = now - timedelta(minutes=90)
    await _change(h, ids["mohan"], InboxAction.TAKE, AGENT, 85)
    await _change(h, ids["mohan"], InboxAction.ASSIGN, AGENT, 80, RAVI_STAFF)
    await _change(h, ids["mohan"], InboxAction.RESOLVE, RAVI_STAFF, 30)
    return ids


def _take_buttons(h: Home, user: str) -> list[int]:
    view = h.slack.home_views.get(user) or {"blocks": []}
    return [json.loads(b["accessory"]["value"])["conversation_id"] for b in view["blocks"]
            if b.get("accessory", {}).get("action_id") == TAKE_ACTION]


async def test_everyone_sees_their_own_and_the_unassigned_and_takes_from_home(home: Home) -> None:
    ids = await _scenario(home)
    await home.open(AGENT)
    text = await eventually(lambda: home.text(AGENT))
    assert "*Mine*: 1 waiting, 1 more open, answered" in text
    assert f"|{isolate('Sita')} (+91 98000 00002)> (lucknow): waiting 3" in text  # linked to its thread
    assert "https://standin.slack.com/archives/C0LUCKNOW/p" in text
    assert "*Unassigned and waiting*: 1" in text and _take_buttons(home, AGENT) == [ids["ravi"]]
    assert "Team inbox" not in text  # the team view is the managers'
    # Gopal's conversation snoozed: counted as such, not as answered.
    async with home.client.app[appkeys.SESSIONS]() as s, s.begin():
        await s.execute(update(Conversation).where(Conversation.id == ids["gopal"])
                        .values(snoozed_until=utcnow() + timedelta(hours=2)))
    await home.client.app[HOME].publish(AGENT)
    assert "*Mine*: 1 waiting, 1 snoozed, none open and answered" in home.text(AGENT)

    # Take it from the Home tab: the conversation is hers and her tab says so.
    url = str(home.client.make_url("/slack/events"))
    status, _ = await home.slack.send_interaction(url, {
        "type": "block_actions", "user": {"id": AGENT}, "view": {"id": "V0HOME", "type": "home"},
        "actions": [{"action_id": TAKE_ACTION, "type": "button", "action_ts": "11.1",
                     "value": json.dumps({"conversation_id": ids["ravi"]})}]}, SIGNING_SECRET)
    assert status == 200
    await eventually(lambda: "*Mine*: 2 waiting" in home.text(AGENT))
    assert "*Unassigned and waiting*: nobody" in home.text(AGENT) and _take_buttons(home, AGENT) == []
    async with home.client.app[appkeys.SESSIONS]() as s:
        assert await s.scalar(select(Conversation.owner).where(Conversation.id == ids["ravi"])) == AGENT


async def test_managers_see_the_team_per_owner(home: Home) -> None:
    await _scenario(home)
    await home.open(MANAGER)
    text = await eventually(lambda: home.text(MANAGER))
    assert "Team inbox" in text and "Who is waiting" in text
    assert "• Asha Verma: 2 open, 1 waiting (longest 3" in text
    assert "1 waiting (longest 3" in text and "0 resolved today, none resolved this week" in text
    # Ravi owned Mohan's conversation when he resolved it (30 minutes ago), 60 minutes after it began.
    today, week = period_starts(utcnow(), home.client.app[appkeys.SETTINGS].timezone)
    resolved_at = utcnow() - timedelta(minutes=30)
    if resolved_at < week:  # just after Monday's local midnight: last week's
        assert "Ravi Staff" not in text
    else:
        assert (f"• Ravi Staff: 0 open, none waiting, {int(resolved_at >= today)} resolved today, median to "
                "resolve 1 h 00 min this week") in text
    assert "*Mine*: 0 waiting, none open and answered" in text  # the manager's own inbox


async def test_the_tab_goes_out_when_the_inbox_cannot_be_read(home: Home) -> None:
    await _scenario(home)
    async with home.client.app[appkeys.SESSIONS]() as s, s.begin():
        await s.execute(text("DROP TABLE conversation_events"))  # this test's own database
    await home.open(MANAGER)
    shown = await eventually(lambda: home.text(MANAGER))
    assert json.dumps(UNREADABLE)[1:-1] in shown and "Who is waiting" in shown and "Ravi" in shown


async def test_the_inbox_is_read_per_workspace_numbers(home: Home) -> None:
    ids = await _scenario(home)
    sessions = home.client.app[appkeys.SESSIONS]
    async with sessions() as s, s.begin():  # a second number of another workspace, with an owned conversation
        other = Channel(name="kanpur", phone_number_id="1002", waba_id="2002", mode="coexistence", mps=5)
        contact = Contact(wa_id="919800000099", profile_name="Elsewhere")
        s.add_all([other, contact])
        await s.flush()
        s.add(Conversation(channel_id=other.id, contact_id=contact.id, owner="U0OTHER", slack_team="T0OTHER"))
    week = utcnow() - timedelta(days=7)
    lucknow = await read_inbox(sessions, week=week, channels=["lucknow"])
    assert sorted(lucknow.owners) == sorted([ids["sita"], ids["gopal"]])
    assert [(r.owner, round(r.took.total_seconds() / 60)) for r in lucknow.resolves] == [(RAVI_STAFF, 60)]
    assert "U0OTHER" not in (await read_inbox(sessions, week=week, channels=["lucknow"])).owners.values()
    assert "U0OTHER" in (await read_inbox(sessions, week=week, channels=["kanpur"])).owners.values()


def test_a_full_inbox_keeps_the_managers_view_within_slacks_100_blocks() -> None:
    from bot.ops.home_view import manager_view
    from bot.ops.inbox_home import InboxState
    from tests.test_home_view import data, waiting_in

    channels = [f"ch{i}" for i in range(120)]
    convs = [waiting_in(ch, i * 100 + j, 60 * 23 + j) for i, ch in enumerate(channels) for j in range(15)]
    owners = {i * 100 + j: f"U{j:03d}" for i in range(120) for j in range(0, 15, 2)}  # the rest unassigned
    view = manager_view(data(convs, channels, inbox=InboxState(owners)), "U000")
    assert len(view["blocks"]) <= 100
    shown = json.dumps(view)
    assert "*Mine*: 120 waiting" in shown and "_and 110 more waiting_" in shown
    assert "more: take them from their threads" in shown and "Team inbox" in shown
    assert "more channels with customers waiting" in shown
