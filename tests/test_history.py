
"""Business App history and contacts after onboarding: stored once, in WhatsApp's order, never posted one by
one; a thread starts with a summary and the transcript file; the phone's address book names the threads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.handlers import appkeys
from bot.onboarding.syncs import SyncView, sync_problems
from bot.ops.doctor import DoctorEnv, Severity, sync_checks
from bot.slack.display_names import isolate
from storage.models import Contact, Conversation, Message, SmbSync, utcnow
from tests.harness import all_text, eventually, now_ts
from tests.helpers import PNID, envelope, inbound_text, metadata
from tests.test_onboarding_harness import (
    ALERTS,
    MANAGER,
    Harness,
    fixture,
    harness,
    make_harness,
)

RAVI, ANITA = "919812345678", "919876543210"
PHASES = ["history_phase0_chunk1.json", "history_phase1_chunk1.json", "history_phase1_chunk2.json",
          "history_phase2_chunk1.json"]
RAVI_IN_ORDER = ["Do you have plots near the airport?", "Hello, I saw your ad for the 2BHK",
                 "Thanks Ravi! Sending the details.", "What is the price?", "72 lakh, all inclusive.", None,
                 "Is the site visit on for tomorrow?", "Yes, 11 am at the gate."]
_ = (harness, make_harness)


async def deliver(h: Harness, *names: str) -> None:
    for name in names:
        await h.webhook(fixture(name))


async def history_of(h: Harness, wa_id: str) -> list[Message]:
    [contact] = await h.rows(Contact, Contact.wa_id == wa_id)
    [conv] = await h.rows(Conversation, Conversation.contact_id == contact.id)
    return await h.rows(Message, Message.conversation_id == conv.id, order_by=Message.wa_timestamp)


async def history_sync(h: Harness) -> SmbSync:
    rows = await h.rows(SmbSync, SmbSync.sync_type == "history")
    assert len(rows) == 1
    return rows[0]


async def test_chunks_delivered_twice_and_out_of_order_are_stored_once_each_in_timestamp_order(
        harness: Harness) -> None:
    h = harness
    await deliver(h, PHASES[2], PHASES[0], PHASES[2], PHASES[3], PHASES[1], PHASES[0])

    await eventually(lambda: _seen_chunks(h, 4))
    sync = await history_sync(h)
    assert sync.state == "completed"
    assert await h.count(Message) == 10 and await h.count(Message, Message.is_history.is_(True)) == 10
    ravi = await history_of(h, RAVI)
    assert [m.text for m in ravi] == RAVI_IN_ORDER
    assert [m.direction for m in ravi] == ["inbound", "inbound", "outbound", "inbound", "outbound", "outbound",
                                           "inbound", "outbound"]
    assert {m.source for m in ravi if m.direction == "outbound"} == {"phone_app"}
    assert [m.text for m in await history_of(h, ANITA)] == ["Hi, is this Sharma Builders?",
                                                            "Thanks for visiting, Anita!"]
    # History never opens or moves the 24-hour window.
    assert all(c.last_customer_message_at is None for c in await h.rows(Conversation))
    assert (sync.phase, sync.progress, sorted(sync.chunks_seen), sync.items) == (
        2, 100, ["0:1", "1:1", "1:2", "2:1"], 10)


async def _seen_chunks(h: Harness, n: int) -> bool:
    rows = await h.rows(SmbSync, SmbSync.sync_type == "history")
    return bool(rows) and len(rows[0].chunks_seen) == n


def _big_history(chunks: int, threads: int, per_thread: int) -> list[dict[str, Any]]:
    base = now_ts(-100 * 86400)
    out = []
    for c in range(chunks):
        threads_out = []
        for t in range(threads):
            wa_id = f"9190000{c:02d}{t:03d}"
            threads_out.append({"id": wa_id, "messages": [
                {"from": wa_id, "id": f"wamid.BIG.{c}.{t}.{i}", "timestamp": str(base + c * 3600 + t * 60 + i),
                 "type": "text", "text": {"body": f"message {i}"}, "history_context": {"status": "READ"}}
                for i in range(per_thread)]})
        out.append(envelope("history", {"messaging_product": "whatsapp", "metadata": metadata(), "history": [
            {"metadata": {"phase": 1, "chunk_order": c + 1, "progress": (c + 1) * 100 // chunks},
             "threads": threads_out}]}))
    return out


async def test_history_never_floods_slack(harness: Harness) -> None:
    h = harness
    deliveries = _big_history(chunks=8, threads=10, per_thread=5)
    for payload in deliveries:
        await h.webhook(payload)
    # The wait covers importing 400 messages, several statements each: seconds when the host is idle, more
    # than the default 15 s on a loaded CI host. What this test checks is what reaches Slack, not how fast.
    await eventually(lambda: [m for m in h.slack.messages(ALERTS) if "complete: 400 messages" in m["text"]],
                     timeout=90)
    assert await h.count(Message, Message.is_history.is_(True)) == 400
    # One progress message in the alerts channel, updated in place; nothing in the bridged channel.
    [progress] = h.slack.messages(ALERTS)
    assert "History import for *lucknow" in progress["text"] and "400 messages" in progress["text"]
    assert h.parents() == []
    assert len(h.slack.calls_to("chat.postMessage")) == 1
    # Refreshes owed while one waits are coalesced: the message may already say "400" when first posted.
    assert len(h.slack.calls_to("chat.update")) <= 18


async def test_progress_message_shows_phase_and_percentage(harness: Harness) -> None:
    h = harness
    await deliver(h, PHASES[1])
    [progress] = await eventually(lambda: h.slack.messages(ALERTS))
    assert "phase 2 of 3 (days 1 to 90)" in progress["text"] and "45%" in progress["text"]
    assert "3 messages so far" in progress["text"]


async def test_thread_created_later_starts_with_the_summary_and_the_transcript_file(harness: Harness) -> None:
    h = harness
    await deliver(h, *PHASES)
    await eventually(lambda: _seen_chunks(h, 4))
    await h.webhook(inbound_text("wamid.LIVE1", "I'm at the gate now", wa_id=RAVI, ts=now_ts(-30)))

    parent = (await eventually(lambda: h.parents()))[0]
    replies = await eventually(lambda: (r := h.replies(parent["ts"])) and len(r) >= 2 and r)
    (summary, upload), live = replies[:2], parent  # the parent carries the message that opened the thread
    text = all_text(summary)
    assert "Earlier history from the WhatsApp Business app" in text and "8 messages" in text
    assert "Yes, 11 am at the gate." in text and "Do you have plots" not in text  # the last few only
    file = upload["files"][0]
    assert file["name"] == f"history-lucknow-{RAVI}.txt"
    transcript = h.slack._file_data[file["id"]].decode()
    positions = [transcript.index(t) for t in RAVI_IN_ORDER if t]
    assert positions == sorted(positions) and "Phone app: 72 lakh" in transcript
    assert "I'm at the gate now" in all_text(live)
    # Anita wrote nothing new: her history stays out of Slack.
    assert len(h.parents()) == 1


async def test_media_placeholder_is_filled_by_the_later_media_webhook(harness: Harness) -> None:
    h = harness
    await deliver(h, PHASES[2])
    await eventually(lambda: h.count(Message, Message.type == "unsupported"))
    await deliver(h, "history_media_followup.json", "history_media_followup.json")

    async def filled() -> Message | None:
        rows = await h.rows(Message, Message.wamid == "wamid.HIST008", Message.type == "image")
        return rows[0] if rows else None

    msg = await eventually(filled)
    assert (msg.media_id, msg.text, msg.is_history) == ("5550000000000001", "Floor plan", True)
    assert await h.count(Message) == 3
    assert h.parents() == []


async def test_declined_history_is_recorded_and_announced(harness: Harness) -> None:
    h = harness
    await h.webhook(_meta_fixture("history_declined.json"))
    declined = await eventually(lambda: h.rows(SmbSync, SmbSync.state == "declined"))
    assert declined[0].error and declined[0].error.startswith("2593109")
    [notice] = await eventually(lambda: h.slack.messages(ALERTS))
    assert "chose not to share its chat history" in notice["text"]


def _meta_fixture(name: str) -> dict[str, Any]:
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parent / "fixtures" / "meta" / name).read_text())


async def test_manager_asks_for_the_history_in_an_existing_thread(harness: Harness) -> None:
    h = harness
    await h.webhook(inbound_text("wamid.LIVE2", "Hello again", wa_id=RAVI, ts=now_ts(-60)))
    parent = (await eventually(lambda: h.parents()))[0]
    assert "Hello again" in all_text(parent)
    await deliver(h, *PHASES)
    await eventually(lambda: _seen_chunks(h, 4))
    assert h.replies(parent["ts"]) == []  # the thread existed: history is not pushed into it

    assert await h.command("history @+91 98123 45678", user="USOMEONE") == 200
    assert await h.command("history @+91 98123 45678", user=MANAGER) == 200
    await eventually(lambda: [r for r in h.responses() if "will appear in its thread" in r])
    replies = await eventually(lambda: (r := h.replies(parent["ts"])) and len(r) >= 2 and r)
    assert "8 messages" in all_text(replies[0]) and replies[1]["files"]
    assert len([r for r in h.responses() if "will appear" in r]) == 1  # the non-manager was refused


async def test_contacts_renamed_from_the_phone_show_the_new_name(harness: Harness) -> None:
    h = harness
    await h.webhook(inbound_text("wamid.LIVE3", "Hi", wa_id=RAVI, name="Ravi", ts=now_ts(-120)))
    parent = (await eventually(lambda: h.parents()))[0]
    assert "Ravi" in all_text(parent) and "Ravi Kumar" not in all_text(parent)

    await deliver(h, "state_sync_rename.json")

    renamed = await eventually(lambda: [m for m in h.parents() if "Ravi Kumar (Site 4)" in all_text(m)])
    assert renamed[0]["ts"] == parent["ts"]
    await h.webhook(inbound_text("wamid.LIVE4", "Any update?", wa_id=RAVI, name="Ravi", ts=now_ts(-60)))
    replies = await eventually(lambda: (r := h.replies(parent["ts"])) and len(r) >= 1 and r)
    assert replies[0]["username"].startswith(isolate("Ravi Kumar (Site 4)"))
    [contacts_sync] = await h.rows(SmbSync, SmbSync.sync_type == "smb_app_state_sync")
    assert contacts_sync.state == "completed"

    await deliver(h, "state_sync_remove.json")
    await eventually(lambda: h.rows(Contact, Contact.wa_id == RAVI, Contact.address_book_name.is_(None)))
    back = await eventually(lambda: [m for m in h.parents() if "Ravi Kumar" not in all_text(m)])
    assert back[0]["ts"] == parent["ts"]


async def test_doctor_reports_a_sync_that_never_completed(harness: Harness) -> None:
    h = harness
    now = utcnow()
    async with h.sessions() as s, s.begin():
        channel_id = h.app[appkeys.CHANNEL_IDS][PNID]
        s.add(SmbSync(channel_id=channel_id, sync_type="history", request_id="r1", state="in_progress",
                      requested_at=now - timedelta(hours=30), progress=40, chunks_seen=[], items=12,
                      last_progress_at=now - timedelta(hours=29)))
        s.add(SmbSync(channel_id=channel_id, sync_type="smb_app_state_sync", request_id="r2", state="completed",
                      requested_at=now - timedelta(hours=30), chunks_seen=[], items=3, completed_at=now))
    results = await sync_checks(DoctorEnv(h.settings, h.sessions, graph=None, slack=None), now)  # type: ignore[arg-type]
    by_name = {r.name: r for r in results}
    history = by_name["lucknow: chat history sync"]
    assert history.level is Severity.FAIL and "never completed" in history.detail and "40%" in history.detail
    assert by_name["lucknow: contacts sync"].level is Severity.OK


def test_sync_problems_tell_stalled_from_under_way() -> None:
    now = utcnow()

    def view(state: str, requested_h: float, progress_h: float | None) -> SyncView:
        return SyncView("shop", "history", state, now - timedelta(hours=requested_h), 1, 50, 10,
                        now - timedelta(hours=progress_h) if progress_h is not None else None, None, None)

    [(_, detail, fix, failure)] = sync_problems([view("in_progress", 8, 7)], now)
    assert "no progress for 7 h" in detail and fix and not failure
    [(_, detail, fix, failure)] = sync_problems([view("in_progress", 2, 1)], now)
    assert "under way" in detail and not fix and not failure
    [(_, detail, _, failure)] = sync_problems([view("requested", 25, None)], now)
    assert "never completed" in detail and failure


async def test_a_rename_applied_while_the_parent_is_being_posted_still_reaches_the_parent(harness: Harness) -> None:
    h = harness
    # The parent lands in Slack but its answer is lost, and Slack then goes down: the thread stays unrecorded
    # while the phone's rename is applied, so the rename finds no thread to refresh.
    h.slack.lose_answers("chat.postMessage", 1)
    await h.webhook(inbound_text("wamid.LIVE5", "Hi", wa_id=RAVI, name="Ravi", ts=now_ts(-120)))
    parent = (await eventually(lambda: h.parents()))[0]
    h.slack.set_down(True)
    await deliver(h, "state_sync_rename.json")
    await eventually(lambda: h.rows(Contact, Contact.address_book_name == "Ravi Kumar (Site 4)"))
    [conv] = await h.rows(Conversation)
    assert conv.slack_thread_ts is None
    assert "Ravi Kumar" not in all_text(parent)

    h.slack.set_down(False)
    renamed = await eventually(lambda: [m for m in h.parents() if "Ravi Kumar (Site 4)" in all_text(m)])
    assert [m["ts"] for m in renamed] == [parent["ts"]] and len(h.parents()) == 1
