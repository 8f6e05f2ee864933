"""Saved replies from Slack: `/wabridge replies` (the library: add, edit, delete) and the "Saved reply" shortcut
or thread parent button (a type-ahead picker, the reply filled in for the customer and editable, sent as the
person's reply).

Everything is scoped to the request's workspace: a saved reply of another workspace named in a payload is refused
and logged. A picked reply goes the way a typed one does (`slack_messages.send_and_answer`: window, ledger, thread
copy); outside the 24-hour window the person is offered the template picker instead, as for a typed reply.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.bridge.media import whatsapp_kind
from bot.bridge.reply_threads import BridgedThread, NumberGone, lookup_thread, number_gone_text
from bot.bridge.staff_replies import Outcome, Reply
from bot.core.config import ThreadReplies
from bot.core.window import window_closes_at, window_open
from bot.core.workspace import DEFAULT_WORKSPACE, in_scope, request_scope
from bot.deps import Deps
from bot.handlers.slack_actions import PickerTarget, thread_by_conversation
from bot.handlers.slack_messages import ephemeral, reply_gate, send_and_answer, tell_window_closed
from bot.handlers.slack_search import on_find
from bot.handlers.slack_settings import on_settings
from bot.slack import once, payloads, render, reply_ledger
from bot.slack import saved_replies as ui
from bot.slack.display_names import clean_name
from bot.slack.errors import slack_reason
from bot.slack.names import resolve_names
from bot.slack.permissions import Permissions
from bot.slack.reply_gate import ReplyGate, installed_teams
from bot.slack.saved_replies import (
    ADD_ACTION,
    DELETE_ACTION,
    EDIT_ACTION,
    EDIT_CALLBACK,
    OPEN_ACTION,
    PICKER_CALLBACK,
    REPLY_SELECT,
)
from bot.slack.to_whatsapp import References
from storage import saved_replies as store
from storage.models import Contact, SavedReply, utcnow

log = logging.getLogger(__name__)

COMMAND = "/wabridge"
SHORTCUT = "wabridge_saved_reply"
USAGE = ("Usage: `/wabridge replies` opens this workspace's saved replies (add, edit, delete); `/wabridge find "
         "<words | name | number> [owner:@someone] [status:open]` finds conversations; `/wabridge settings "
         "[number]` shows managers each number's hours, away message and survey.")
NOT_HERE = "That saved reply is not in this workspace's library; pick another."
ALREADY = "This reply is already being sent; check the thread."
LIBRARY_REFUSED = ("Only those who may reply to customers (`slack.permissions.reply_to_customers`) keep this "
                   "workspace's saved replies.")


@dataclass
class _Listeners:
    deps: Deps
    gate: ReplyGate  # slack.permissions.reply_to_customers: who may send, and so who keeps the library
    permissions: Permissions  # channel membership, for `/wabridge find`


def register(bolt: AsyncApp, deps: Deps) -> None:
    """`/wabridge`, the library's buttons and editor, the shortcut and its picker."""
    app = _Listeners(deps, reply_gate(deps), Permissions(deps.settings.slack, deps.slack))
    bolt.command(COMMAND)(partial(on_command, app))
    bolt.action(ADD_ACTION)(partial(on_add, app))
    bolt.action(EDIT_ACTION)(partial(on_edit, app))
    bolt.action(DELETE_ACTION)(partial(on_delete, app))
    bolt.view(EDIT_CALLBACK)(partial(on_saved, app))
    bolt.shortcut(SHORTCUT)(partial(on_shortcut, app))
    bolt.action(OPEN_ACTION)(partial(on_button, app))
    bolt.options(REPLY_SELECT)(partial(on_options, app))
    bolt.action(REPLY_SELECT)(partial(on_chosen, app))
    bolt.view(PICKER_CALLBACK)(partial(on_send, app))


def _workspace() -> str:
    scope = request_scope()
    return scope.workspace if scope is not None else DEFAULT_WORKSPACE


def _numbers(deps: Deps, workspace: str) -> dict[str, str]:
    """The workspace's numbers: phone_number_id -> name."""
    return {c.phone_number_id: c.name for c in deps.settings.channels if deps.settings.workspace_of(c) == workspace}


def _size(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _entry(row: SavedReply, numbers: dict[str, str]) -> ui.Entry:
    number = numbers.get(row.phone_number_id, row.phone_number_id) if row.phone_number_id else None
    file_name = str(row.attachment.get("name") or "file") if row.attachment else None
    return ui.Entry(row.id, row.name, row.text, number, row.uses, file_name)


async def _entries(deps: Deps, workspace: str, phone_number_id: str | None = None) -> list[ui.Entry]:
    numbers = _numbers(deps, workspace)
    async with deps.sessions() as s:
        return [_entry(r, numbers) for r in await store.library(s, workspace, phone_number_id)]


async def _own(deps: Deps, reply_id: int | None) -> SavedReply | None:
    """The saved reply by id when it is the request's workspace's; another's is refused (and logged)."""
    if reply_id is None:
        return None
    async with deps.sessions() as s:
        row = await store.get(s, reply_id)
    if row is None or not in_scope(row.slack_team, f"saved reply {reply_id}"):
        return None
    return row


def _user(body: dict[str, Any]) -> tuple[str, str]:
    raw = body.get("user")
    user: dict[str, Any] = raw if isinstance(raw, dict) else {}
    uid = str(body.get("user_id") or user.get("id") or "")
    return uid, str(body.get("team_id") if body.get("user_id") else user.get("team_id") or "")


async def _refusal(app: _Listeners, body: dict[str, Any], context: Any, slack_team: str = "") -> str | None:
    user, team = _user(body)
    return await app.gate.judge(user, team, installed_teams(getattr(context, "authorize_result", None),
                                                            slack_team))


async def _show(client: Any, view: dict[str, Any], new_view: dict[str, Any]) -> None:
    try:
        await client.views_update(view_id=view.get("id"), view=new_view)
    except SlackApiError as exc:
        log.warning("saved replies modal not updated: %s", slack_reason(exc))


# -- the library -------------------------------------------------------------------------------------------------

async def on_command(app: _Listeners, ack: Any, body: dict[str, Any], client: Any, context: Any = None,
                     respond: Any = None) -> None:
    words = str(body.get("text") or "").split()
    if words[:1] == ["find"]:
        await on_find(app.deps, app.permissions, ack, respond, body, str(body.get("text") or "").strip()[4:])
        return
    if words[:1] == ["settings"]:
        await on_settings(app.deps, app.permissions, ack, body, " ".join(words[1:]))
        return
    if words[:1] != ["replies"]:
        await ack(text=USAGE)
        return
    if await _refusal(app, body, context) is not None:
        await ack(text=LIBRARY_REFUSED)
        return
    await ack()
    try:
        await client.views_open(trigger_id=body.get("trigger_id"),
                                view=ui.library_view(await _entries(app.deps, _workspace())))
    except SlackApiError as exc:
        log.warning("saved replies library not opened: %s", slack_reason(exc))


def _action_id(body: dict[str, Any]) -> int | None:
    value = str(((body.get("actions") or [{}])[0]).get("value") or "")
    return int(value) if value.isdigit() and len(value) < 19 else None


async def on_add(app: _Listeners, ack: Any, body: dict[str, Any], client: Any) -> None:
    await ack()
    await _show(client, body.get("view") or {}, ui.edit_view(sorted(_numbers(app.deps, _workspace()).items())))


async def on_edit(app: _Listeners, ack: Any, body: dict[str, Any], client: Any) -> None:
    await ack()
    row = await _own(app.deps, _action_id(body))
    if row is None:
        return
    numbers = _numbers(app.deps, _workspace())
    await _show(client, body.get("view") or {},
                ui.edit_view(sorted(numbers.items()), _entry(row, numbers), row.phone_number_id))


async def on_delete(app: _Listeners, ack: Any, body: dict[str, Any], client: Any, context: Any = None) -> None:
    await ack()
    deps, workspace = app.deps, _workspace()
    row = await _own(deps, _action_id(body))
    if row is None or await _refusal(app, body, context) is not None:
        return
    async with deps.sessions() as s, s.begin():
        await store.remove(s, workspace, row.id)
    log.info("saved reply %s deleted by %s", row.id, _user(body)[0])
    await _show(client, body.get("view") or {}, ui.library_view(await _entries(deps, workspace)))


async def on_saved(app: _Listeners, ack: Any, body: dict[str, Any], view: dict[str, Any],
                   context: Any = None) -> None:
    deps, workspace = app.deps, _workspace()
    user = _user(body)[0]
    numbers = _numbers(deps, workspace)
    edited, errors = ui.parse_edit((view.get("state") or {}).get("values") or {}, list(numbers))
    raw_id = json.loads(view.get("private_metadata") or "{}").get("id") if view.get("private_metadata") else None
    reply_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    if edited is not None and edited.file is not None:  # WhatsApp must take it (kind and size), said now
        verdict = whatsapp_kind(str(edited.file.get("mimetype") or ""), _size(edited.file.get("size")),
                                str(edited.file.get("name") or ""))
        if verdict.kind not in ("image", "document"):
            edited, errors = None, {ui.FILE_BLOCK: verdict.reason or "Attach an image or a document."}
    if edited is None:
        await ack(response_action="errors", errors=errors)
        return
    if await _refusal(app, body, context) is not None:
        await ack(response_action="errors", errors={ui.NAME_BLOCK: LIBRARY_REFUSED})
        return
    if reply_id is not None and await _own(deps, reply_id) is None:
        await ack(response_action="errors", errors={ui.NAME_BLOCK: "This saved reply is gone; close and reopen."})
        return
    key = once.action_key("savedreply-edit", user, str(view.get("id") or ""),
                          json.dumps(view.get("state") or {}, sort_keys=True))
    if await once.claim(deps.sessions, key) is not None:
        await ack()
        return
    async with deps.sessions() as s, s.begin():
        if reply_id is None:
            await store.add(s, workspace, name=edited.name, text=edited.text,
                            phone_number_id=edited.phone_number_id, user=user, attachment=edited.file)
        else:
            attachment = edited.file if edited.file is not None else None if edited.drop_file else store.KEEP
            await store.change(s, workspace, reply_id, name=edited.name, text=edited.text,
                               phone_number_id=edited.phone_number_id, attachment=attachment)
    await once.settle(deps.sessions, key, {})
    await ack(response_action="update", view=ui.library_view(await _entries(deps, workspace)))


# -- the picker in a thread --------------------------------------------------------------------------------------

async def _contact(deps: Deps, thread: BridgedThread) -> tuple[str, str]:
    """The customer's name (empty when unknown) and the label the picker shows."""
    async with deps.sessions() as s:
        contact = await s.get(Contact, thread.contact_id)
    name = clean_name(contact.address_book_name or contact.profile_name) if contact is not None else None
    return name or "", render.ContactView(thread.wa_id, name).label


async def filled_text(deps: Deps, thread: BridgedThread, text: str, user: str) -> str:
    """The saved reply's text with the customer's and the sender's details in place of its placeholders."""
    name, _ = await _contact(deps, thread)
    agents = await resolve_names(deps.slack, deps.slack_names, References(users=frozenset({user})))
    return ui.fill(text, {"name": name, "first_name": ui.first_name(name),
                          "number": render.format_number(thread.wa_id), "agent": agents.users.get(user, ""),
                          "business": thread.channel.name})


def _for_thread(row: SavedReply | None, thread: BridgedThread) -> SavedReply | None:
    ok = row is not None and row.phone_number_id in (None, thread.channel.phone_number_id)
    return row if ok else None


async def on_shortcut(app: _Listeners, ack: Any, body: dict[str, Any], client: Any, context: Any = None) -> None:
    deps = app.deps
    await ack()
    user = _user(body)[0]
    channel = str((body.get("channel") or {}).get("id") or "")
    message = body.get("message") or {}
    thread_ts = message.get("thread_ts") or message.get("ts")
    found = await lookup_thread(deps, channel, str(thread_ts)) if thread_ts else None
    if not isinstance(found, BridgedThread):
        text = number_gone_text(found) if isinstance(found, NumberGone) else \
            "That message is not in a WhatsApp conversation thread."
        await ephemeral(deps, None, channel, user, text, thread_ts=str(thread_ts) if found else None)
        return
    await _offer(app, body, client, context, found)


async def on_button(app: _Listeners, ack: Any, body: dict[str, Any], client: Any, context: Any = None) -> None:
    """The thread parent's "Saved reply" button: the shortcut's picker, for the conversation it names."""
    await ack()
    value = str(((body.get("actions") or [{}])[0]).get("value") or "")
    conversation_id = payloads.as_id(payloads.metadata(value).get("conversation_id"))
    thread = await thread_by_conversation(app.deps, conversation_id) if conversation_id is not None else None
    if thread is not None:
        await _offer(app, body, client, context, thread)


async def _offer(app: _Listeners, body: dict[str, Any], client: Any, context: Any, thread: BridgedThread) -> None:
    """Open the picker for a thread, or say privately why not (not allowed, notes only, window closed)."""
    deps, user, channel = app.deps, _user(body)[0], thread.slack_channel
    no = await _refusal(app, body, context, thread.channel.slack_team)
    if thread.channel.thread_replies is ThreadReplies.NOTES_ONLY:
        no = ":lock: This channel mirrors WhatsApp only: nothing is sent to the customer from it."
    if no is not None:
        await ephemeral(deps, thread, channel, user, no)
        return
    if not window_open(thread.last_customer_message_at, utcnow()):
        await tell_window_closed(deps, thread, user, window_closes_at(thread.last_customer_message_at))
        return
    target = PickerTarget(thread.conversation_id, thread.slack_channel, thread.thread_ts)
    entries = await _entries(deps, _workspace(), thread.channel.phone_number_id)
    try:
        await client.views_open(trigger_id=body.get("trigger_id"),
                                view=ui.picker_view(target.dump(), (await _contact(deps, thread))[1], bool(entries)))
    except SlackApiError as exc:
        log.warning("saved reply picker not opened: %s", slack_reason(exc))
        await ephemeral(deps, thread, channel, user, f":warning: The saved reply picker did not open "
                        f"({slack_reason(exc)}); try the shortcut again.")


async def _picker_thread(deps: Deps, view: dict[str, Any]) -> BridgedThread | None:
    target = PickerTarget.load(view.get("private_metadata"))
    return await thread_by_conversation(deps, target.conversation_id) if target is not None else None


async def on_options(app: _Listeners, ack: Any, body: dict[str, Any]) -> None:
    thread = await _picker_thread(app.deps, body.get("view") or {})
    if thread is None:
        await ack(options=[])
        return
    entries = await _entries(app.deps, _workspace(), thread.channel.phone_number_id)
    await ack(options=ui.suggestions(entries, str(body.get("value") or "")))


async def on_chosen(app: _Listeners, ack: Any, body: dict[str, Any], client: Any) -> None:
    deps = app.deps
    await ack()
    view = body.get("view") or {}
    thread = await _picker_thread(deps, view)
    selected = str(((body.get("actions") or [{}])[0].get("selected_option") or {}).get("value") or "")
    if thread is None or not selected.isdigit():
        return
    row = _for_thread(await _own(deps, int(selected)), thread)
    if row is None:
        return
    user = _user(body)[0]
    new_view = ui.picker_view(str(view.get("private_metadata") or ""), (await _contact(deps, thread))[1], True,
                              _entry(row, _numbers(deps, _workspace())),
                              await filled_text(deps, thread, row.text, user))
    try:
        await client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=new_view)
    except SlackApiError as exc:
        log.warning("saved reply picker not updated: %s", slack_reason(exc))


async def on_send(app: _Listeners, ack: Any, body: dict[str, Any], view: dict[str, Any],
                  context: Any = None) -> None:
    deps = app.deps
    user = _user(body)[0]
    thread = await _picker_thread(deps, view)
    if thread is None:
        await ack(response_action="errors", errors={ui.REPLY_BLOCK: "This conversation is gone."})
        return
    state = (view.get("state") or {}).get("values") or {}
    reply_id, text = ui.picked(state)
    row = _for_thread(await _own(deps, reply_id), thread)
    if row is None:
        await ack(response_action="errors", errors={ui.REPLY_BLOCK: NOT_HERE if reply_id else
                                                    "Pick a saved reply."})
        return
    if text is None:
        await ack(response_action="errors", errors={ui.REPLY_BLOCK: "Choose the saved reply again."})
        return
    if not text.strip():
        await ack(response_action="errors", errors={f"{ui.TEXT_PREFIX}{row.id}": "Write something to send."})
        return
    no = await _refusal(app, body, context, thread.channel.slack_team)
    if no is None and thread.channel.thread_replies is ThreadReplies.NOTES_ONLY:
        no = "This channel mirrors WhatsApp only: nothing is sent to the customer from it."
    if no is not None:
        await ack(response_action="errors", errors={ui.REPLY_BLOCK: no})
        return
    # The same person submitting the same form in the same modal is one reply, however often it arrives.
    key = once.action_key("savedreply", user, str(view.get("id") or ""), json.dumps(state, sort_keys=True))
    prior = await once.claim(deps.sessions, key)
    if prior is not None:
        await ack(**(prior.outcome if prior.outcome is not None else
                     {"response_action": "errors", "errors": {ui.REPLY_BLOCK: ALREADY}}))
        return
    await ack()
    if not window_open(thread.last_customer_message_at, utcnow()):
        await once.settle(deps.sessions, key, {})
        await tell_window_closed(deps, thread, user, window_closes_at(thread.last_customer_message_at))
        return
    # Its image or document goes first with the text as its caption, through the typed reply's file path.
    reply = Reply(text, [row.attachment] if row.attachment else [], None,
                  {"saved_reply": {"id": row.id, "name": row.name}})
    outcome = await send_and_answer(deps, thread, reply, user, reply_ledger.reply_key(thread.slack_channel,
                                                                                   f"saved:{key[:24]}"))
    if outcome is Outcome.SENT:
        async with deps.sessions() as s, s.begin():
            await store.count_use(s, row.id)
    await once.settle(deps.sessions, key, {})
    log.info("saved reply %s by %s in %s: %s", row.id, user, thread.thread_ts, outcome.value)
