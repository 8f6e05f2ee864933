"""A staff reply typed in Slack reaches the customer as meant, end to end through the Slack and Graph
stand-ins: emoji, names, links and formatting converted, long replies and captions split, and the thread
showing what the customer received whenever it differs from what Slack shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.meta.errors import GraphError
from bot.meta.graph import GraphClient
from bot.standins.graph import GraphStandin
from bot.standins.slack import SlackStandin
from storage.models import Message
from tests.harness import STAFF, WA_ID, Bridge, all_text, bridges, eventually, now_ts, thread_with
from tests.helpers import PNID, SLACK_CHANNEL, inbound_text

COLLEAGUE = "U0STAFF1"


@pytest.fixture
async def bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[Bridge]:
    async with bridges(aiohttp_client, db_url) as build:
        b = await build()
        b.slack.add_user(COLLEAGUE, "Asha", real_name="Asha Rao")
        b.slack.add_usergroup("S0DESK", "front-desk", [COLLEAGUE])
        b.slack.add_channel("C0FEES", "fees")
        yield b


async def _thread(b: Bridge) -> str:
    await b.webhook(inbound_text("wamid.IN", "What is the fee?", ts=now_ts(-600)))
    parent, _ = await thread_with(b, 1)  # the parent carries the message; the thread is on record
    return str(parent["ts"])


async def _reply(b: Bridge, thread_ts: str, text: str, event_id: str,
                 files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    event = b.slack.user_message(SLACK_CHANNEL, STAFF, text, thread_ts=thread_ts, files=files)
    assert await b.event(event, event_id=event_id) == 200
    return event


def _bot_replies(b: Bridge, thread_ts: str) -> list[dict[str, Any]]:
    """What the bridge posted in the thread after the customer's message."""
    return [m for m in b.replies(thread_ts)[1:] if m.get("bot_id")]


async def test_the_reply_from_the_issue_reaches_the_customer_as_meant(bridge: Bridge) -> None:
    thread_ts = await _thread(bridge)
    text = ("Hi <@U0STAFF1>, see *bold* _it_ ~strike~ `code` :smile: :+1::skin-tone-3: "
            "<https://example.com/fees|fee page> &amp; &lt;3 — ask <!subteam^S0DESK> in <#C0FEES|> :party_parrot:")
    await _reply(bridge, thread_ts, text, "EvISSUE")
    sends = await eventually(lambda: bridge.graph.sends_to(WA_ID))
    expected = ("Hi @Asha, see *bold* _it_ ~strike~ `code` 😄 👍🏼 fee page (https://example.com/fees) & <3 — "
                "ask @front-desk in #fees :party_parrot:")
    assert sends[0].payload["text"]["body"] == expected
    # The thread shows it, escaped for Slack, so staff see the spelled-out link and the custom emoji's name.
    shown = await eventually(lambda: _bot_replies(bridge, thread_ts))
    assert "fee page (https://example.com/fees) &amp; &lt;3" in all_text(shown[0])
    assert "Sent from Slack by" in all_text(shown[0])

    # A second reply naming the same people asks Slack nothing new.
    looked_up = len(bridge.slack.calls_to("users.info")) + len(bridge.slack.calls_to("usergroups.list"))
    await _reply(bridge, thread_ts, "<@U0STAFF1> and <!subteam^S0DESK> will call :telephone_receiver:", "EvAGAIN")
    sends = await eventually(lambda: (s := bridge.graph.sends_to(WA_ID)) and len(s) == 2 and s)
    assert sends[1].payload["text"]["body"] == "@Asha and @front-desk will call 📞"
    assert len(bridge.slack.calls_to("users.info")) + len(bridge.slack.calls_to("usergroups.list")) == looked_up


async def test_a_reply_the_customer_sees_as_staff_do_is_not_repeated_in_the_thread(bridge: Bridge) -> None:
    thread_ts = await _thread(bridge)
    await _reply(bridge, thread_ts, "Thanks :pray::skin-tone-5: see you *Monday*", "EvSAME")
    sends = await eventually(lambda: bridge.graph.sends_to(WA_ID))
    assert sends[0].payload["text"]["body"] == "Thanks 🙏🏾 see you *Monday*"
    await eventually(lambda: bridge.count(Message, Message.source == "slack"))
    # A later customer message is mirrored after anything the reply queued: then the thread is settled.
    await bridge.webhook(inbound_text("wamid.IN2", "ok", ts=now_ts(-1)))
    await eventually(lambda: any("ok" in all_text(m) for m in _bot_replies(bridge, thread_ts)))
    assert not any("Sent from Slack" in all_text(m) for m in _bot_replies(bridge, thread_ts))


async def test_a_long_reply_goes_as_several_messages_cut_at_paragraphs(bridge: Bridge) -> None:
    thread_ts = await _thread(bridge)
    paragraphs = [f"Paragraph {i}: " + "the batch starts on Monday :calendar: " * 100 for i in range(4)]
    await _reply(bridge, thread_ts, "\n\n".join(p.strip() for p in paragraphs), "EvLONG")
    sends = await eventually(lambda: (s := bridge.graph.sends_to(WA_ID)) and len(s) == 4 and s)
    # Two paragraphs would pass 4,096 characters: each goes as one message, emoji converted.
    assert [s.payload["text"]["body"] for s in sends] == [p.strip().replace(":calendar:", "📆") for p in paragraphs]

    async def all_stored() -> bool:
        return await bridge.count(Message, Message.source == "slack") == len(sends)

    assert await eventually(all_stored)
    # Split into several messages: each shows in the thread as the customer got it.
    shown = await eventually(lambda: (r := _bot_replies(bridge, thread_ts)) and len(r) >= len(sends) and r)
    assert len([m for m in shown if "Sent from Slack by" in all_text(m)]) == len(sends)


async def test_a_caption_over_1024_characters_continues_as_text(bridge: Bridge) -> None:
    thread_ts = await _thread(bridge)
    photo = bridge.slack.add_file(b"\xff\xd8\xff\xe0 jpeg", "timetable.jpg", "image/jpeg", user=STAFF)
    text = "Here is the new timetable :spiral_calendar_pad:. " + "Every class moves one hour later. " * 40
    await _reply(bridge, thread_ts, text, "EvCAPTION", files=[photo])
    sends = await eventually(lambda: (s := bridge.graph.sends_to(WA_ID)) and len(s) == 2 and s)
    image, follow_up = sends[0].payload, sends[1].payload
    caption = image["image"]["caption"]
    assert len(caption) <= 1024 and caption.startswith("Here is the new timetable 🗓️.") and caption.endswith(".")
    assert follow_up["type"] == "text"
    assert (caption + " " + follow_up["text"]["body"]).split() == text.replace(
        ":spiral_calendar_pad:", "🗓️").split()
    shown = await eventually(lambda: (r := _bot_replies(bridge, thread_ts)) and len(r) >= 2 and r)
    assert "Here is the new timetable" in all_text(shown[0])


async def test_an_audio_file_takes_no_caption_so_the_text_goes_on_its_own(bridge: Bridge) -> None:
    thread_ts = await _thread(bridge)
    voice = bridge.slack.add_file(b"OggS voice", "directions.ogg", "audio/ogg", user=STAFF)
    await _reply(bridge, thread_ts, "Directions :point_up:", "EvAUDIO", files=[voice])
    sends = await eventually(lambda: (s := bridge.graph.sends_to(WA_ID)) and len(s) == 2 and s)
    assert sends[0].payload["type"] == "audio" and "caption" not in sends[0].payload["audio"]
    assert sends[1].payload["text"]["body"] == "Directions ☝️"


async def test_a_reply_that_only_pings_staff_sends_nothing_and_says_why(bridge: Bridge) -> None:
    thread_ts = await _thread(bridge)
    await _reply(bridge, thread_ts, "<!here>", "EvHERE")
    told = await eventually(lambda: bridge.slack.ephemerals)
    assert told[0]["user"] == STAFF and "Nothing was sent" in told[0]["text"]
    assert bridge.graph.sends_to(WA_ID) == []


# ---- the stand-ins behave as the APIs document ---------------------------------------------------------


async def test_graph_standin_refuses_a_caption_over_1024_characters() -> None:
    async with GraphStandin(tokens={"token": [PNID]}) as graph, GraphClient(graph.base_url, "v23.0") as client:
        with pytest.raises(GraphError) as refused:
            await client.send_media(PNID, "token", WA_ID, "image", "555", caption="x" * 1025)
        assert refused.value.code == 100 and "1024" in str(refused.value)
        await client.send_media(PNID, "token", WA_ID, "image", "555", caption="x" * 1024)
        assert len(graph.sends) == 1


async def test_slack_standin_lists_user_groups_with_their_handles() -> None:
    async with SlackStandin() as slack:
        slack.add_usergroup("S0DESK", "front-desk", ["U0A", "U0B"])
        slack.usergroups["S0LEGACY"] = []  # set up the older way: the handle defaults to the id
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        listed = (await client.usergroups_list(include_users=True))["usergroups"]
        assert [(g["id"], g["handle"], g["user_count"], g["users"]) for g in listed] == [
            ("S0DESK", "front-desk", 2, ["U0A", "U0B"]), ("S0LEGACY", "s0legacy", 0, [])]
        assert "users" not in (await client.usergroups_list())["usergroups"][0]
