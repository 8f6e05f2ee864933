"""Saved replies with an image or document: uploaded in the editor (refused when WhatsApp cannot take it), kept,
replaced or removed, and sent from a thread with the text as its caption through the typed reply's file path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.slack import saved_replies as ui
from storage.models import Message, SavedReply
from tests.harness import STAFF, WA_ID, BridgeFactory, bridges, eventually, now_ts
from tests.test_saved_replies import _click, _command, _edit_values, _picker, _send_values, _thread
from tests.test_saved_replies import _save as _submit

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
async def make(aiohttp_client: Any, db_url: str) -> AsyncIterator[BridgeFactory]:
    async with bridges(aiohttp_client, db_url) as build:
        yield build


def _with_file(values: dict[str, Any], file: dict[str, Any] | None, drop: bool = False) -> dict[str, Any]:
    out = dict(values)
    out[ui.FILE_BLOCK] = {ui.VALUE_ACTION: {"type": "file_input", "files": [file] if file else []}}
    if drop:
        out[ui.DROP_BLOCK] = {ui.VALUE_ACTION: {"type": "checkboxes", "selected_options": [
            {"value": ui.DROP_VALUE, "text": {"type": "plain_text", "text": "Remove"}}]}}
    return out


async def _save(b: Any, view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Submit the editor; an `update` answer replaces the modal, as Slack does with it."""
    answer = await _submit(b, view, values)
    if answer.get("response_action") == "update":
        b.slack.views[view["id"]] = {**b.slack.views[view["id"]], **answer["view"]}
    return answer


async def _editor(b: Any, library: dict[str, Any], action: str, value: str) -> dict[str, Any]:
    await b.interaction(_click(library, action, value))
    return dict(await eventually(lambda: (v := b.slack.views[library["id"]])["callback_id"] == ui.EDIT_CALLBACK
                                 and v))


async def test_a_saved_reply_with_a_document_is_sent_with_its_caption(make: BridgeFactory) -> None:
    b = await make()
    parent = await _thread(b, customer_wrote_at=now_ts(-600))
    await _command(b, "replies")
    library = await eventually(lambda: next(iter(b.slack.views.values()), None))
    editor = await _editor(b, library, ui.ADD_ACTION, "new")
    assert any(blk.get("element", {}).get("type") == "file_input" for blk in editor["blocks"])

    # WhatsApp takes no .exe: the editor says so and nothing is kept.
    exe = b.slack.add_file(b"MZ...", "setup.exe", "application/x-msdownload", user=STAFF)
    answer = await _save(b, editor, _with_file(_edit_values("Brochure", "Our brochure, {first_name}"), exe))
    assert answer["response_action"] == "errors" and ui.FILE_BLOCK in answer["errors"]
    assert await b.count(SavedReply) == 0

    pdf = b.slack.add_file(PDF, "brochure.pdf", "application/pdf", user=STAFF)
    answer = await _save(b, editor, _with_file(_edit_values("Brochure", "Our brochure, {first_name}"), pdf))
    assert answer["response_action"] == "update" and ":paperclip: brochure.pdf" in str(answer["view"])
    row = await b.one(SavedReply)
    assert (row.attachment or {})["id"] == pdf["id"] and row.attachment["url_private"] == pdf["url_private"]

    view = await _picker(b, parent)
    submission = {"type": "view_submission", "user": {"id": STAFF},
                  "view": {**view, "state": {"values": _send_values(row.id, "Our brochure, Ravi")}}}
    status_, _ = await b.interaction(submission)
    assert status_ == 200
    sent = await eventually(lambda: b.graph.sends_to(WA_ID))
    assert [s.type for s in sent] == ["document"]
    document = sent[0].payload["document"]
    assert (document["caption"], document["filename"]) == ("Our brochure, Ravi", "brochure.pdf")
    await eventually(lambda: b.count(Message, Message.source == "slack"))
    msg = await b.one(Message, Message.source == "slack")
    assert msg.content["saved_reply"]["id"] == row.id and msg.type == "document"
    await eventually(lambda: _used_once(b))


async def _used_once(b: Any) -> bool:
    return bool((await b.one(SavedReply)).uses == 1)


async def test_editing_keeps_replaces_or_removes_the_file(make: BridgeFactory) -> None:
    b = await make()
    await _command(b, "replies")
    library = await eventually(lambda: next(iter(b.slack.views.values()), None))
    first = b.slack.add_file(PDF, "fees.pdf", "application/pdf", user=STAFF)
    await _save(b, await _editor(b, library, ui.ADD_ACTION, "new"),
                _with_file(_edit_values("Fees", "Fees attached"), first))
    row = await b.one(SavedReply)

    # A new text without a new file keeps the file.
    await _save(b, await _editor(b, library, ui.EDIT_ACTION, str(row.id)),
                _with_file(_edit_values("Fees", "Fees for 2027 attached"), None))
    assert ((await b.one(SavedReply)).attachment or {}).get("name") == "fees.pdf"
    # Another file replaces it.
    png = b.slack.add_file(b"\x89PNG\r\n\x1a\n" + b"0" * 32, "timetable.png", "image/png", user=STAFF)
    editor = await _editor(b, library, ui.EDIT_ACTION, str(row.id))
    assert "Remove fees.pdf" in str(editor["blocks"])
    await _save(b, editor, _with_file(_edit_values("Fees", "Timetable"), png))
    assert ((await b.one(SavedReply)).attachment or {}).get("name") == "timetable.png"
    # Ticking Remove leaves text only.
    await _save(b, await _editor(b, library, ui.EDIT_ACTION, str(row.id)),
                _with_file(_edit_values("Fees", "Timetable soon"), None, drop=True))
    assert (await b.one(SavedReply)).attachment is None
