"""The customer's data from a thread, for campaign managers only (docs/privacy.md).

- "Export customer data": everything stored about the thread's customer, as JSON and HTML in a DM.
- "Erase customer data": a confirmation dialog, then the erasure (bot/ops/privacy.py) in the background;
  the outcome, with what Slack refused, arrives as a DM.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.bridge.reply_threads import BridgedThread, find_thread
from bot.core.config import ConfigError
from bot.core.workspace import in_scope, workspace_key
from bot.deps import Deps
from bot.handlers.slack_actions import outsider_refusal
from bot.handlers.slack_messages import ephemeral, reply_gate
from bot.handlers.slack_once import first_delivery
from bot.meta.recipients import GROUP_PREFIX
from bot.ops.privacy import PersonNotFound, export_person, forget, one_client
from bot.ops.privacy_export import filename, render_html, render_json
from bot.slack import limits, once, payloads, render
from bot.slack.errors import slack_reason
from bot.slack.permissions import UNCHECKED, MembershipUnknown, Permissions
from bot.slack.reply_gate import ReplyGate
from storage import erasure
from storage.models import Contact, Conversation

log = logging.getLogger(__name__)

SHORTCUT_EXPORT_CUSTOMER = "wabridge_export_customer"
SHORTCUT_FORGET_CUSTOMER = "wabridge_forget_customer"
FORGET_CONFIRM = "wabridge_forget_confirm"
MANAGERS_ONLY = ":no_entry: Only campaign managers may export or erase a customer's data."
GROUP_THREAD = ("This is a WhatsApp group's thread, not one customer's: export or erase a participant with "
                "`wabridge contact export|forget <number | user id | username>`.")


@dataclass
class _PrivacyListeners:
    """What the listeners below share within one app."""

    deps: Deps
    permissions: Permissions
    gate: ReplyGate  # its users.info: a Slack Connect user is never given a customer's data
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def register(bolt: AsyncApp, deps: Deps) -> None:
    """The two message shortcuts and the erasure's confirmation."""
    app = _PrivacyListeners(deps, Permissions(deps.settings.slack, deps.slack), reply_gate(deps))
    bolt.shortcut(SHORTCUT_EXPORT_CUSTOMER)(partial(export_customer, app))
    bolt.shortcut(SHORTCUT_FORGET_CUSTOMER)(partial(ask_to_forget, app))
    bolt.view(FORGET_CONFIRM)(partial(confirmed_forget, app))


def _team(deps: Deps, body: dict[str, Any]) -> str | None:
    """The caller's workspace with many workspaces (bot.core.workspace); None while one workspace is served."""
    if not deps.settings.slack.many_workspaces:
        return None
    return workspace_key(str((body.get("team") or {}).get("id") or "") or None,
                         str((body.get("enterprise") or {}).get("id") or "") or None,
                         bool(body.get("is_enterprise_install")))


async def _scope(deps: Deps, body: dict[str, Any]) -> list[int] | None:
    """The numbers a request covers: those of the caller's workspace (every number with one workspace)."""
    team = _team(deps, body)
    if team is None:
        return None
    async with deps.sessions() as s:
        return await erasure.workspace_channels(s, team)


async def _manager_thread(app: _PrivacyListeners, body: dict[str, Any], context: Any
                          ) -> tuple[BridgedThread, str] | None:
    """The thread the shortcut was used on and its user, when that user is a campaign manager of this
    workspace (else told)."""
    deps = app.deps
    channel = str((body.get("channel") or {}).get("id") or "")
    message = body.get("message") or {}
    thread_ts = message.get("thread_ts") or message.get("ts")
    user = str((body.get("user") or {}).get("id") or "")
    thread = await find_thread(deps, channel, str(thread_ts)) if thread_ts else None
    if thread is None:
        await ephemeral(deps, None, channel, user, "That message is not in a WhatsApp conversation thread.")
        return None
    refusal = await _refusal(app, body, context, thread.channel.slack_team)
    if refusal is not None:
        await ephemeral(deps, thread, channel, user, refusal)
        return None
    if thread.wa_id.startswith(GROUP_PREFIX):  # a group is not one person: its participants are erased by id
        await ephemeral(deps, thread, channel, user, GROUP_THREAD)
        return None
    return thread, user


async def _refusal(app: _PrivacyListeners, body: dict[str, Any], context: Any, slack_team: str) -> str | None:
    """None for a campaign manager who is a member of this workspace, else what the person is told (also when
    Slack did not say in time). A Slack Connect user is refused even when listed as a manager."""
    user = str((body.get("user") or {}).get("id") or "")
    try:
        if not user or not await app.permissions.is_manager(user):
            return MANAGERS_ONLY
    except MembershipUnknown:
        return UNCHECKED
    outsider = await outsider_refusal(app.gate, body, context, slack_team)
    if outsider is not None:
        log.info("customer data request by %s refused: not a member of workspace %s", user, slack_team)
    return outsider


async def _dm(client: AsyncWebClient, user: str, text: str, files: list[dict[str, Any]] | None = None) -> None:
    """Tell user something in a direct message, with files when given (best effort: a failure is logged)."""
    try:
        opened = await client.conversations_open(users=user)
        dm = str((opened.get("channel") or {}).get("id"))
        if files:
            await client.files_upload_v2(channel=dm, initial_comment=text, file_uploads=files)
        else:
            await client.chat_postMessage(channel=dm, text=text)
    except SlackApiError as exc:
        log.warning("privacy DM to %s failed: %s", user, slack_reason(exc))


async def export_customer(app: _PrivacyListeners, ack: Any, body: dict[str, Any], client: AsyncWebClient,
                          context: Any = None) -> None:
    deps = app.deps
    await ack()
    acted = await _manager_thread(app, body, context)
    if acted is None:
        return
    thread, user = acted
    if not await first_delivery(deps, "export_customer", body, thread, user):
        return
    try:
        doc = await export_person(deps.sessions, deps.settings, thread.wa_id, channel_ids=await _scope(deps, body),
                                  exported_by=user)
    except PersonNotFound as exc:
        await ephemeral(deps, thread, thread.slack_channel, user, f"Nothing to export: {exc}.")
        return
    files = [{"content": body_.encode(), "filename": filename(doc, ext), "title": filename(doc, ext)}
             for ext, body_ in (("json", render_json(doc)), ("html", render_html(doc)))]
    await _dm(client, user, f"Everything stored about this customer: {len(doc['messages'])} messages in "
                          f"{len(doc['conversations'])} conversations.", files)


def confirm_view(conversation_id: int, who: str) -> dict[str, Any]:
    """The confirmation dialog: what goes, what stays, and that it cannot be undone."""
    return limits.fit_view({
        "type": "modal", "callback_id": FORGET_CONFIRM,
        "title": limits.plain("Erase customer data", limits.PLACEHOLDER),
        "submit": limits.plain("Erase", limits.PLACEHOLDER), "close": limits.plain("Cancel", limits.PLACEHOLDER),
        "private_metadata": json.dumps({"conversation_id": conversation_id}),
        "blocks": [limits.section(
            f"Erase everything Wabridge holds about *{render.escape(who)}*? Their messages, media, ids, campaign "
            "audience rows and history imports are deleted, and their Slack thread is redacted. An audit record "
            "without personal data is kept, and they get no marketing campaign until they write START. "
            "*This cannot be undone.*")],
    })


async def ask_to_forget(app: _PrivacyListeners, ack: Any, body: dict[str, Any], client: Any,
                        context: Any = None) -> None:
    deps = app.deps
    await ack()
    acted = await _manager_thread(app, body, context)
    if acted is None:
        return
    thread, user = acted
    async with deps.sessions() as s:
        contact = await s.get(Contact, thread.contact_id)
    who = render.ContactView(thread.wa_id, (contact.address_book_name or contact.profile_name)
                             if contact else None).label
    try:
        await client.views_open(trigger_id=body.get("trigger_id"), view=confirm_view(thread.conversation_id, who))
    except SlackApiError as exc:
        await ephemeral(deps, thread, thread.slack_channel, user,
                        f":warning: The confirmation did not open ({slack_reason(exc)}); try again.")


async def confirmed_forget(app: _PrivacyListeners, ack: Any, body: dict[str, Any], view: dict[str, Any],
                           client: AsyncWebClient, context: Any = None) -> None:
    deps = app.deps
    user = str((body.get("user") or {}).get("id") or "")
    conversation_id = payloads.as_id(payloads.metadata(view.get("private_metadata")).get("conversation_id"))
    await ack()
    if conversation_id is None or not user:
        return
    async with deps.sessions() as s:
        conv = await s.get(Conversation, conversation_id)
        contact = await s.get(Contact, conv.contact_id) if conv is not None else None
    if conv is not None and not in_scope(conv.slack_team, f"conversation {conversation_id}"):
        return  # another workspace's customer: refused (and logged), nothing erased, nothing said
    refusal = await _refusal(app, body, context, conv.slack_team if conv is not None else "")
    if refusal is not None:
        await _dm(client, user, refusal)
        return
    if await once.claim(deps.sessions, once.action_key("forget", user, str(view.get("id") or ""))) is not None:
        return  # Slack delivered the submission again: the first one is at work
    if contact is None:
        await _dm(client, user, "Nothing to erase: this customer's data is already gone.")
        return
    task = asyncio.create_task(_forget(deps, client, _team(deps, body), user, contact.wa_id,
                                       await _scope(deps, body)))
    app.tasks.add(task)
    task.add_done_callback(app.tasks.discard)


async def _forget(deps: Deps, client: AsyncWebClient, team: str | None, user: str, wa_id: str,
                  scope: list[int] | None) -> None:
    """Erase with the caller's workspace client (its token redacts the threads) and tell them how it went."""
    try:
        outcome = await forget(deps.sessions, deps.settings, one_client(client, team), wa_id, requested_by=user,
                               channel_ids=scope, pacer=deps.pacer)
    except PersonNotFound:
        await _dm(client, user, "Nothing to erase: this customer's data is already gone.")
    except ConfigError as exc:
        await _dm(client, user, f":warning: Not erased: {exc.key}: {exc.message} (ask your Wabridge admin).")
    except Exception:
        log.exception("erasure requested by %s stopped; the retention pass carries it on", user)
        await _dm(client, user, ":warning: The erasure stopped (see the server's log). What it had begun is "
                              "carried on by the next retention pass; otherwise use the shortcut again.")
    else:
        await _dm(client, user, outcome.summary())
