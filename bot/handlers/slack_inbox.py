"""The inbox buttons on a thread parent: "Take it", "Assign…", "Unassign", "Resolve" and "Reopen"; a ✅ on it
resolves too.

"Take it" takes only a conversation nobody owns: of two people taking it at once the second is told who holds
it (taking over is a deliberate Assign…). Each click names only a conversation id; it is looked up in the
request's workspace (another workspace's id is refused and logged there), the person must be allowed
(`slack.permissions.inbox`, channel members by default), and the change is applied once per click: a replayed
payload finds its audit row and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.bridge import csat
from bot.bridge import inbox as bridge_inbox
from bot.bridge.reply_threads import find_thread
from bot.core.workspace import request_scope
from bot.deps import Deps
from bot.handlers.slack_actions import refusal_for, thread_by_conversation
from bot.handlers.slack_messages import ephemeral
from bot.slack import once, payloads
from bot.slack.inbox_view import (
    ACTIONS_BLOCK,
    ASSIGN_ACTION,
    LABELS_ACTION,
    MORE_BLOCK,
    REOPEN_ACTION,
    RESOLVE_ACTION,
    SNOOZE_ACTION,
    SNOOZE_DATE_ACTION,
    TAKE_ACTION,
    UNASSIGN_ACTION,
    UNSNOOZE_ACTION,
    who,
)
from bot.slack.outbox import wake_outbox
from bot.slack.permissions import UNCHECKED, Action, MembershipUnknown, Permissions
from bot.slack.snooze import until_date, until_for
from storage.inbox import Change, InboxAction, Outcome, open_since, owner_of
from storage.models import as_utc, utcnow

log = logging.getLogger(__name__)

_UNCHANGED = {InboxAction.TAKE: "You already own this conversation.",
              InboxAction.ASSIGN: "That person already owns this conversation.",
              InboxAction.RESOLVE: "This conversation is already resolved.",
              InboxAction.REOPEN: "This conversation is open already.",
              InboxAction.UNASSIGN: "Nobody owns this conversation.",
              InboxAction.SNOOZE: "This conversation is resolved, or snoozed until then already.",
              InboxAction.WAKE: "This conversation is not snoozed.",
              InboxAction.LABEL: "Those are its labels already."}
NOT_LATER = "Pick a time in the future to snooze this conversation until."


# A ✅ on a thread parent resolves the conversation, as the "Resolve" button does.
RESOLVE_REACTIONS = frozenset({"white_check_mark", "heavy_check_mark"})


def register(bolt: AsyncApp, deps: Deps) -> None:
    permissions = Permissions(deps.settings.slack, deps.slack)
    bolt.action(TAKE_ACTION)(partial(on_inbox_action, deps, permissions, InboxAction.TAKE))
    bolt.action(ASSIGN_ACTION)(partial(on_inbox_action, deps, permissions, InboxAction.ASSIGN))
    bolt.action(UNASSIGN_ACTION)(partial(on_inbox_action, deps, permissions, InboxAction.UNASSIGN))
    bolt.action(SNOOZE_ACTION)(partial(on_inbox_action, deps, permissions, InboxAction.SNOOZE))
    bolt.action(SNOOZE_DATE_ACTION)(partial(on_inbox_action, deps, permissions, InboxAction.SNOOZE))
    bolt.action(UNSNOOZE_ACTION)(partial(on_inbox_action, deps, permissions, InboxAction.WAKE))
    bolt.action(LABELS_ACTION)(partial(on_inbox_action, deps, permissions, InboxAction.LABEL))
    bolt.action(RESOLVE_ACTION)(partial(on_inbox_action, deps, permissions, InboxAction.RESOLVE))
    bolt.action(REOPEN_ACTION)(partial(on_inbox_action, deps, permissions, InboxAction.REOPEN))
    bolt.event("reaction_added")(partial(on_reaction, deps, permissions))


async def on_reaction(deps: Deps, permissions: Permissions, body: dict[str, Any], event: dict[str, Any]) -> None:
    """A ✅ on a thread parent: resolve, once per event (Slack retries an event; its event_id stays)."""
    found = event.get("item")
    item: dict[str, Any] = found if isinstance(found, dict) else {}
    if event.get("reaction") not in RESOLVE_REACTIONS or item.get("type") != "message":
        return
    user = str(event.get("user") or "")
    scope = request_scope()
    thread = await find_thread(deps, str(item.get("channel") or ""), str(item.get("ts") or ""))
    if thread is None or scope is None or not user:
        return  # not a parent of a conversation this workspace owns (a reply, another thread, another workspace)
    no = await refusal_for(permissions, Action.INBOX, user, thread.slack_channel)
    if no is not None:
        await ephemeral(deps, thread, thread.slack_channel, user, no)
        return
    stamp = str(body.get("event_id") or event.get("event_ts") or "")
    key = once.action_key("inbox", "reaction", user, str(thread.conversation_id), stamp)
    await _apply(deps, Change(thread.conversation_id, scope.workspace, InboxAction.RESOLVE, user, utcnow(), key))


async def _apply(deps: Deps, change: Change) -> Outcome:
    """Apply a change from Slack in one transaction; count it (and a resolve's time open) when it changed."""
    async with deps.sessions() as s, s.begin():
        opened = await open_since(s, change.conversation_id) if change.action is InboxAction.RESOLVE else None
        outcome = await bridge_inbox.staff_change(s, change)
        if outcome is Outcome.DONE and change.action is InboxAction.RESOLVE:  # resolved: maybe ask the customer
            await csat.owe_survey(s, deps.settings, change.conversation_id, change.dedupe_key, change.actor,
                                  change.at)
    if outcome is Outcome.DONE:
        deps.metrics.inbox_changes.labels(change.action.value).inc()
        if opened is not None:
            deps.metrics.time_to_resolve.observe(max((change.at - as_utc(opened)).total_seconds(), 0.0))
        wake_outbox(deps)
    return outcome


def conversation_named(action: dict[str, Any]) -> int | None:
    """The conversation a button's value names, or a users_select's block id (`wabridge_inbox:<id>`)."""
    found = payloads.as_id(payloads.metadata(action.get("value")).get("conversation_id"))
    if found is not None:
        return found
    prefix, _, rest = str(action.get("block_id") or "").partition(":")
    return payloads.as_id(rest) if prefix in (ACTIONS_BLOCK, MORE_BLOCK) else None


def chosen_labels(action: dict[str, Any], configured: Sequence[str]) -> tuple[str, ...]:
    """The labels picked in the multi-select, among those configured (another value is dropped), sorted."""
    picked = {str(o.get("value") or "") for o in action.get("selected_options") or [] if isinstance(o, dict)}
    return tuple(sorted(picked & set(configured)))


def snooze_time(action: dict[str, Any], now: datetime, tz: str) -> datetime | None:
    """When the snooze picked (from the menu or the date picker) ends; None when none or not in the future."""
    if action.get("action_id") == SNOOZE_DATE_ACTION:
        return until_date(str(action.get("selected_date") or ""), now, tz)
    option = action.get("selected_option")
    return until_for(str(option.get("value") or ""), now, tz) if isinstance(option, dict) else None


async def on_inbox_action(deps: Deps, permissions: Permissions, kind: InboxAction, ack: Any,
                          body: dict[str, Any]) -> None:
    await ack()
    action = (body.get("actions") or [{}])[0]
    user = str((body.get("user") or {}).get("id") or "")
    scope = request_scope()
    conversation_id = conversation_named(action)
    thread = await thread_by_conversation(deps, conversation_id) if conversation_id is not None else None
    if thread is None or scope is None or not user:
        log.info("inbox %s by %s names no conversation of this workspace (%s): nothing done", kind.value,
                 user or "nobody", conversation_id)
        return
    no = await refusal_for(permissions, Action.INBOX, user, thread.slack_channel)
    assignee = str(action.get("selected_user") or "") if kind is InboxAction.ASSIGN else None
    if no is None and assignee is not None:
        no = await _assignee_refusal(permissions, assignee, thread.slack_channel)
    if no is not None:
        await ephemeral(deps, thread, thread.slack_channel, user, no)
        return
    stamp = str(action.get("action_ts") or body.get("trigger_id") or "")
    now = utcnow()
    until = snooze_time(action, now, deps.settings.timezone) if kind is InboxAction.SNOOZE else None
    if kind is InboxAction.SNOOZE and until is None:
        await ephemeral(deps, thread, thread.slack_channel, user, NOT_LATER)
        return
    labels = chosen_labels(action, deps.settings.inbox.labels) if kind is InboxAction.LABEL else None
    # The pick, not its time ("1 hour" from each delivery's now): a replay is the same change.
    picked = str(action.get("selected_date") or (action.get("selected_option") or {}).get("value") or "")
    if labels is not None:
        picked = ",".join(labels)
    key = once.action_key("inbox", kind.value, user, str(thread.conversation_id), stamp, assignee or "", picked)
    if kind is InboxAction.UNASSIGN:
        assignee = await _owner(deps, thread.conversation_id, scope.workspace)  # changed only while still theirs
    change = Change(thread.conversation_id, scope.workspace, kind, user, now, key, assignee,
                    unowned_only=kind is InboxAction.TAKE, until=until, labels=labels)
    outcome = await _apply(deps, change)
    if outcome is Outcome.UNCHANGED:
        await ephemeral(deps, thread, thread.slack_channel, user,
                        await _unchanged_text(deps, change) or _UNCHANGED[kind])
    elif outcome is Outcome.REPLAY:
        log.info("inbox %s by %s on conversation %s already handled", kind.value, user, thread.conversation_id)


async def _owner(deps: Deps, conversation_id: int, workspace: str) -> str | None:
    async with deps.sessions() as s:
        return await owner_of(s, conversation_id, workspace)


async def _unchanged_text(deps: Deps, change: Change) -> str | None:
    """Why a take or an unassign changed nothing when someone else holds the conversation (they got there first)."""
    if change.action not in (InboxAction.TAKE, InboxAction.UNASSIGN):
        return None
    holder = await _owner(deps, change.conversation_id, change.slack_team)
    if holder is None or (holder == change.actor and change.action is InboxAction.TAKE):
        return None
    if change.action is InboxAction.TAKE:
        return (f":raised_hand: {who(holder)} holds this conversation already. To take it over, pick yourself "
                "in Assign…")
    return f":raised_hand: {who(holder)} owns this conversation now; use Unassign again to let it go."


async def _assignee_refusal(permissions: Permissions, assignee: str, channel: str) -> str | None:
    """None when `assignee` may own a conversation here, else what the person assigning is told."""
    if not assignee:
        return "Pick someone to assign this conversation to."
    try:
        allowed = await permissions.allows(Action.INBOX, assignee, channel)
    except MembershipUnknown:
        return UNCHECKED
    return None if allowed else f":no_entry: <@{assignee}> is not a member of this channel, so cannot own this."
