"""Labels through the Slack stand-in: the configured labels on a thread's parent, set once per pick with an audit
row saying what changed, shown on the parent, found with `/wabridge find label:…` (PostgreSQL and SQLite), and
exported with the customer's data."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from bot.core.config import InboxSettings
from bot.handlers import appkeys
from bot.ops.privacy import export_person
from bot.slack.inbox_view import LABELS_ACTION, MORE_BLOCK
from storage.models import ConversationEvent, ConversationLabel
from tests.harness import STAFF, Bridge, BridgeFactory, bridges, eventually
from tests.test_search import _answers, _command
from tests.test_slack_inbox import _thread, inbox_line, parent_of

LABELS = ["fees", "admissions", "complaint"]


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


def pick(user: str, conversation_id: int, action_ts: str, labels: list[str]) -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": user}, "actions": [{
        "action_id": LABELS_ACTION, "type": "multi_static_select", "action_ts": action_ts,
        "block_id": f"{MORE_BLOCK}:{conversation_id}",
        "selected_options": [{"text": {"type": "plain_text", "text": x}, "value": x} for x in labels]}]}


def label_picker(b: Bridge, ts: str) -> dict[str, Any] | None:
    return next((e for block in parent_of(b, ts).get("blocks") or []
                 if str(block.get("block_id", "")).startswith(MORE_BLOCK)
                 for e in block["elements"] if e["action_id"] == LABELS_ACTION), None)


async def changes(b: Bridge) -> list[tuple[str, str | None]]:
    async with b.app[appkeys.SESSIONS]() as s:
        return [(e.actor, e.detail) for e in (await s.scalars(select(ConversationEvent).where(
            ConversationEvent.action == "label").order_by(ConversationEvent.id))).all()]


async def stored(b: Bridge) -> list[str]:
    async with b.app[appkeys.SESSIONS]() as s:
        return sorted((await s.scalars(select(ConversationLabel.label))).all())


async def test_labels_are_set_from_the_parent_shown_and_audited_once(make: BridgeFactory) -> None:
    b = await make(settings_extra={"inbox": {"labels": LABELS}})
    ts, conv_id = await _thread(b)
    picker = label_picker(b, ts)
    assert picker is not None and [o["value"] for o in picker["options"]] == LABELS
    assert "initial_options" not in picker

    first = pick(STAFF, conv_id, "30.1", ["fees", "complaint", "vip"])  # vip is not configured: dropped
    for _ in range(3):
        await b.interaction(first)
    await eventually(lambda: ":label: complaint, fees" in inbox_line(b, ts))
    picker = label_picker(b, ts)
    assert picker is not None and [o["value"] for o in picker["initial_options"]] == ["complaint", "fees"]
    assert await stored(b) == ["complaint", "fees"]
    assert await changes(b) == [(STAFF, "+complaint +fees")]
    await eventually(lambda: any(f"<@{STAFF}> set the labels: complaint, fees." in json.dumps(r.get("blocks"))
                                 for r in b.replies(ts)))

    await b.interaction(pick(STAFF, conv_id, "30.2", ["fees"]))
    await eventually(lambda: ":label: fees" in inbox_line(b, ts) and "complaint" not in inbox_line(b, ts))
    await b.interaction(pick(STAFF, conv_id, "30.3", ["fees"]))
    await eventually(lambda: any(e["text"] == "Those are its labels already." for e in b.slack.ephemerals))
    assert await changes(b) == [(STAFF, "+complaint +fees"), (STAFF, "-complaint")]
    assert await stored(b) == ["fees"]

    # Found by label, not by another; an unknown label is explained.
    await _command(b, "find label:fees", STAFF)
    [answer] = await eventually(lambda: _answers(b))
    assert "1 conversation matching labelled fees" in answer and ":label: fees" in answer
    await _command(b, "find label:admissions", STAFF)
    await eventually(lambda: len(_answers(b)) == 2)
    assert "No conversation matching labelled admissions" in _answers(b)[1]
    status, body = await _command(b, "find label:vip", STAFF)
    assert status == 200 and "No label `vip` here; the labels are `fees`, `admissions`, `complaint`." in body

    doc = await export_person(b.app[appkeys.SESSIONS], b.app[appkeys.SETTINGS], "919812345678")
    assert doc["conversations"][0]["labels"] == ["fees"]
    assert [c["detail"] for c in doc["inbox_changes"] if c["action"] == "label"] == ["+complaint +fees",
                                                                                   "-complaint"]


async def test_no_labels_configured_no_picker(make: BridgeFactory) -> None:
    b = await make()
    ts, _ = await _thread(b)
    assert label_picker(b, ts) is None
    status, body = await _command(b, "find label:fees", STAFF)
    assert status == 200 and "No labels are set up" in body


@pytest.mark.parametrize("labels", [["two words"], ["fees", "fees"], [""], ["a:b"]],
                         ids=["space", "twice", "empty", "colon"])
def test_labels_are_checked_when_the_config_is_read(labels: list[str]) -> None:
    with pytest.raises(ValidationError, match="label"):
        InboxSettings(labels=labels)
