"""The Slack bridge end to end: signed Meta webhooks and signed Slack requests into the real aiohttp app,
against the Slack and Graph stand-ins (real HTTP servers on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot import appkeys
from bot.app import create_app
from bot.slack.component import make_slack_component
from bot.standins import GraphStandin, SlackStandin, sign_slack
from storage.models import Conversation, Message, SlackOutbox
from tests.helpers import (
    BOT_TOKEN,
    SIGNING_SECRET,
    SLACK_CHANNEL,
    echo_text,
    envelope,
    inbound_text,
    make_settings,
    metadata,
    signed,
    status,
)

WA_ID = "919812345678"
STAFF = "U0STAFF"
FAST_OUTBOX = {"poll_interval": 0.1, "backoff_base": 0.2, "backoff_cap": 1.0}


def now_ts(offset: int = 0) -> int:
    return int(time.time()) + offset


@dataclass
class Bridge:
    """The app under test and the two stand-ins it talks to."""

    client: TestClient
    slack: SlackStandin
    graph: GraphStandin

    @property
    def app(self) -> Any:
        return self.client.app

    async def webhook(self, payload: dict[str, Any]) -> None:
        body, headers = signed(payload)
        resp = await self.client.post("/webhooks/meta", data=body, headers=headers)
        assert resp.status == 200

    async def slack_request(self, body: bytes, content_type: str, extra: dict[str, str] | None = None
                            ) -> tuple[int, str]:
        headers = {"Content-Type": content_type, **sign_slack(SIGNING_SECRET, body), **(extra or {})}
        resp = await self.client.post("/slack/events", data=body, headers=headers)
        return resp.status, await resp.text()

    async def event(self, event: dict[str, Any], *, event_id: str = "Ev0001", retry_num: int | None = None
                    ) -> int:
        envelope_ = {"token": "t", "team_id": self.slack.team_id, "api_app_id": self.slack.app_id,
                     "event": event, "type": "event_callback", "event_id": event_id,
                     "event_time": now_ts(),
                     "authorizations": [{"team_id": self.slack.team_id, "user_id": self.slack.bot_user_id,
                                         "is_bot": True}]}
        extra = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else None
        status_, _ = await self.slack_request(json.dumps(envelope_).encode(), "application/json", extra)
        return status_

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, str]:
        data = {"team": {"id": self.slack.team_id}, "api_app_id": self.slack.app_id, **payload}
        data.setdefault("trigger_id", self.slack.issue_trigger_id())
        body = urlencode({"payload": json.dumps(data)}).encode()
        return await self.slack_request(body, "application/x-www-form-urlencoded")

    def parents(self) -> list[dict[str, Any]]:
        return self.slack.messages(SLACK_CHANNEL, top_level_only=True)

    def replies(self, parent_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.slack.thread(SLACK_CHANNEL, parent_ts) if m["ts"] != parent_ts]

    async def count(self, model: Any, *where: Any) -> int:
        async with self.app[appkeys.SESSIONS]() as s:
            return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    async def one(self, model: Any, *where: Any) -> Any:
        async with self.app[appkeys.SESSIONS]() as s:
            return (await s.scalars(select(model).where(*where))).one()


async def eventually(check: Callable[[], Any | Awaitable[Any]], timeout: float = 10.0) -> Any:  # noqa: ASYNC109
    """Poll until check() is truthy (the app works in the background); fail with the last value."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")


BridgeFactory = Callable[..., Awaitable[Bridge]]


@contextlib.asynccontextmanager
async def bridges(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    """A factory of bridges on one database: each gets fresh stand-ins unless given ones to share."""
    started: list[Any] = []

    async def build(*, slack: SlackStandin | None = None, graph: GraphStandin | None = None,
                    channel_extra: dict[str, Any] | None = None, outbox: dict[str, Any] | None = None,
                    with_slack: bool = True, run_migrations: bool = True) -> Bridge:
        if slack is None:
            slack = SlackStandin(bot_token=BOT_TOKEN)
            await slack.start()
            started.append(slack)
            slack.add_channel(SLACK_CHANNEL, "lucknow-whatsapp")
            slack.add_channel("C0ALERTS", "alerts")
            slack.add_user(STAFF, "asha", real_name="Asha")
        if graph is None:
            graph = GraphStandin()
            await graph.start()
            started.append(graph)
        settings = make_settings(db_url, graph_url=graph.base_url, slack_url=slack.api_url)
        if channel_extra:
            raw = settings.model_dump()
            raw["channels"][0].update(channel_extra)
            settings = type(settings).model_validate(raw)
        options = {**FAST_OUTBOX, **(outbox or {})}
        components = [make_slack_component(**options)] if with_slack else []
        client = await aiohttp_client(create_app(settings, run_migrations=run_migrations, components=components))
        return Bridge(client, slack, graph)

    try:
        yield build
    finally:
        for server in started:
            await server.stop()


@pytest.fixture
async def make_bridge(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


@pytest.fixture
async def bridge(make_bridge: BridgeFactory) -> Bridge:
    return await make_bridge()


async def thread_with(b: Bridge, n_replies: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    parents = await eventually(lambda: b.parents())
    parent = parents[0]
    replies = await eventually(lambda: (r := b.replies(parent["ts"])) and len(r) >= n_replies and r)
    return parent, replies


def all_text(message: dict[str, Any]) -> str:
    return json.dumps({"text": message.get("text"), "blocks": message.get("blocks")}, ensure_ascii=False)


# ---- conversation -> thread ------------------------------------------------------------------------


async def test_first_message_creates_a_thread_and_later_ones_reply_in_it(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.A1", "Is the Monday batch full?", ts=now_ts(-60)))
    parent, replies = await thread_with(bridge, 1)
    await bridge.webhook(inbound_text("wamid.A2", "Also, what is the fee?", ts=now_ts(-30)))
    parent, replies = await thread_with(bridge, 2)

    assert len(bridge.parents()) == 1
    assert "Ravi" in all_text(parent) and "+91 98123 45678" in all_text(parent)
    assert "lucknow" in all_text(parent) and "Window open" in all_text(parent)
    assert [("Monday batch" in all_text(r), "fee" in all_text(r)) for r in replies] == [(True, False),
                                                                                            (False, True)]
    assert replies[0]["username"] == "Ravi (+91 98123 45678)"  # reads as the customer
    conv = await bridge.one(Conversation)
    assert conv.slack_thread_ts == parent["ts"] and conv.slack_channel == SLACK_CHANNEL
    first = await bridge.one(Message, Message.wamid == "wamid.A1")
    assert first.slack_ts == replies[0]["ts"]


async def test_parent_shows_the_window_reopening_when_the_customer_writes_again(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.OLD", "hi", ts=now_ts(-30 * 3600)))
    parent, _ = await thread_with(bridge, 1)
    assert "Window closed" in all_text(parent)
    await bridge.webhook(inbound_text("wamid.NEW", "hello again", ts=now_ts(-60)))
    await thread_with(bridge, 2)
    parent = await eventually(lambda: (p := bridge.parents()[0]) and "Window open" in all_text(p) and p)
    assert len(bridge.parents()) == 1


async def test_customer_text_cannot_ping_or_link(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.E1", "<!channel> hi <@U0BOSS> see <http://evil.example|docs> & more",
                                      ts=now_ts(-60)))
    _, replies = await thread_with(bridge, 1)
    shown = all_text(replies[0])
    assert "&lt;!channel&gt;" in shown and "&lt;@U0BOSS&gt;" in shown
    assert "&lt;http://evil.example|docs&gt;" in shown and "&amp; more" in shown
    for raw in ("<!channel>", "<@U0BOSS>", "<http://evil"):
        assert raw not in shown


async def test_phone_app_echo_appears_as_outbound_via_phone_app(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "When is the exam?", ts=now_ts(-120)))
    await bridge.webhook(echo_text("wamid.ECHO", "Saturday 10am", ts=now_ts(-60)))
    _, replies = await thread_with(bridge, 2)
    echo = replies[1]
    assert "Saturday 10am" in all_text(echo)
    assert "Outbound* via phone app" in all_text(echo)
    assert echo["username"] == "lucknow via phone app"


async def test_failed_status_gets_a_note_with_the_meta_code_and_its_meaning(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "hello", ts=now_ts(-120)))
    await bridge.webhook(echo_text("wamid.ECHO", "reply from the phone", ts=now_ts(-60)))
    await bridge.webhook(status("wamid.ECHO", "failed", ts=now_ts(-30), error_code=131047))
    _, replies = await thread_with(bridge, 3)
    note = all_text(replies[2])
    assert "131047" in note and "outside the 24-hour window: send a template" in note
    echo_post = replies[1]
    assert [r["name"] for r in echo_post.get("reactions", [])] == ["x"]


async def test_each_status_reaction_is_added_once_whatever_the_order(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "hello", ts=now_ts(-120)))
    # One status before the echo itself (Meta does not promise order), the rest after it, read and played
    # sharing a reaction.
    await bridge.webhook(status("wamid.ECHO", "sent", ts=now_ts(-59)))
    await bridge.webhook(echo_text("wamid.ECHO", "voice reply", ts=now_ts(-60)))
    for i, name in enumerate(("delivered", "read", "played")):
        await bridge.webhook(status("wamid.ECHO", name, ts=now_ts(-50 + i)))
    _, replies = await thread_with(bridge, 2)
    want = ["heavy_check_mark", "ballot_box_with_check", "eyes"]
    echo = await eventually(lambda: (r := bridge.replies(replies[0]["thread_ts"])[1])
                            and len(r.get("reactions", [])) == 3 and r)
    assert sorted(r["name"] for r in echo["reactions"]) == sorted(want)
    # Once every outbox item has run, none may have added a reaction again.
    async def drained() -> bool:
        return await bridge.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0

    await eventually(drained)
    calls = bridge.slack.calls_to("reactions.add")
    assert sorted(c.args["name"] for c in calls) == sorted(want)
    assert all(c.ok for c in calls)


async def test_alerts_go_to_the_alerts_channel(bridge: Bridge) -> None:
    await bridge.webhook(envelope("message_template_status_update", {
        "event": "REJECTED", "message_template_id": 42, "message_template_name": "class_reminder",
        "message_template_language": "en", "reason": "INVALID_FORMAT"}))
    posts = await eventually(lambda: bridge.slack.messages("C0ALERTS"))
    assert "class_reminder" in all_text(posts[0]) and "REJECTED" in all_text(posts[0])


# ---- durability and order --------------------------------------------------------------------------


async def test_slack_outage_then_back_posts_every_message_once_in_order(bridge: Bridge) -> None:
    bridge.slack.outage(4.0)
    texts = [f"message number {i}" for i in range(6)]
    base = now_ts(-100)
    for i, t in enumerate(texts):
        await bridge.webhook(inbound_text(f"wamid.O{i}", t, ts=base + i))
    # a second customer proceeds in parallel, in its own thread
    await bridge.webhook(inbound_text("wamid.P0", "another customer", wa_id="919800000001", name="Meera",
                                      ts=now_ts(-50)))
    await eventually(lambda: len(bridge.parents()) == 2, timeout=20)
    ravi = next(p for p in bridge.parents() if "Ravi" in all_text(p))
    replies = await eventually(lambda: len(r := bridge.replies(ravi["ts"])) >= 6 and r, timeout=20)
    await asyncio.sleep(0.5)  # anything doubled would show up now
    replies = bridge.replies(ravi["ts"])
    shown = [next(t for t in texts if t in all_text(r)) for r in replies]
    assert shown == texts
    assert any(c.status == 503 for c in bridge.slack.calls_to("chat.postMessage"))
    assert await bridge.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0


async def test_rate_limited_post_waits_for_retry_after_and_posts_once(bridge: Bridge) -> None:
    bridge.slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    await bridge.webhook(inbound_text("wamid.R1", "hello", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    calls = bridge.slack.calls_to("chat.postMessage")
    limited = next(c for c in calls if c.status == 429)
    first_ok = next(c for c in calls if c.ok)
    assert first_ok.time - limited.time >= 0.9  # Retry-After honoured
    assert len(bridge.parents()) == 1 and len(bridge.replies(parent["ts"])) == 1


async def test_post_whose_answer_was_lost_is_found_not_doubled(bridge: Bridge) -> None:
    # Slack carries out the parent post and the first reply but the connection drops before the answers.
    bridge.slack.lose_answers("chat.postMessage", times=2)
    await bridge.webhook(inbound_text("wamid.L1", "hello", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    await bridge.webhook(inbound_text("wamid.L2", "are you there?", ts=now_ts(-30)))
    parent, replies = await thread_with(bridge, 2)
    await asyncio.sleep(0.5)  # anything doubled would show up now
    assert len(bridge.parents()) == 1 and len(bridge.replies(parent["ts"])) == 2
    assert bridge.slack.calls_to("conversations.history")  # the lost parent was looked up
    assert bridge.slack.calls_to("conversations.replies")  # and so was the lost reply
    first = await bridge.one(Message, Message.wamid == "wamid.L1")
    assert first.slack_ts == replies[0]["ts"]


async def test_a_restart_resumes_delivery_from_the_table(make_bridge: BridgeFactory) -> None:
    first = await make_bridge(with_slack=False)  # stores and processes webhooks, posts nothing to Slack
    await first.webhook(inbound_text("wamid.S1", "before the restart", ts=now_ts(-60)))
    await eventually(lambda: first.count(SlackOutbox), timeout=10)
    assert first.parents() == []
    await first.client.close()
    second = await make_bridge(slack=first.slack, graph=first.graph, run_migrations=False)
    _, replies = await thread_with(second, 1)
    assert "before the restart" in all_text(replies[0])


# ---- media both ways -------------------------------------------------------------------------------


async def test_inbound_image_is_uploaded_into_the_thread(bridge: Bridge) -> None:
    photo = b"\xff\xd8\xff\xe0" + b"jpeg-bytes" * 100
    media_id = bridge.graph.add_media(photo, "image/jpeg")
    await bridge.webhook(envelope("messages", {
        "messaging_product": "whatsapp", "metadata": metadata(),
        "contacts": [{"profile": {"name": "Ravi"}, "wa_id": WA_ID}],
        "messages": [{"from": WA_ID, "id": "wamid.IMG", "timestamp": str(now_ts(-60)), "type": "image",
                      "image": {"id": media_id, "mime_type": "image/jpeg", "sha256": "x",
                                "caption": "my receipt"}}]}))
    _, replies = await thread_with(bridge, 2)
    assert "my receipt" in all_text(replies[0])
    uploaded = replies[1]["files"][0]
    assert bridge.slack._file_data[uploaded["id"]] == photo
    assert uploaded["name"].endswith(".jpg")


async def test_file_shared_in_a_thread_is_sent_to_whatsapp(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "send me the brochure", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    pdf = b"%PDF-1.4 brochure"
    file = bridge.slack.add_file(pdf, "brochure.pdf", "application/pdf", user=STAFF)
    event = bridge.slack.user_message(SLACK_CHANNEL, STAFF, "here it is", thread_ts=parent["ts"], files=[file])
    assert await bridge.event(event, event_id="EvFILE") == 200
    sends = await eventually(lambda: bridge.graph.sends_to(WA_ID))
    sent = sends[0].payload
    assert sent["type"] == "document" and sent["document"]["filename"] == "brochure.pdf"
    assert sent["document"]["caption"] == "here it is"
    assert bridge.graph.media[sent["document"]["id"]].data == pdf
    stored = await eventually(lambda: bridge.count(Message, Message.source == "slack"))
    assert stored == 1


async def test_file_whatsapp_cannot_take_is_explained_not_sent(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "send me the tool", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    file = bridge.slack.add_file(b"MZ...", "setup.exe", "application/x-msdownload", user=STAFF)
    event = bridge.slack.user_message(SLACK_CHANNEL, STAFF, "", thread_ts=parent["ts"], files=[file])
    await bridge.event(event, event_id="EvEXE")
    told = await eventually(lambda: bridge.slack.ephemerals)
    assert "setup.exe" in told[0]["text"] and "does not accept" in told[0]["text"]
    assert bridge.graph.sends_to(WA_ID) == []
