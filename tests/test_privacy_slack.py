"""The privacy shortcuts: campaign managers only; export arrives as a DM; erasure asks first, then redacts."""

from __future__ import annotations

import json
from typing import Any

from bot.handlers.slack_privacy import FORGET_CONFIRM, SHORTCUT_EXPORT_CUSTOMER, SHORTCUT_FORGET_CUSTOMER
from storage.models import Contact, Message
from tests.harness import STAFF, WA_ID, Bridge, BridgeFactory, eventually, now_ts, thread_with
from tests.helpers import SLACK_CHANNEL, inbound_text

MANAGER = "UMANAGER"
PRIVACY = {"privacy": {"salt": "slack-privacy-salt-0123456789"}}


def _shortcut(b: Bridge, thread_ts: str, callback_id: str, user: str, action_ts: str) -> dict[str, Any]:
    message = b.slack.thread(SLACK_CHANNEL, thread_ts)[0]
    return {"type": "message_action", "callback_id": callback_id, "user": {"id": user},
            "channel": {"id": SLACK_CHANNEL}, "message": message, "message_ts": message["ts"],
            "action_ts": action_ts, "response_url": f"{b.slack.base_url}/response-url/x"}


def _dm_messages(b: Bridge, user: str) -> list[dict[str, Any]]:
    return b.slack.messages("D" + user[1:]) if "D" + user[1:] in b.slack.channels else []


async def test_export_shortcut_is_for_managers_and_arrives_as_a_dm(make_bridge: BridgeFactory) -> None:
    b = await make_bridge(settings_extra=PRIVACY)
    await b.webhook(inbound_text("wamid.R1", "my address is 12 Baker Street", ts=now_ts(-60)))
    parent, _ = await thread_with(b, 1)

    await b.interaction(_shortcut(b, parent["ts"], SHORTCUT_EXPORT_CUSTOMER, STAFF, "200.1"))
    told = await eventually(lambda: b.slack.ephemerals)
    assert "Only campaign managers" in told[0]["text"] and not b.slack.calls_to("files.completeUploadExternal")

    await b.interaction(_shortcut(b, parent["ts"], SHORTCUT_EXPORT_CUSTOMER, MANAGER, "200.2"))
    posted = await eventually(lambda: _dm_messages(b, MANAGER))
    files = posted[0]["files"]
    assert sorted(f["name"] for f in files) == [f"customer-{WA_ID}.html", f"customer-{WA_ID}.json"]
    doc = json.loads(b.slack._file_data[next(f["id"] for f in files if f["name"].endswith(".json"))])
    assert doc["exported_by"] == MANAGER and doc["messages"][0]["text"] == "my address is 12 Baker Street"


async def test_erase_shortcut_asks_first_then_erases_and_redacts(make_bridge: BridgeFactory) -> None:
    b = await make_bridge(settings_extra=PRIVACY)
    await b.webhook(inbound_text("wamid.R1", "my address is 12 Baker Street", ts=now_ts(-60)))
    parent, _ = await thread_with(b, 1)

    await b.interaction(_shortcut(b, parent["ts"], SHORTCUT_FORGET_CUSTOMER, STAFF, "300.1"))
    await eventually(lambda: b.slack.ephemerals)
    assert not b.slack.calls_to("views.open")

    await b.interaction(_shortcut(b, parent["ts"], SHORTCUT_FORGET_CUSTOMER, MANAGER, "300.2"))
    await eventually(lambda: b.slack.calls_to("views.open"))
    view = next(v for v in b.slack.views.values() if v.get("callback_id") == FORGET_CONFIRM)
    assert "cannot be undone" in json.dumps(view["blocks"])
    assert await b.count(Contact, Contact.wa_id == WA_ID) == 1  # nothing goes before the confirmation

    submission = {"type": "view_submission", "user": {"id": MANAGER}, "view": view}
    for _ in range(2):  # Slack may deliver a submission twice: one erasure
        status, _ = await b.interaction(submission)
        assert status == 200
    summary = await eventually(lambda: [m for m in _dm_messages(b, MANAGER) if "Erasure #" in m.get("text", "")])
    assert "(done)" in summary[0]["text"] and len(summary) == 1
    assert await b.count(Contact, Contact.wa_id == WA_ID) == 0 and await b.count(Message) == 0
    thread = b.slack.thread(SLACK_CHANNEL, parent["ts"])
    assert all(m["text"].startswith("Erased on request on ") and not m.get("blocks") for m in thread)


async def test_a_group_thread_is_not_one_customer_to_erase(make_bridge: BridgeFactory) -> None:
    from tests.test_real_traffic import fixture, settled

    b = await make_bridge(settings_extra=PRIVACY)
    await b.webhook(fixture("group_message"))
    await settled(b)
    parent = b.parents()[0]
    await b.interaction(_shortcut(b, parent["ts"], SHORTCUT_FORGET_CUSTOMER, MANAGER, "400.1"))
    told = await eventually(lambda: b.slack.ephemerals)
    assert "group's thread" in told[0]["text"] and not b.slack.calls_to("views.open")
    assert await b.count(Message) == 1
