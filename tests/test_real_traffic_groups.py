"""WhatsApp groups from Meta's documented payloads into the real app: one thread per group whose header names
the subject and participants, each message with its sender, lifecycle and membership changes as notes, a
suspension as an alert, and a reply from the thread sent to the group."""

from __future__ import annotations

from sqlalchemy import select

from bot.handlers import appkeys
from storage.models import Contact, Conversation, Message, WhatsAppGroup
from tests.harness import Bridge, all_text, eventually, thread_posts
from tests.helpers import SLACK_CHANNEL
from tests.test_real_traffic import fixture, settled

GROUP = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
def plain(text: str) -> str:
    """Text without the isolation marks names are shown in (bot.slack.display_names)."""
    return text.replace("\u2068", "").replace("\u2069", "")


SEQUENCE = ("group_create", "group_message", "group_message_other", "group_participants_add",
            "group_participant_leaves", "group_join_request", "group_settings_update", "group_suspend",
            "group_suspend_cleared")


async def test_a_group_is_one_thread_with_senders_notes_and_a_suspension_alert(bridge: Bridge) -> None:
    for name in SEQUENCE:
        await bridge.webhook(fixture(name))
        await settled(bridge)
    await bridge.webhook(fixture("group_message"))  # redelivered: nothing doubles
    await settled(bridge)

    assert len(bridge.parents()) == 1
    assert await bridge.count(Conversation) == 1
    group_contact = await bridge.one(Contact, Contact.wa_id == f"group:{GROUP}")
    assert await bridge.count(Contact) == 1  # the participants are not 1:1 customers
    row = await bridge.one(WhatsAppGroup)
    assert row.contact_id == group_contact.id and row.subject == "Gomti Nagar visit, Saturday 11am"
    assert row.state == "active" and [p["wa_id"] for p in row.participants] == ["919812345678", "919876543210"]
    assert await bridge.count(Message) == 2

    parent = await eventually(lambda: (p := bridge.parents()[0]) and "Saturday 11am" in all_text(p) and p)
    header = plain(all_text(parent))
    assert "WhatsApp group" in header and "2 participants: Ravi Kumar" in header and "Anita Singh" in header
    posts = await eventually(lambda: (p := thread_posts(bridge, parent)) and len(p) >= 9 and p)
    texts = [plain(all_text(p)) for p in posts]
    by = [plain(p.get("username") or "") for p in posts]
    assert any(u.startswith("Ravi Kumar (+91 98123 45678) in Gomti Nagar") for u in by), by
    assert any(u.startswith("Anita Singh (+91 98765 43210) in Gomti Nagar") for u in by), by
    for line in ("Group created: *Gomti Nagar site visit*", "joined the group with the invite link",
                 "+91 87654 32109 left the group", "asked to join the group",
                 "The group's subject is now *Gomti Nagar visit, Saturday 11am*",
                 "WhatsApp suspended this group", "suspension was cleared"):
        assert sum(line in t for t in texts) == 1, line
    alerts = [plain(all_text(a)) for a in bridge.slack.messages("C0ALERTS")]
    assert any("was suspended by WhatsApp" in a for a in alerts)
    assert any("is no longer suspended" in a for a in alerts)


async def test_a_reply_in_the_group_thread_goes_to_the_group(bridge: Bridge) -> None:
    await bridge.webhook(fixture("group_message"))
    await settled(bridge)
    parent = await eventually(lambda: bridge.parents() and bridge.parents()[0])
    async with bridge.app[appkeys.SESSIONS]() as s, s.begin():  # the participant wrote just now
        conv = (await s.scalars(select(Conversation))).one()
        from storage.models import utcnow

        conv.last_customer_message_at = utcnow()
    event = bridge.slack.user_message(SLACK_CHANNEL, "U0STAFF", "Yes, 11am at the site office.",
                                      thread_ts=parent["ts"])
    assert await bridge.event(event, event_id="EvGROUP") == 200
    send = await eventually(lambda: bridge.graph.sends)
    assert send[0].payload["recipient_type"] == "group" and send[0].payload["to"] == GROUP
    assert "recipient" not in send[0].payload
