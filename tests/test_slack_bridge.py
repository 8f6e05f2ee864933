"""The Slack bridge end to end: signed Meta webhooks and signed Slack requests into the real aiohttp app,
against the Slack and Graph stand-ins (real HTTP servers on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.slack.display_names import isolate
from storage.models import Conversation, Message, SlackOutbox
from tests.harness import (
    STAFF,
    WA_ID,
    Bridge,
    BridgeFactory,
    all_text,
    carries_message,
    eventually,
    now_ts,
    thread_posts,
    thread_with,
)
from tests.helpers import (
    SLACK_CHANNEL,
    echo_text,
    envelope,
    inbound_text,
    metadata,
    status,
)

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
    assert replies[1]["username"] == f"{isolate('Ravi')} (+91 98123 45678)"  # reads as the customer
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
    assert "hi" in parent["text"] and carries_message(parent)  # the update kept the first message


async def test_a_new_conversation_costs_one_post_whose_parent_carries_the_first_message(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.ONE", "Do you have <evening> batches?", ts=now_ts(-60)))
    parent, posts = await thread_with(bridge, 1)
    await asyncio.sleep(0.3)  # a second post would show up now
    assert [c.ok for c in bridge.slack.calls_to("chat.postMessage")] == [True]
    assert bridge.replies(parent["ts"]) == [] and posts == [parent]
    assert "Ravi" in all_text(parent) and "Window open" in all_text(parent)
    assert "&lt;evening&gt;" in all_text(parent) and "<evening>" not in all_text(parent)
    assert "username" not in parent  # posted as the app: a renamed contact's parent cannot show a stale author
    first = await bridge.one(Message, Message.wamid == "wamid.ONE")
    conv = await bridge.one(Conversation)
    assert first.slack_ts == parent["ts"] == conv.slack_thread_ts


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
    assert f"Outbound* to {isolate('Ravi')}" in all_text(echo)
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


async def test_a_status_item_retried_after_its_reaction_does_not_add_it_again(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "hello", ts=now_ts(-120)))
    await bridge.webhook(echo_text("wamid.ECHO", "reply from the phone", ts=now_ts(-60)))
    await thread_with(bridge, 2)
    bridge.slack.fail_next("chat.postMessage", "internal_error")  # the failure note fails once, after the ✗
    await bridge.webhook(status("wamid.ECHO", "failed", ts=now_ts(-30), error_code=131047))
    _, replies = await thread_with(bridge, 3)
    assert "131047" in all_text(replies[2])
    assert [c.args["name"] for c in bridge.slack.calls_to("reactions.add")] == ["x"]


async def test_each_status_reaction_is_added_once_whatever_the_order(bridge: Bridge) -> None:
    await bridge.webhook(inbound_text("wamid.IN", "hello", ts=now_ts(-120)))
    # One status before the echo itself (Meta does not promise order), the rest after it, read and played
    # sharing a reaction.
    await bridge.webhook(status("wamid.ECHO", "sent", ts=now_ts(-59)))
    await bridge.webhook(echo_text("wamid.ECHO", "voice reply", ts=now_ts(-60)))
    for i, name in enumerate(("delivered", "read", "played")):
        await bridge.webhook(status("wamid.ECHO", name, ts=now_ts(-50 + i)))
    parent, _ = await thread_with(bridge, 2)  # the parent carries "hello"; the echo is the first reply
    want = ["heavy_check_mark", "ballot_box_with_check", "eyes"]

    def echo_post() -> dict[str, Any] | None:
        replies = bridge.replies(parent["ts"])
        return replies[0] if replies and len(replies[0].get("reactions", [])) == 3 else None

    echo = await eventually(echo_post)
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
    assert "class_reminder (en) was rejected (reason: INVALID_FORMAT)" in all_text(posts[0])


# ---- durability and order --------------------------------------------------------------------------


async def test_slack_outage_then_back_posts_every_message_once_in_order(bridge: Bridge) -> None:
    # Slack stays down until the bridge has met the outage on a post, however slowly a loaded machine runs.
    bridge.slack.set_down(True)
    texts = [f"message number {i}" for i in range(6)]
    base = now_ts(-100)
    for i, t in enumerate(texts):
        await bridge.webhook(inbound_text(f"wamid.O{i}", t, ts=base + i))
    # a second customer proceeds in parallel, in its own thread
    await bridge.webhook(inbound_text("wamid.P0", "another customer", wa_id="919800000001", name="Meera",
                                      ts=now_ts(-50)))
    await eventually(lambda: any(c.status == 503 for c in bridge.slack.calls_to("chat.postMessage")), timeout=20)
    await asyncio.sleep(1.0)  # more posts meet the outage and wait behind it
    bridge.slack.set_down(False)
    await eventually(lambda: len(bridge.parents()) == 2, timeout=20)
    ravi = next(p for p in bridge.parents() if "Ravi" in all_text(p))
    replies = await eventually(lambda: len(r := thread_posts(bridge, ravi)) >= 6 and r, timeout=20)
    await asyncio.sleep(0.5)  # anything doubled would show up now
    replies = thread_posts(bridge, ravi)
    shown = [next(t for t in texts if t in all_text(r)) for r in replies]
    assert shown == texts
    assert await bridge.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0


async def test_rate_limited_post_waits_for_retry_after_and_posts_once(bridge: Bridge) -> None:
    bridge.slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    await bridge.webhook(inbound_text("wamid.R1", "hello", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    calls = bridge.slack.calls_to("chat.postMessage")
    limited = next(c for c in calls if c.status == 429)
    first_ok = next(c for c in calls if c.ok)
    assert first_ok.time - limited.time >= 0.9  # Retry-After honoured
    assert len(bridge.parents()) == 1 and len(thread_posts(bridge, parent)) == 1


async def test_post_whose_answer_was_lost_is_found_not_doubled(bridge: Bridge) -> None:
    # Slack carries out the parent post (with the first message) and the next reply but the answers are lost.
    bridge.slack.lose_answers("chat.postMessage", times=2)
    await bridge.webhook(inbound_text("wamid.L1", "hello", ts=now_ts(-60)))
    parent, _ = await thread_with(bridge, 1)
    await bridge.webhook(inbound_text("wamid.L2", "are you there?", ts=now_ts(-30)))
    parent, replies = await thread_with(bridge, 2)
    await asyncio.sleep(0.5)  # anything doubled would show up now
    assert len(bridge.parents()) == 1 and len(thread_posts(bridge, parent)) == 2
    assert bridge.slack.calls_to("conversations.history")  # the lost parent was looked up
    assert bridge.slack.calls_to("conversations.replies")  # and so was the lost reply
    first = await bridge.one(Message, Message.wamid == "wamid.L1")
    assert first.slack_ts == replies[0]["ts"]


async def test_a_restart_resumes_delivery_from_the_table(make_bridge: BridgeFactory) -> None:
    first = await make_bridge(with_slack=False)  # stores and processes webhooks, posts nothing to Slack
    await first.webhook(inbound_text("wamid.S1", "before the restart", ts=now_ts(-60)))
    await eventually(lambda: first.count(SlackOutbox))
    assert first.parents() == []
    await first.client.close()
    second = await make_bridge(slack=first.slack, graph=first.graph, run_migrations=False)
    _, replies = await thread_with(second, 1)
    assert "before the restart" in all_text(replies[0])


async def test_delivery_ticks_superseded_before_they_reach_slack_cost_no_calls(make_bridge: BridgeFactory) -> None:
    intake = await make_bridge(with_slack=False)  # everything is stored while Slack is backed up
    await intake.webhook(inbound_text("wamid.T0", "hello", ts=now_ts(-120)))
    await intake.webhook(echo_text("wamid.T1", "reply from the phone", ts=now_ts(-60)))
    for i, state in enumerate(["sent", "delivered", "read"]):
        await intake.webhook(status("wamid.T1", state, ts=now_ts(-50 + i)))
    await eventually(lambda: intake.count(SlackOutbox, SlackOutbox.kind == "status"))
    bridge = await make_bridge(slack=intake.slack, graph=intake.graph, run_migrations=False)

    async def all_done() -> bool:
        return await bridge.count(SlackOutbox, SlackOutbox.done_at.is_(None)) == 0

    await eventually(all_done, timeout=20)
    parent, _ = await thread_with(bridge, 2)
    want = sorted(["heavy_check_mark", "ballot_box_with_check", "eyes"])
    await eventually(lambda: (r := bridge.replies(parent["ts"])) and
                     sorted(x["name"] for x in r[0].get("reactions", [])) == want)
    # "sent" and "delivered" are skipped as superseded; the "read" item adds all three ticks, once each.
    calls = bridge.slack.calls_to("reactions.add")
    assert len(calls) == 3 and all(c.ok for c in calls)


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
