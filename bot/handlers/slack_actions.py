"""Buttons, modals and message shortcuts in bridged threads.

- The template picker: opened from the 'window closed' button or the "Send template" shortcut; lists the
  channel's approved templates, asks for their variables, validates inline, and sends the template.
- "Mark opted out / in": flips the contact's marketing opt-out and notes who did it in the thread.
- "Export thread": uploads a plain-text transcript of the conversation into the thread.

The picker's view, checks and send are in bot.handlers.template_picker; its names stay importable here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.bridge.inbox import audit_text
from bot.bridge.reply_threads import BridgedThread, NumberGone, find_thread, lookup_thread, number_gone_text
from bot.core.identity_hash import optional_salt, wa_id_hash
from bot.core.origin import Direction, Source
from bot.deps import Deps
from bot.handlers.slack_messages import OPEN_PICKER_ACTION, ephemeral, reply_gate
from bot.handlers.slack_once import first_delivery, settle_send_failure

# Names tests and the saved-replies and inbox listeners know from here.
from bot.handlers.template_picker import PICKER_CALLBACK as PICKER_CALLBACK
from bot.handlers.template_picker import TEMPLATE_BLOCK as TEMPLATE_BLOCK
from bot.handlers.template_picker import TEMPLATE_SELECT as TEMPLATE_SELECT
from bot.handlers.template_picker import VALUE_ACTION as VALUE_ACTION
from bot.handlers.template_picker import PickerTarget as PickerTarget
from bot.handlers.template_picker import (
    approved_template,
    approved_templates,
    choosable,
    contact_label,
    failure_words,
    open_picker,
    send_template,
    state_value,
    validate_submission,
)
from bot.handlers.template_picker import picker_view as picker_view
from bot.handlers.template_picker import var_block_id as var_block_id
from bot.meta.errors import GraphError
from bot.slack import once, payloads, render, template_choice
from bot.slack.answer_time import answer_by
from bot.slack.errors import slack_reason
from bot.slack.outbox import wake_outbox
from bot.slack.permissions import UNCHECKED, Action, MembershipUnknown, Permissions, refusal
from bot.slack.reply_gate import OUTSIDER, ReplyGate, installed_teams
from scheduler.throttle import ThrottleUnavailable
from storage import erasure
from storage import inbox as inbox_store
from storage import repository as repo
from storage.models import Contact, Conversation, Message, Template
from storage.outbox_kinds import Note, enqueue

log = logging.getLogger(__name__)

SHORTCUT_SEND_TEMPLATE = "wabridge_send_template"
SHORTCUT_OPT_OUT = "wabridge_toggle_opt_out"
SHORTCUT_EXPORT = "wabridge_export_thread"
MODAL_SEND_BUDGET = 2.2  # seconds after the request arrived to wait for Meta before closing the modal (Slack allows 3)
MAX_OPTIONS = 100  # Block Kit: options in a static select
ALREADY_SENDING = "This template is already being sent; check the thread."
STALE_FORM = "This form can no longer be used; close it and open the template picker again."


async def thread_by_conversation(deps: Deps, conversation_id: int) -> BridgedThread | None:
    async with deps.sessions() as s:
        conv = await s.get(Conversation, conversation_id)
    if conv is None or not conv.slack_channel or not conv.slack_thread_ts:
        return None
    return await find_thread(deps, conv.slack_channel, conv.slack_thread_ts)


@dataclass
class _TemplateListeners:
    """What the listeners below share within one app."""

    deps: Deps
    permissions: Permissions
    gate: ReplyGate  # slack.permissions.reply_to_customers: a template is a message to the customer too


def register(bolt: AsyncApp, deps: Deps) -> None:
    """Template picker, its submission, and the message shortcuts."""
    app = _TemplateListeners(deps, Permissions(deps.settings.slack, deps.slack), reply_gate(deps))
    bolt.action(OPEN_PICKER_ACTION)(partial(open_from_button, app))
    bolt.action(TEMPLATE_SELECT)(partial(template_chosen, app))
    bolt.options(TEMPLATE_SELECT)(partial(template_options, app))
    bolt.view(PICKER_CALLBACK)(partial(submitted, app))
    bolt.shortcut(SHORTCUT_SEND_TEMPLATE)(partial(send_template_shortcut, app))
    bolt.shortcut(SHORTCUT_OPT_OUT)(partial(toggle_opt_out, app))
    bolt.shortcut(SHORTCUT_EXPORT)(partial(export_thread, app))


async def refused(app: _TemplateListeners, action: Action, user: str, channel: str,
                  thread: BridgedThread | None) -> bool:
    """True (and the person told, privately) when user may not do this here."""
    answer = await refusal_for(app.permissions, action, user, channel)
    if answer is None:
        return False
    await ephemeral(app.deps, thread, channel, user, answer)
    return True


async def refusal_for(permissions: Permissions, action: Action, user: str, channel: str) -> str | None:
    """None when user may do this here; else what they are told (refused, or Slack did not say in time)."""
    try:
        return None if await permissions.allows(action, user, channel) else refusal(action, permissions.role(action))
    except MembershipUnknown:
        return UNCHECKED


async def open_from_button(app: _TemplateListeners, ack: Any, body: dict[str, Any], client: Any) -> None:
    deps = app.deps
    await ack()
    action = (body.get("actions") or [{}])[0]
    conversation_id = payloads.as_id(payloads.metadata(action.get("value")).get("conversation_id"))
    thread = await thread_by_conversation(deps, conversation_id) if conversation_id is not None else None
    user = str((body.get("user") or {}).get("id") or "")
    if thread is None or not body.get("trigger_id") \
            or await refused(app, Action.SEND_TEMPLATES, user, thread.slack_channel, thread):
        return
    await open_picker(deps, client, str(body["trigger_id"]), thread, user)


async def template_options(app: _TemplateListeners, ack: Any, body: dict[str, Any]) -> None:
    """Slack asks which templates to offer for what the user typed."""
    deps = app.deps
    target = PickerTarget.load((body.get("view") or {}).get("private_metadata", ""))
    if target is None:
        await ack(options=[])
        return
    thread = await thread_by_conversation(deps, target.conversation_id)
    if thread is None:
        await ack(options=[])
        return
    templates = [choosable(t) for t in await approved_templates(deps, thread.channel.waba_id)]
    await ack(**template_choice.suggestions(templates, template_choice.typed(body)))


async def template_chosen(app: _TemplateListeners, ack: Any, body: dict[str, Any], client: Any) -> None:
    deps = app.deps
    await ack()
    view = body.get("view") or {}
    selected = ((body.get("actions") or [{}])[0].get("selected_option") or {}).get("value")
    target = PickerTarget.load(view.get("private_metadata"))
    thread = await thread_by_conversation(deps, target.conversation_id) if target is not None else None
    if target is None or thread is None or not selected:
        return
    chosen = await approved_template(deps, thread.channel.waba_id, str(selected))
    new_view = picker_view(target, await contact_label(deps, thread), True, chosen)
    try:
        await client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=new_view)
    except SlackApiError as exc:
        log.warning("template picker update failed: %s", slack_reason(exc))


async def submitted(app: _TemplateListeners, ack: Any, body: dict[str, Any], view: dict[str, Any],
                    context: Any = None) -> None:
    deps = app.deps
    answer_at = answer_by(context, MODAL_SEND_BUDGET)  # the checks below count against Slack's 3 seconds too
    user = str((body.get("user") or {}).get("id") or "")
    target = PickerTarget.load(view.get("private_metadata"))
    state = (view.get("state") or {}).get("values") or {}
    selected = state_value(state, TEMPLATE_BLOCK, TEMPLATE_SELECT).get("selected_option")
    selected = selected if isinstance(selected, dict) else {}
    if target is None:
        await ack(response_action="errors", errors={TEMPLATE_BLOCK: STALE_FORM})
        return
    thread = await thread_by_conversation(deps, target.conversation_id)
    if thread is None:
        await ack(response_action="errors", errors={TEMPLATE_BLOCK: "This conversation is gone."})
        return
    no = await refusal_for(app.permissions, Action.SEND_TEMPLATES, user, thread.slack_channel)
    if no is None:
        home = installed_teams(getattr(context, "authorize_result", None), thread.channel.slack_team)
        no = await app.gate.judge(user, str((body.get("user") or {}).get("team_id") or ""), home)
    if no is not None:
        await ack(response_action="errors", errors={TEMPLATE_BLOCK: no})
        return
    template = None
    template_id = payloads.as_id(selected.get("value"))
    async with deps.sessions() as s:
        if template_id is not None:
            template = await s.get(Template, template_id)
            if template is not None and template.waba_id != thread.channel.waba_id:
                template = None
        contact = await s.get(Contact, thread.contact_id)
    errors, values = validate_submission(state, template, bool(contact and contact.opted_out))
    if errors or template is None:
        await ack(response_action="errors", errors=errors)
        return
    # The same person submitting the same form in the same modal is one send, however often it arrives.
    key = once.action_key("picker", user, str(view.get("id") or ""), json.dumps(state, sort_keys=True))
    prior = await once.claim(deps.sessions, key)
    if prior is not None:
        await ack(**(prior.outcome if prior.outcome is not None else
                     {"response_action": "errors", "errors": {TEMPLATE_BLOCK: ALREADY_SENDING}}))
        return
    sending = asyncio.ensure_future(send_template(deps, thread, template, values, user))
    done, _ = await asyncio.wait({sending}, timeout=max(0.0, answer_at - time.monotonic()))
    if done and sending.exception() is not None:
        exc = sending.exception()
        assert exc is not None
        answer = {"response_action": "errors", "errors": {TEMPLATE_BLOCK: failure_words(exc)[:300]}}
        await settle_send_failure(deps, thread, key, exc, answer)
        await ack(**answer)
        return
    await ack()
    if done:
        await once.settle(deps.sessions, key, {})
        return
    try:
        await sending
    except (GraphError, ThrottleUnavailable, TimeoutError) as exc:
        await settle_send_failure(deps, thread, key, exc, {})
        await ephemeral(deps, thread, thread.slack_channel, user,
                        f":warning: Template {template.name} not sent: {failure_words(exc)}")
    else:
        await once.settle(deps.sessions, key, {})


async def shortcut_thread(app: _TemplateListeners, body: dict[str, Any]) -> BridgedThread | None:
    deps = app.deps
    channel = str((body.get("channel") or {}).get("id") or "")
    message = body.get("message") or {}
    thread_ts = message.get("thread_ts") or message.get("ts")
    found = await lookup_thread(deps, channel, str(thread_ts)) if thread_ts else None
    if isinstance(found, BridgedThread):
        return found
    user = str((body.get("user") or {}).get("id") or "")
    if isinstance(found, NumberGone):
        await ephemeral(deps, None, channel, user, number_gone_text(found), thread_ts=found.thread_ts)
    else:
        await ephemeral(deps, None, channel, user, "That message is not in a WhatsApp conversation thread.")
    return None


async def send_template_shortcut(app: _TemplateListeners, ack: Any, body: dict[str, Any], client: Any) -> None:
    deps = app.deps
    await ack()
    thread = await shortcut_thread(app, body)
    user = str((body.get("user") or {}).get("id") or "")
    if thread is not None and not await refused(app, Action.SEND_TEMPLATES, user, thread.slack_channel, thread):
        await open_picker(deps, client, str(body["trigger_id"]), thread, user)


async def outsider_refusal(gate: ReplyGate, body: dict[str, Any], context: Any, slack_team: str) -> str | None:
    """What a Slack Connect user (another organisation's) is told when asking for a customer's data or consent;
    None for this workspace's members. Unlike a reply, this waits for Slack's word: without it nothing is done."""
    raw = body.get("user")
    who: dict[str, Any] = raw if isinstance(raw, dict) else {}
    outsider = await gate.outsider(str(who.get("id") or ""), str(who.get("team_id") or ""),
                                   installed_teams(getattr(context, "authorize_result", None), slack_team))
    if outsider is None:
        return UNCHECKED
    return OUTSIDER if outsider else None


async def _acted_on(app: _TemplateListeners, body: dict[str, Any], action: Action, kind: str,
                    context: Any) -> tuple[BridgedThread, str] | None:
    """The thread a message shortcut was used on and who used it, when they may, the first time only.
    Opt-outs and exports are for this workspace's members only (never Slack Connect users)."""
    thread = await shortcut_thread(app, body)
    if thread is None:
        return None
    user = str((body.get("user") or {}).get("id") or "")
    if await refused(app, action, user, thread.slack_channel, thread):
        return None
    outsider = await outsider_refusal(app.gate, body, context, thread.channel.slack_team)
    if outsider is not None:
        log.info("%s by %s refused: not a member of workspace %s", kind, user, thread.channel.slack_team)
        await ephemeral(app.deps, thread, thread.slack_channel, user, outsider)
        return None
    if not await first_delivery(app.deps, kind, body, thread, user):
        return None
    return thread, user


async def toggle_opt_out(app: _TemplateListeners, ack: Any, body: dict[str, Any], context: Any = None) -> None:
    deps = app.deps
    await ack()
    acted = await _acted_on(app, body, Action.OPT_OUT, "optout", context)
    if acted is None:
        return
    thread, user = acted
    async with deps.sessions() as s, s.begin():
        contact = await s.get(Contact, thread.contact_id)
        if contact is None:
            return
        opted_out = not contact.opted_out
        await repo.set_opt_out(s, contact.id, opted_out, reason=f"marked in Slack by {user}")
        salt = optional_salt(deps.settings)
        if not opted_out and salt is not None:  # an erased person opted back in may hear from campaigns again
            await erasure.lift(s, [wa_id_hash(salt, contact.wa_id)])
        text = (f":no_bell: Marked *opted out* of marketing campaigns by <@{user}>." if opted_out
                else f":bell: Marked *opted back in* to marketing campaigns by <@{user}>.")
        await enqueue(s, Note(thread.conversation_id, text, mrkdwn=True),
                      dedupe_key=f"optmark:{thread.conversation_id}:{body.get('action_ts')}")
    wake_outbox(deps)


async def export_thread(app: _TemplateListeners, ack: Any, body: dict[str, Any], client: Any,
                        context: Any = None) -> None:
    deps = app.deps
    await ack()
    acted = await _acted_on(app, body, Action.EXPORT, "export", context)
    if acted is None:
        return
    thread, _ = acted
    content, filename = await transcript_for(deps, thread)
    try:
        await client.files_upload_v2(channel=thread.slack_channel, thread_ts=thread.thread_ts,
                                     content=content, filename=filename, title=filename)
    except SlackApiError as exc:
        log.warning("export of %s failed: %s", thread.thread_ts, slack_reason(exc))


def _who(msg: Message, customer: str, channel: str) -> str:
    if msg.is_note:
        return f"note by {msg.slack_user or 'Slack'}"
    if msg.direction == Direction.INBOUND:
        return customer
    if msg.source == Source.PHONE_APP:
        return f"{channel} (phone app)"
    if msg.source == Source.SLACK:
        return f"{channel} (Slack, {msg.slack_user or '?'})"
    return f"{channel} ({msg.source})"


async def transcript_for(deps: Deps, thread: BridgedThread) -> tuple[str, str]:
    """A plain-text transcript of the thread's conversation, and a file name for it."""
    async with deps.sessions() as s:
        contact = await s.get(Contact, thread.contact_id)
        rows = (await s.scalars(select(Message).where(Message.conversation_id == thread.conversation_id)
                                .order_by(Message.wa_timestamp, Message.id))).all()
        changes = await inbox_store.events_of(s, thread.conversation_id)
    who = render.ContactView(thread.wa_id, (contact.address_book_name or contact.profile_name)
                             if contact else None).label
    lines = [render.TranscriptLine(m.wa_timestamp, _who(m, who, thread.channel.name), m.text or f"[{m.type}]")
             for m in rows]
    # The inbox's changes (take, assign, resolve, reopen) in their place among the messages.
    lines += [render.TranscriptLine(e.created_at, "inbox", audit_text(e.action, e.actor, e.assignee, e.detail))
              for e in changes]
    lines.sort(key=lambda line: line.at)
    title = f"WhatsApp conversation with {who} on {thread.channel.name}"
    return render.transcript(title, lines, deps.settings.timezone), f"transcript-{thread.wa_id}.txt"
