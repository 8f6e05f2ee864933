"""Buttons, modals and message shortcuts in bridged threads.

- The template picker: opened from the 'window closed' button or the "Send template" shortcut; lists the
  channel's approved templates, asks for their variables, validates inline, and sends the template.
- "Mark opted out / in": flips the contact's marketing opt-out and notes who did it in the thread.
- "Export thread": uploads a plain-text transcript of the conversation into the thread.

Why one module: the template picker's view, its type-ahead options, its submission and the shortcuts
that open it share the picker's target and the permission checks.
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
from bot.core.identity_hash import optional_salt, wa_id_hash
from bot.deps import Deps
from bot.handlers.slack_messages import (
    OPEN_PICKER_ACTION,
    BridgedThread,
    NumberGone,
    ephemeral,
    find_thread,
    lookup_thread,
    number_gone_text,
    record_sent,
    reply_gate,
)
from bot.handlers.slack_once import first_delivery, settle_send_failure
from bot.meta.errors import GraphError, explain
from bot.meta.graph import SendResult
from bot.slack import limits, once, payloads, render, template_choice
from bot.slack.answer_time import answer_by
from bot.slack.errors import slack_reason
from bot.slack.outbox import wake_outbox
from bot.slack.permissions import UNCHECKED, Action, MembershipUnknown, Permissions, refusal
from bot.slack.reply_gate import OUTSIDER, ReplyGate, installed_teams
from scheduler.throttle import Priority, ThrottleUnavailable
from storage import erasure
from storage import inbox as inbox_store
from storage import repository as repo
from storage.models import Contact, Conversation, Message, Template
from storage.outbox_kinds import Note, enqueue

log = logging.getLogger(__name__)

PICKER_CALLBACK = "wabridge_template_picker"
TEMPLATE_SELECT = "wabridge_template_choice"
VALUE_ACTION = "value"
SHORTCUT_SEND_TEMPLATE = "wabridge_send_template"
SHORTCUT_OPT_OUT = "wabridge_toggle_opt_out"
SHORTCUT_EXPORT = "wabridge_export_thread"
TEMPLATE_BLOCK = "template"
MODAL_SEND_BUDGET = 2.2  # seconds after the request arrived to wait for Meta before closing the modal (Slack allows 3)
MAX_OPTIONS = 100  # Block Kit: options in a static select
ALREADY_SENDING = "This template is already being sent; check the thread."
STALE_FORM = "This form can no longer be used; close it and open the template picker again."
MAX_VARIABLE = 1024  # Cloud API: characters in one template parameter


@dataclass(frozen=True)
class PickerTarget:
    """Which thread a picker sends to (kept in the modal's private_metadata)."""

    conversation_id: int
    channel: str
    thread_ts: str

    def dump(self) -> str:
        return json.dumps({"conversation_id": self.conversation_id, "channel": self.channel,
                           "thread_ts": self.thread_ts})

    @staticmethod
    def load(raw: object) -> PickerTarget | None:
        """The target kept in private_metadata; None when it is missing or not what this app wrote."""
        data = payloads.metadata(raw)
        conversation_id = payloads.as_id(data.get("conversation_id"))
        channel, thread_ts = data.get("channel"), data.get("thread_ts")
        if conversation_id is None or not isinstance(channel, str) or not isinstance(thread_ts, str):
            return None
        return PickerTarget(conversation_id, channel, thread_ts)


def var_block_id(ctype: str, name: str) -> str:
    return f"var:{ctype}:{name}"


def _plain(text: str) -> dict[str, Any]:
    return limits.plain(text, limits.PLACEHOLDER)


def _choosable(t: Template) -> template_choice.Choosable:
    return template_choice.Choosable(t.id, t.waba_id, t.name, t.language, t.category)


def picker_view(target: PickerTarget, who: str, has_templates: bool,
                selected: Template | None = None) -> dict[str, Any]:
    """The modal: a type-ahead template select (which re-renders with the chosen template's variables).

    Options come from the `options` listener as the user types, so every approved template can be
    chosen however many there are."""
    blocks: list[dict[str, Any]] = [limits.section(f"To *{render.escape(who)}*")]
    view: dict[str, Any] = {
        "type": "modal", "callback_id": PICKER_CALLBACK, "title": _plain("Send a template"),
        "close": _plain("Cancel"), "private_metadata": target.dump(), "blocks": blocks,
    }
    if not has_templates:
        blocks.append(limits.section("No approved templates for this number yet. Run `wabridge templates sync`, "
                                     "or create one in WhatsApp Manager."))
        return limits.fit_view(view)
    select_el: dict[str, Any] = {"type": "external_select", "action_id": TEMPLATE_SELECT, "min_query_length": 0,
                                 "placeholder": _plain("Type to search templates")}
    if selected is not None:
        select_el["initial_option"] = template_choice.option(_choosable(selected))
    blocks.append({"type": "input", "block_id": TEMPLATE_BLOCK, "dispatch_action": True,
                   "label": _plain("Template"), "element": select_el})
    view["submit"] = _plain("Send")
    if selected is not None:
        body = render.template_body(selected.components or [])
        if body:
            blocks.append(limits.context(render.escape(body)))
        for ctype, name in render.template_placeholders(selected.components or []):
            blocks.append({"type": "input", "block_id": var_block_id(ctype, name),
                           "label": _plain(f"{{{{{name}}}}} in the {ctype}"),
                           "element": {"type": "plain_text_input", "action_id": VALUE_ACTION,
                                       "max_length": MAX_VARIABLE}})
    return limits.fit_view(view)


async def approved_templates(deps: Deps, waba_id: str) -> list[Template]:
    """Approved templates of a WABA, by name."""
    async with deps.sessions() as s:
        rows = await s.scalars(select(Template).where(Template.waba_id == waba_id, Template.status == "APPROVED")
                               .order_by(Template.name, Template.language))
        return list(rows.all())


async def has_approved_templates(deps: Deps, waba_id: str) -> bool:
    """True when the WABA has at least one approved template."""
    async with deps.sessions() as s:
        found = await s.scalar(select(Template.id).where(Template.waba_id == waba_id,
                                                         Template.status == "APPROVED").limit(1))
    return found is not None


async def approved_template(deps: Deps, waba_id: str, template_id: str) -> Template | None:
    """One approved template of the WABA by id, or None."""
    if not template_id.isdigit():
        return None
    async with deps.sessions() as s:
        t = await s.get(Template, int(template_id))
    return t if t is not None and t.waba_id == waba_id and t.status == "APPROVED" else None


async def _contact_label(deps: Deps, thread: BridgedThread) -> str:
    async with deps.sessions() as s:
        contact = await s.get(Contact, thread.contact_id)
    if contact is None:
        return render.format_number(thread.wa_id)
    return render.ContactView(contact.wa_id, contact.address_book_name or contact.profile_name).label


async def open_picker(deps: Deps, client: Any, trigger_id: str, thread: BridgedThread, user: str) -> None:
    """Open the template picker for a thread; if Slack refuses, tell the user privately why."""
    target = PickerTarget(thread.conversation_id, thread.slack_channel, thread.thread_ts)
    try:
        view = picker_view(target, await _contact_label(deps, thread),
                           await has_approved_templates(deps, thread.channel.waba_id))
        await client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        error = slack_reason(exc)
        log.warning("template picker not opened: %s", error)
        await ephemeral(deps, thread, thread.slack_channel, user, picker_failure_text(error))


def picker_failure_text(error: str) -> str:
    """What the person who pressed "Send a template" is told when the picker could not open."""
    if error in ("expired_trigger_id", "exchanged_trigger_id", "invalid_trigger_id"):
        why = "Slack took too long to hand over the click. Press the button again"
    else:
        why = f"Slack refused to open it ({error}). Try again; if it keeps happening, tell your Wabridge admin"
    return f":warning: The template picker did not open: {why}."


async def thread_by_conversation(deps: Deps, conversation_id: int) -> BridgedThread | None:
    async with deps.sessions() as s:
        conv = await s.get(Conversation, conversation_id)
    if conv is None or not conv.slack_channel or not conv.slack_thread_ts:
        return None
    return await find_thread(deps, conv.slack_channel, conv.slack_thread_ts)


def _state_value(state: object, block_id: str, action_id: str) -> dict[str, Any]:
    """One input's state; {} when the submitted state has another shape."""
    block = state.get(block_id) if isinstance(state, dict) else None
    value = block.get(action_id) if isinstance(block, dict) else None
    return value if isinstance(value, dict) else {}


def validate_submission(state: dict[str, Any], template: Template | None, opted_out: bool
                        ) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Inline errors by block id, and the (component, placeholder, value) triples when there are none."""
    if template is None:
        return {TEMPLATE_BLOCK: "Pick a template."}, []
    if template.status != "APPROVED":
        return {TEMPLATE_BLOCK: f"{template.name} is {template.status or 'not approved'} now; pick another."}, []
    if opted_out and (template.category or "").upper() == "MARKETING":
        return {TEMPLATE_BLOCK: "This customer opted out of marketing messages; pick a utility template."}, []
    errors: dict[str, str] = {}
    values: list[tuple[str, str, str]] = []
    for ctype, name in render.template_placeholders(template.components or []):
        block_id = var_block_id(ctype, name)
        if block_id not in state:
            return {TEMPLATE_BLOCK: "Choose the template again to fill in its variables."}, []
        value = str(_state_value(state, block_id, VALUE_ACTION).get("value") or "").strip()
        if not value:
            errors[block_id] = f"Fill in {{{{{name}}}}}."
        elif len(value) > 1024:
            errors[block_id] = "At most 1,024 characters."
        values.append((ctype, name, value))
    return errors, values


async def send_template(deps: Deps, thread: BridgedThread, template: Template,
                        values: list[tuple[str, str, str]], user: str) -> SendResult:
    """Send a template to the thread's customer and mirror it into the thread as sent by user."""
    cfg = thread.channel
    await deps.throttle.acquire(cfg.phone_number_id, cfg.mps, Priority.INTERACTIVE, timeout=30.0)
    result = await deps.graph.send_template(cfg.phone_number_id, cfg.access_token, thread.wa_id, template.name,
                                            template.language, render.template_components(values))
    deps.metrics.whatsapp_sends.labels(cfg.name, "slack", "ok").inc()
    filled = {name: value for _, name, value in values}
    text = render.fill_template(render.template_body(template.components or []), filled) or template.name
    await record_sent(deps, thread, result, kind="template", text=text, user=user, slack_ts=None,
                      content={"template": {"name": template.name, "language": template.language,
                                            "values": filled}}, mirror=True)
    return result


def _failure_words(exc: BaseException) -> str:
    if isinstance(exc, GraphError):
        return f"WhatsApp refused it (Meta error {exc.code}): {explain(exc.code)}" if exc.code is not None \
            else "no answer from WhatsApp; check the thread before sending again"
    return "WhatsApp is busy on this number right now; try again in a moment"


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
    templates = [_choosable(t) for t in await approved_templates(deps, thread.channel.waba_id)]
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
    new_view = picker_view(target, await _contact_label(deps, thread), True, chosen)
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
    selected = _state_value(state, TEMPLATE_BLOCK, TEMPLATE_SELECT).get("selected_option")
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
        answer = {"response_action": "errors", "errors": {TEMPLATE_BLOCK: _failure_words(exc)[:300]}}
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
                        f":warning: Template {template.name} not sent: {_failure_words(exc)}")
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
    if msg.direction == "inbound":
        return customer
    if msg.source == "phone_app":
        return f"{channel} (phone app)"
    if msg.source == "slack":
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
    lines += [render.TranscriptLine(e.created_at, "inbox", audit_text(e.action, e.actor, e.assignee))
              for e in changes]
    lines.sort(key=lambda line: line.at)
    title = f"WhatsApp conversation with {who} on {thread.channel.name}"
    return render.transcript(title, lines, deps.settings.timezone), f"transcript-{thread.wa_id}.txt"
