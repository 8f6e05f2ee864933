"""The template picker: its modal (a type-ahead select that re-renders with the template's variables), the
checks of a submission, and the send; the listeners that drive it are in bot.handlers.slack_actions."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.bridge.reply_threads import BridgedThread
from bot.bridge.staff_replies import record_sent
from bot.deps import Deps
from bot.handlers.slack_messages import ephemeral
from bot.meta.errors import GraphError, explain
from bot.meta.graph import SendResult
from bot.slack import limits, payloads, render, template_choice
from bot.slack.errors import slack_reason
from scheduler.throttle import Priority
from storage.models import Contact, Template

log = logging.getLogger(__name__)

PICKER_CALLBACK = "wabridge_template_picker"
TEMPLATE_SELECT = "wabridge_template_choice"
VALUE_ACTION = "value"
TEMPLATE_BLOCK = "template"
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


def choosable(t: Template) -> template_choice.Choosable:
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
        select_el["initial_option"] = template_choice.option(choosable(selected))
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


async def contact_label(deps: Deps, thread: BridgedThread) -> str:
    async with deps.sessions() as s:
        contact = await s.get(Contact, thread.contact_id)
    if contact is None:
        return render.format_number(thread.wa_id)
    return render.ContactView(contact.wa_id, contact.address_book_name or contact.profile_name).label


async def open_picker(deps: Deps, client: Any, trigger_id: str, thread: BridgedThread, user: str) -> None:
    """Open the template picker for a thread; if Slack refuses, tell the user privately why."""
    target = PickerTarget(thread.conversation_id, thread.slack_channel, thread.thread_ts)
    try:
        view = picker_view(target, await contact_label(deps, thread),
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


def state_value(state: object, block_id: str, action_id: str) -> dict[str, Any]:
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
        value = str(state_value(state, block_id, VALUE_ACTION).get("value") or "").strip()
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


def failure_words(exc: BaseException) -> str:
    if isinstance(exc, GraphError):
        return f"WhatsApp refused it (Meta error {exc.code}): {explain(exc.code)}" if exc.code is not None \
            else "no answer from WhatsApp; check the thread before sending again"
    return "WhatsApp is busy on this number right now; try again in a moment"
