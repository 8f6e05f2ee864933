"""Human messages in a bridged Slack thread: the listener parses the event, calls the staff-replies wing
(bot.bridge.staff_replies: dedupe, ledger, conversion, send, record) and answers the author.

Notes (a configured prefix such as `note:`) and every message in a `notes_only` channel stay in Slack.
Only the people `slack.permissions.reply_to_customers` allows reach the customer (by default the
workspace's members, not Slack Connect users or guests); anyone else is told why, privately. Outside the
24-hour window the author is offered the template picker. Bot posts, edits, joins, top-level messages and
threads the bridge did not create are ignored.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.bridge.reply_threads import BridgedThread, NumberGone, lookup_thread_being_recorded, number_gone_text
from bot.bridge.staff_replies import (
    Outcome,
    Reply,
    Sent,
    claim_event,
    note_in_thread,
    send_reply,
    store_note,
)
from bot.core.config import ThreadReplies
from bot.core.window import window_closes_at, window_open
from bot.deps import Deps
from bot.handlers.slack_collision import tell_if_others
from bot.slack import limits, render, reply_ledger
from bot.slack.errors import slack_reason
from bot.slack.reply_gate import ReplyGate
from storage.models import utcnow

log = logging.getLogger(__name__)

OPEN_PICKER_ACTION = "wabridge_open_template_picker"
_HANDLED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


async def ephemeral(deps: Deps, thread: BridgedThread | None, channel: str, user: str, text: str,
                    blocks: list[dict[str, Any]] | None = None, thread_ts: str | None = None) -> None:
    """Tell one person something in the thread, visible only to them (best effort)."""
    try:
        await deps.slack.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks,
                                            thread_ts=thread_ts or (thread.thread_ts if thread else None))
    except SlackApiError as exc:
        log.warning("could not tell %s in %s: %s", user, channel, slack_reason(exc))


async def react(deps: Deps, channel: str, ts: str, name: str) -> None:
    """Add a reaction to a message (best effort)."""
    try:
        await deps.slack.reactions_add(channel=channel, timestamp=ts, name=name)
    except SlackApiError as exc:
        if (reason := slack_reason(exc)) != "already_reacted":
            log.warning("reaction %s on %s failed: %s", name, ts, reason)


def window_closed_blocks(conversation_id: int, closes_at: datetime | None, tz: str) -> list[dict[str, Any]]:
    """The 'not sent' explanation with a button opening the template picker."""
    return [
        limits.section(render.window_closed_text(closes_at, tz)),
        {"type": "actions", "elements": [{
            "type": "button", "action_id": OPEN_PICKER_ACTION, "style": "primary",
            "text": {"type": "plain_text", "text": "Send a template"},
            "value": json.dumps({"conversation_id": conversation_id}),
        }]},
    ]


async def tell_window_closed(deps: Deps, thread: BridgedThread, user: str, closes_at: datetime | None) -> None:
    tz = deps.settings.timezone
    await ephemeral(deps, thread, thread.slack_channel, user, render.window_closed_text(closes_at, tz),
                    window_closed_blocks(thread.conversation_id, closes_at, tz))


async def answer(deps: Deps, thread: BridgedThread, user: str, ts: str | None, sent: Sent) -> None:
    """Tell the author how their reply went: privately, and with a reaction on their message when it failed."""
    if sent.outcome is Outcome.SENT:
        await tell_if_others(deps, thread.conversation_id, thread.slack_channel, thread.thread_ts, user)
    elif sent.outcome is Outcome.WINDOW_CLOSED:
        await tell_window_closed(deps, thread, user, window_closes_at(thread.last_customer_message_at))
    elif sent.outcome is Outcome.EMPTY:
        await ephemeral(deps, thread, thread.slack_channel, user,
                        f":information_source: Nothing was sent: {sent.reason}.")
    elif sent.outcome is Outcome.FAILED:
        if ts is not None:
            await react(deps, thread.slack_channel, ts, "warning")
        await ephemeral(deps, thread, thread.slack_channel, user,
                        f":warning: Not sent to the customer: {sent.reason}")


async def send_and_answer(deps: Deps, thread: BridgedThread, reply: Reply, user: str, key: str) -> Outcome:
    """Send a reply whose checks passed (window open, allowed), then tell its author how it went."""
    sent = await send_reply(deps, thread, reply, user, key)
    await answer(deps, thread, user, reply.slack_ts, sent)
    return sent.outcome


def reply_gate(deps: Deps) -> ReplyGate:
    """The gate for slack.permissions.reply_to_customers (one per app: it caches users.info a minute)."""
    return ReplyGate(deps.settings.slack.permissions.reply_to_customers, deps.slack)


async def handle_thread_message(deps: Deps, body: dict[str, Any], event: dict[str, Any],
                                gate: ReplyGate | None = None) -> Outcome:
    """Act on one `message` event; returns what happened (for logs and tests)."""
    if event.get("subtype") not in _HANDLED_SUBTYPES or event.get("bot_id") or event.get("bot_profile"):
        return Outcome.IGNORED
    ts, thread_ts = event.get("ts"), event.get("thread_ts")
    channel, user = event.get("channel"), event.get("user")
    if not ts or not thread_ts or thread_ts == ts or not channel or not user:
        return Outcome.IGNORED
    thread = await lookup_thread_being_recorded(deps, str(channel), str(thread_ts))
    if thread is None:
        return Outcome.IGNORED
    keys = [f"msg:{channel}:{ts}"]
    if body.get("event_id"):
        keys.append(str(body["event_id"]))
    if not await claim_event(deps, keys):
        log.info("Slack event %s for %s already handled", body.get("event_id"), ts)
        return Outcome.DUPLICATE
    text = str(event.get("text") or "")
    if render.is_note(text, deps.settings.slack.note_prefixes):
        await store_note(deps, thread, text, str(user), str(ts))
        await react(deps, str(channel), str(ts), render.NOTE_REACTION)
        return Outcome.NOTE
    if isinstance(thread, NumberGone):
        log.warning("reply %s in %s not sent: its number %s is no longer configured", ts, thread_ts, thread.number)
        await react(deps, str(channel), str(ts), render.NOT_SENT_REACTION)
        await note_in_thread(deps, thread, number_gone_text(thread), key=f"numbergone:{ts}")
        return Outcome.NUMBER_GONE
    if thread.channel.thread_replies is ThreadReplies.NOTES_ONLY:
        await store_note(deps, thread, text, str(user), str(ts))
        await react(deps, str(channel), str(ts), render.NOTE_REACTION)
        await ephemeral(deps, thread, str(channel), str(user),
                        ":lock: This channel mirrors WhatsApp only: your message was kept as an internal note "
                        "and was not sent to the customer.")
        return Outcome.NOTES_ONLY
    refusal = await (gate or reply_gate(deps)).refusal(body, event, thread.channel.slack_team)
    if refusal is not None:
        log.info("reply from %s in %s not sent: not allowed to reply to customers", user, thread.thread_ts)
        await react(deps, str(channel), str(ts), render.NOT_SENT_REACTION)
        await ephemeral(deps, thread, str(channel), str(user), f":no_entry: {refusal}")
        return Outcome.NOT_ALLOWED
    if not window_open(thread.last_customer_message_at, utcnow()):
        # Marked for everyone in the thread, so nobody takes the customer for answered.
        await react(deps, str(channel), str(ts), render.NOT_SENT_REACTION)
        await tell_window_closed(deps, thread, str(user), window_closes_at(thread.last_customer_message_at))
        return Outcome.WINDOW_CLOSED
    reply = Reply(text, [f for f in event.get("files") or [] if isinstance(f, dict)], str(ts))
    return await send_and_answer(deps, thread, reply, str(user), reply_ledger.reply_key(str(channel), str(ts)))


def register(bolt: AsyncApp, deps: Deps) -> None:
    """Listen to messages in bridged threads."""
    bolt.event("message")(partial(on_message, deps, reply_gate(deps)))


async def on_message(deps: Deps, gate: ReplyGate, body: dict[str, Any], event: dict[str, Any]) -> None:
    outcome = await handle_thread_message(deps, body, event, gate)
    if outcome is not Outcome.IGNORED:
        log.info("Slack message %s in %s: %s", event.get("ts"), event.get("channel"), outcome.value)
