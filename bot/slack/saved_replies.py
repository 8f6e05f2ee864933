"""Saved replies in Slack (pure: no I/O): placeholders filled in, the library modal, its editor and the picker.

A saved reply is text, optionally with one image or document (uploaded in the editor, sent with the text as its
caption).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.slack import limits, render

LIBRARY_CALLBACK = "wabridge_saved_replies"
EDIT_CALLBACK = "wabridge_saved_reply_edit"
PICKER_CALLBACK = "wabridge_saved_reply_picker"
ADD_ACTION = "wabridge_saved_reply_add"
EDIT_ACTION = "wabridge_saved_reply_change"
DELETE_ACTION = "wabridge_saved_reply_delete"
REPLY_SELECT = "wabridge_saved_reply_choice"
OPEN_ACTION = "wabridge_saved_reply_open"  # the thread parent's "Saved reply" button
REPLY_BLOCK = "saved_reply"
TEXT_PREFIX = "text:"  # the editable text's block id names the reply it was filled from
NAME_BLOCK, BODY_BLOCK, NUMBER_BLOCK, FILE_BLOCK, DROP_BLOCK = "name", "body", "number", "file", "drop_file"
DROP_VALUE = "drop"
# What WhatsApp takes as an image or a document (bot.bridge.media decides on the file itself).
FILE_TYPES = ["jpg", "jpeg", "png", "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "txt"]
VALUE_ACTION = "value"
EVERY_NUMBER = "*"
MAX_NAME = 100
MAX_TEXT = 3000  # Slack: a plain_text_input holds at most 3,000 characters
MAX_LISTED = 40  # two blocks each, within a modal's 100
MAX_OPTIONS = 100  # Block Kit: options in an external select
PLACEHOLDERS = ("name", "first_name", "number", "agent", "business")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
TEXT_ONLY = ("A saved reply may carry one image or document (JPEG, PNG, PDF, Office, text): it goes with the "
             "text as its caption.")


@dataclass(frozen=True)
class Entry:
    """A saved reply as the modals show it."""

    id: int
    name: str
    text: str
    number: str | None  # the number's name when it is for one number only
    uses: int = 0
    file_name: str | None = None  # the attached image or document


def fill(text: str, values: Mapping[str, str]) -> str:
    """The text with each known `{placeholder}` replaced; other braces are left as typed."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)


def first_name(name: str) -> str:
    return name.split()[0] if name.split() else ""


def _plain(text: str) -> dict[str, Any]:
    return limits.plain(text, limits.PLACEHOLDER)


def _button(text: str, action_id: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": _plain(text), "value": value, **extra}


def library_view(entries: Sequence[Entry]) -> dict[str, Any]:
    """The library: each saved reply with Edit and Delete, and a button to add one."""
    names = ", ".join(f"`{{{p}}}`" for p in PLACEHOLDERS)
    blocks: list[dict[str, Any]] = [
        limits.section(f"Saved replies of this workspace. In a thread, the *Saved reply* shortcut sends one as "
                       f"your reply. {names} are filled in from the customer and you."),
        limits.context(TEXT_ONLY),
        {"type": "actions", "elements": [_button("Add a saved reply", ADD_ACTION, "new", style="primary")]},
    ]
    if not entries:
        blocks.append(limits.section("No saved replies yet."))
    for e in entries[:MAX_LISTED]:
        scope = f"only {render.escape(e.number)}" if e.number else "every number"
        uses = "used once" if e.uses == 1 else f"used {e.uses} times"
        preview = render.escape(limits.clip(e.text, 200)).replace("\n", " ")
        clip = f" · :paperclip: {render.escape(limits.clip(e.file_name, 60))}" if e.file_name else ""
        blocks.append(limits.section(f"*{render.escape(e.name)}* · {scope} · {uses}{clip}\n{preview}"))
        blocks.append({"type": "actions", "elements": [
            _button("Edit", EDIT_ACTION, str(e.id)),
            _button("Delete", DELETE_ACTION, str(e.id), style="danger", confirm={
                "title": _plain("Delete this saved reply?"), "text": _plain(f"“{limits.clip(e.name, 80)}” goes "
                                                                          "for everyone in this workspace."),
                "confirm": _plain("Delete"), "deny": _plain("Keep")}),
        ]})
    if len(entries) > MAX_LISTED:
        blocks.append(limits.context(f"{len(entries) - MAX_LISTED} more not shown."))
    return limits.fit_view({"type": "modal", "callback_id": LIBRARY_CALLBACK, "title": _plain("Saved replies"),
                            "close": _plain("Done"), "blocks": blocks})


def edit_view(numbers: Sequence[tuple[str, str]], entry: Entry | None = None,
              number_id: str | None = None) -> dict[str, Any]:
    """The editor for a new saved reply or an existing one; `numbers` are (phone_number_id, name) pairs."""
    every = limits.option("Every number", EVERY_NUMBER)
    options = [every] + [limits.option(name, pnid) for pnid, name in numbers]
    chosen = next((o for o in options if o["value"] == (number_id or EVERY_NUMBER)), every)
    name_el: dict[str, Any] = {"type": "plain_text_input", "action_id": VALUE_ACTION, "max_length": MAX_NAME}
    text_el: dict[str, Any] = {"type": "plain_text_input", "action_id": VALUE_ACTION, "multiline": True,
                               "max_length": MAX_TEXT}
    if entry is not None:
        name_el["initial_value"] = entry.name
        text_el["initial_value"] = entry.text
    blocks = [
        {"type": "input", "block_id": NAME_BLOCK, "label": _plain("Name"), "element": name_el},
        {"type": "input", "block_id": BODY_BLOCK, "label": _plain("Text"), "element": text_el,
         "hint": _plain("Placeholders: " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))},
        {"type": "input", "block_id": NUMBER_BLOCK, "label": _plain("For"), "element": {
            "type": "static_select", "action_id": VALUE_ACTION, "options": options, "initial_option": chosen}},
        {"type": "input", "block_id": FILE_BLOCK, "optional": True,
         "label": _plain("Replace the image or document" if entry is not None and entry.file_name
                         else "Image or document (optional)"),
         "element": {"type": "file_input", "action_id": VALUE_ACTION, "max_files": 1, "filetypes": FILE_TYPES}},
    ]
    if entry is not None and entry.file_name:
        blocks.append({"type": "input", "block_id": DROP_BLOCK, "optional": True, "label": _plain("Attached"),
                       "element": {"type": "checkboxes", "action_id": VALUE_ACTION, "options": [
                           limits.option(f"Remove {limits.clip(entry.file_name, 60)}", DROP_VALUE)]}})
    blocks.append(limits.context(TEXT_ONLY))
    return limits.fit_view({
        "type": "modal", "callback_id": EDIT_CALLBACK, "title": _plain("Edit saved reply" if entry else
                                                                       "New saved reply"),
        "submit": _plain("Save"), "close": _plain("Cancel"), "blocks": blocks,
        "private_metadata": json.dumps({"id": entry.id if entry else None})})


@dataclass(frozen=True)
class Edited:
    """A valid submission of the editor."""

    name: str
    text: str
    phone_number_id: str | None
    file: dict[str, Any] | None = None  # a file uploaded in this submission
    drop_file: bool = False  # remove the one attached before


def state_value(state: object, block_id: str, action_id: str = VALUE_ACTION) -> dict[str, Any]:
    """One input's state; {} when the submitted state has another shape."""
    block = state.get(block_id) if isinstance(state, dict) else None
    value = block.get(action_id) if isinstance(block, dict) else None
    return value if isinstance(value, dict) else {}


def parse_edit(state: object, numbers: Sequence[str]) -> tuple[Edited | None, dict[str, str]]:
    """The editor's values, or inline errors by block id."""
    name = str(state_value(state, NAME_BLOCK).get("value") or "").strip()
    text = str(state_value(state, BODY_BLOCK).get("value") or "").strip()
    chosen = state_value(state, NUMBER_BLOCK).get("selected_option")
    number = str(chosen.get("value") or "") if isinstance(chosen, dict) else EVERY_NUMBER
    errors: dict[str, str] = {}
    if not name:
        errors[NAME_BLOCK] = "Give it a name."
    elif len(name) > MAX_NAME:
        errors[NAME_BLOCK] = f"At most {MAX_NAME} characters."
    if not text:
        errors[BODY_BLOCK] = "Write the reply."
    elif len(text) > MAX_TEXT:
        errors[BODY_BLOCK] = f"At most {MAX_TEXT:,} characters."
    if number != EVERY_NUMBER and number not in numbers:
        errors[NUMBER_BLOCK] = "That number is not in this workspace any more; pick another."
    files = state_value(state, FILE_BLOCK).get("files")
    file = files[0] if isinstance(files, list) and files and isinstance(files[0], dict) else None
    if file is not None and not (file.get("id") and (file.get("url_private") or file.get("url_private_download"))):
        errors[FILE_BLOCK] = "Slack did not pass the file on; upload it again."
    dropped = state_value(state, DROP_BLOCK).get("selected_options")
    drop = isinstance(dropped, list) and any(isinstance(o, dict) and o.get("value") == DROP_VALUE for o in dropped)
    if errors:
        return None, errors
    return Edited(name, text, None if number == EVERY_NUMBER else number, kept_file(file), drop), {}


def kept_file(file: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a saved reply keeps of an uploaded Slack file: enough to fetch and send it later."""
    if file is None:
        return None
    keys = ("id", "name", "title", "mimetype", "size", "url_private", "url_private_download")
    return {k: file[k] for k in keys if k in file}


def option(entry: Entry) -> dict[str, Any]:
    return limits.option(entry.name, str(entry.id), limits.clip(entry.text.replace("\n", " "), 75))


def suggestions(entries: Sequence[Entry], typed: str) -> list[dict[str, Any]]:
    """The picker's type-ahead: saved replies whose name or text has what was typed, by name."""
    needle = typed.strip().casefold()
    found = [e for e in entries if needle in e.name.casefold() or needle in e.text.casefold()]
    return [option(e) for e in sorted(found, key=lambda e: e.name.casefold())[:MAX_OPTIONS]]


def picker_view(metadata: str, who: str, has_replies: bool, chosen: Entry | None = None,
                filled: str = "") -> dict[str, Any]:
    """The picker: a type-ahead select that, once a reply is chosen, shows it filled in and editable."""
    blocks: list[dict[str, Any]] = [limits.section(f"To *{render.escape(who)}*")]
    view: dict[str, Any] = {"type": "modal", "callback_id": PICKER_CALLBACK, "title": _plain("Saved reply"),
                            "close": _plain("Cancel"), "private_metadata": metadata, "blocks": blocks}
    if not has_replies:
        blocks.append(limits.section("No saved replies for this number yet: add some with `/wabridge replies`."))
        return limits.fit_view(view)
    select: dict[str, Any] = {"type": "external_select", "action_id": REPLY_SELECT, "min_query_length": 0,
                              "placeholder": _plain("Type to search saved replies")}
    if chosen is not None:
        select["initial_option"] = option(chosen)
    blocks.append({"type": "input", "block_id": REPLY_BLOCK, "dispatch_action": True,
                   "label": _plain("Saved reply"), "element": select})
    view["submit"] = _plain("Send")
    if chosen is not None:
        blocks.append({"type": "input", "block_id": f"{TEXT_PREFIX}{chosen.id}", "label": _plain("Reply"),
                       "element": {"type": "plain_text_input", "action_id": VALUE_ACTION, "multiline": True,
                                   "max_length": MAX_TEXT, "initial_value": filled[:MAX_TEXT]}})
        blocks.append(limits.context("Filled in for this customer; change anything before sending. It goes as "
                                     "your reply, and the thread shows a copy."))
        if chosen.file_name:
            blocks.append(limits.context(f":paperclip: {render.escape(limits.clip(chosen.file_name, 80))} goes "
                                         "with it, the text as its caption."))
    return limits.fit_view(view)


def picked(state: object) -> tuple[int | None, str | None]:
    """The chosen saved reply's id and the text to send (None when the text shown was for another reply)."""
    chosen = state_value(state, REPLY_BLOCK, REPLY_SELECT).get("selected_option")
    raw = chosen.get("value") if isinstance(chosen, dict) else None
    reply_id = int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) < 19 else None
    if reply_id is None or not isinstance(state, dict):
        return reply_id, None
    block = f"{TEXT_PREFIX}{reply_id}"
    if block not in state:
        return reply_id, None
    return reply_id, str(state_value(state, block).get("value") or "")
