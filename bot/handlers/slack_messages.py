"""Human messages in a bridged Slack thread: sent to the customer inside the 24-hour window, else explained.

Notes (a configured prefix such as `note:`) and every message in a `notes_only` channel stay in Slack.
Only the people `slack.permissions.reply_to_customers` allows reach the customer (by default the
workspace's members, not Slack Connect users or guests); anyone else is told why, privately.
Bot posts, edits, joins, top-level messages and threads the bridge did not create are ignored. Slack's
retries of one event (same event_id, or the same message again) act once: the first delivery claims the
event in `slack_events` before anything is sent.

One reply's path (thread lookup, event claim, gate, window, conversion, send, record, and the
private explanation when it fails) shares the thread it found and what it recorded at each step.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.bridge import inbox
from bot.bridge.media import FileOffSlack, FileRefused, send_slack_file
from bot.bridge.throughput import after_send_error
from bot.core.config import ChannelSettings, ThreadReplies
from bot.core.origin import Direction, Source
from bot.core.window import window_closes_at, window_open
from bot.core.workspace import in_scope
from bot.deps import Deps
from bot.handlers.slack_collision import tell_if_others
from bot.meta.errors import GraphError, SendAction, explain
from bot.meta.graph import SendResult
from bot.slack import limits, render, reply_ledger
from bot.slack.errors import slack_reason
from bot.slack.names import resolve_names
from bot.slack.outbox import wake_outbox
from bot.slack.reply_gate import ReplyGate
from bot.slack.reply_parts import CAPTIONED_KINDS, caption_and_rest, split_message
from bot.slack.to_whatsapp import NO_NAMES, Converted, references, to_whatsapp
from scheduler.throttle import Priority, ThrottleUnavailable
from storage import repository as repo
from storage.models import Channel, Contact, Conversation, SlackEvent, utcnow
from storage.outbox_kinds import MessagePost, Note, enqueue
from storage.upsert import insert_ignore

log = logging.getLogger(__name__)

OPEN_PICKER_ACTION = "wabridge_open_template_picker"
INTERACTIVE_SEND_TIMEOUT = 30.0  # seconds a staff reply may wait for the number's throttle
_HANDLED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


class Outcome(StrEnum):
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    NOTE = "note"
    NOTES_ONLY = "notes_only"
    WINDOW_CLOSED = "window_closed"
    NOT_ALLOWED = "not_allowed"
    SENT = "sent"
    FAILED = "failed"
    EMPTY = "empty"
    NUMBER_GONE = "number_gone"


@dataclass(frozen=True)
class BridgedThread:
    """A Slack thread the bridge owns: its conversation, customer and WhatsApp channel."""

    conversation_id: int
    wa_id: str
    contact_id: int
    last_customer_message_at: datetime | None
    channel: ChannelSettings
    slack_channel: str
    thread_ts: str


@dataclass(frozen=True)
class NumberGone:
    """A thread the bridge made for a number that is no longer configured: nothing can be sent from it."""

    conversation_id: int
    slack_channel: str
    thread_ts: str
    number: str  # the old number as people know it: its name and display number


async def lookup_thread(deps: Deps, slack_channel: str, thread_ts: str) -> BridgedThread | NumberGone | None:
    """The conversation mirrored into this Slack thread, if the bridge made it, with the number it was made for.

    The thread's own number decides, never the Slack channel's: a number moved to another channel (or
    replaced by another on this one) keeps answering its old threads, and a number no longer configured
    sends nothing."""
    async with deps.sessions() as s:
        row = (await s.execute(
            select(Conversation, Contact, Channel).join(Contact, Contact.id == Conversation.contact_id)
            .join(Channel, Channel.id == Conversation.channel_id)
            .where(Conversation.slack_channel == slack_channel, Conversation.slack_thread_ts == thread_ts)
        )).first()
    if row is None:
        return None
    conv, contact, number = row
    if not in_scope(conv.slack_team, f"the thread {slack_channel}/{thread_ts}"):
        return None
    cfg = deps.settings.channel_by_phone_number_id(number.phone_number_id)
    if cfg is None:
        shown = " ".join(p for p in (number.name, f"({number.display_phone_number})"
                                     if number.display_phone_number else "") if p)
        return NumberGone(conv.id, slack_channel, thread_ts, shown or number.phone_number_id)
    return BridgedThread(conv.id, contact.wa_id, contact.id, conv.last_customer_message_at, cfg, slack_channel,
                         thread_ts)


async def find_thread(deps: Deps, slack_channel: str, thread_ts: str) -> BridgedThread | None:
    """The bridged thread replies can be sent from; None for other threads and those of a number gone."""
    found = await lookup_thread(deps, slack_channel, thread_ts)
    return found if isinstance(found, BridgedThread) else None


def number_gone_text(gone: NumberGone) -> str:
    """What the thread says when someone answers in it after its number was removed from the config."""
    return (f"Not sent: this conversation belongs to the WhatsApp number {render.escape(gone.number)}, which is "
            "no longer configured in Wabridge, so nothing goes to the customer from this thread. Ask your "
            "Wabridge admin to add the number back to reply from it.")


async def claim_event(deps: Deps, keys: list[str]) -> bool:
    """Record that these deliveries are being handled; False when any was handled before."""
    async with deps.sessions() as s, s.begin():
        fresh = True
        for key in keys:
            if await insert_ignore(s, SlackEvent, {"event_id": key[:64], "received_at": utcnow()},
                                   ["event_id"]) is None:
                fresh = False
        return fresh


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


async def store_note(deps: Deps, thread: BridgedThread | NumberGone, text: str, user: str, ts: str) -> None:
    """Keep an internal note (never sent) with its author."""
    async with deps.sessions() as s, s.begin():
        await repo.insert_message(s, {
            "wamid": None, "conversation_id": thread.conversation_id, "direction": Direction.OUTBOUND,
            "source": Source.SLACK, "type": "note", "text": text, "slack_user": user, "slack_ts": ts,
            "is_note": True, "wa_timestamp": utcnow(),
        })


async def record_sent(deps: Deps, thread: BridgedThread, result: SendResult, *, kind: str, text: str | None,
                      user: str, slack_ts: str | None, media_id: str | None = None,
                      media_mime: str | None = None, content: dict[str, Any] | None = None,
                      mirror: bool = False) -> int | None:
    """Store a message sent from Slack, fold in statuses Meta already reported, and owe Slack what shows."""
    async with deps.sessions() as s, s.begin():
        now = utcnow()
        message_id = await repo.insert_message(s, {
            "wamid": result.wamid, "conversation_id": thread.conversation_id,
            "direction": Direction.OUTBOUND, "source": Source.SLACK, "type": kind, "text": text,
            "media_id": media_id, "media_mime": media_mime, "content": content or {}, "slack_user": user,
            "slack_ts": slack_ts, "wa_timestamp": now,
        })
        if message_id is None:
            return None
        owned = await inbox.answered_from_slack(s, deps.settings.inbox.auto_assign, thread.conversation_id, user, now)
        # Statuses can arrive before the send call returns; they waited in message_statuses.
        applied = await repo.apply_statuses(s, result.wamid)
        if mirror:
            await enqueue(s, MessagePost(message_id, thread.conversation_id), dedupe_key=f"msg:{message_id}",
                          order_ts=now)
        else:
            # One item per status, as for any message stored after its statuses: an item for the last one
            # alone would take the earlier ticks as shown by items that never existed.
            await repo.owe_status_posts(s, result.wamid, applied)
    if mirror or applied or owned:
        wake_outbox(deps)
    return message_id


async def note_in_thread(deps: Deps, thread: BridgedThread | NumberGone, mrkdwn: str, *, key: str) -> None:
    """Queue a line from the bridge into the thread (once per key), for everyone in the channel to see."""
    async with deps.sessions() as s, s.begin():
        await enqueue(s, Note(thread.conversation_id, f":warning: {mrkdwn}", mrkdwn=True),
                      dedupe_key=f"{key}:{thread.conversation_id}")
    wake_outbox(deps)


def _count(deps: Deps, channel: ChannelSettings, outcome: str) -> None:
    deps.metrics.whatsapp_sends.labels(channel.name, Source.SLACK, outcome).inc()


async def _explain_failure(deps: Deps, thread: BridgedThread, user: str, ts: str | None, exc: Exception) -> Outcome:
    if isinstance(exc, GraphError) and exc.action is SendAction.WINDOW_CLOSED:
        await tell_window_closed(deps, thread, user, window_closes_at(thread.last_customer_message_at))
        return Outcome.WINDOW_CLOSED
    if isinstance(exc, GraphError):
        what = f"Meta error {exc.code}: {explain(exc.code)}" if exc.code is not None else explain(None)
        if exc.code is None:
            what = ("no answer from WhatsApp; it may or may not have been sent (check the statuses)"
                    if exc.maybe_delivered or exc.http_status is not None
                    else "WhatsApp could not be reached; nothing was sent, try again in a moment")
    elif isinstance(exc, FileOffSlack):
        what = str(exc)
        await note_in_thread(deps, thread, f"A file shared by <@{user}> was not sent to the customer: its link "
                             "leaves Slack, and the bridge only downloads files from Slack.", key=f"offslack:{ts}")
    elif isinstance(exc, FileRefused):
        what = str(exc)
    else:
        what = "WhatsApp is busy on this number right now; try again in a moment"
    if ts is not None:
        await react(deps, thread.slack_channel, ts, "warning")
    await ephemeral(deps, thread, thread.slack_channel, user, f":warning: Not sent to the customer: {what}")
    return Outcome.FAILED


async def whatsapp_text(deps: Deps, slack_text: str) -> Converted:
    """What the customer reads for a Slack message: markup converted, mentioned ids named through Slack."""
    refs = references(slack_text)
    names = await resolve_names(deps.slack, deps.slack_names, refs) if refs else NO_NAMES
    return to_whatsapp(slack_text, names)


@dataclass(frozen=True)
class Reply:
    """A staff reply: its Slack text, files, and Slack message (None when made in a modal: the thread gets a copy)."""

    text: str
    files: list[dict[str, Any]]
    slack_ts: str | None
    content: dict[str, Any] | None = None  # kept with each message sent (e.g. which saved reply)


async def _send(deps: Deps, thread: BridgedThread, reply: Reply, user: str) -> Outcome:
    cfg, ts = thread.channel, reply.slack_ts
    converted = await whatsapp_text(deps, reply.text)
    body, files = converted.text, reply.files
    if not body and not files:
        await ephemeral(deps, thread, thread.slack_channel, user,
                        ":information_source: Nothing was sent: without the @here / @channel there is no text "
                        "for the customer.")
        return Outcome.EMPTY
    # The thread shows what the customer received whenever it is not what Slack shows its author.
    show = converted.differs or ts is None
    try:
        for i, file in enumerate(files):
            await deps.throttle.acquire(cfg.phone_number_id, cfg.mps, Priority.INTERACTIVE,
                                        timeout=INTERACTIVE_SEND_TIMEOUT)
            caption, rest = caption_and_rest(body) if i == 0 and body else ("", body)
            result, verdict = await send_slack_file(deps, cfg, thread.wa_id, file, caption or None)
            _count(deps, cfg, "ok")
            captioned = bool(caption) and verdict.kind in CAPTIONED_KINDS
            if captioned:
                body = rest
                show = show or bool(rest)
            content: dict[str, Any] = {**(reply.content or {}),
                                       "slack_file": {"id": file.get("id"), "name": file.get("name")}}
            if captioned:
                content["media"] = {"caption": caption, "filename": file.get("name")}
            await record_sent(deps, thread, result, kind=verdict.kind or "document",
                              text=caption if captioned else None, user=user, slack_ts=ts,
                              media_mime=verdict.mime_type, content=content, mirror=show)
        parts = split_message(body)
        show = show or len(parts) > 1
        for chunk in parts:
            await deps.throttle.acquire(cfg.phone_number_id, cfg.mps, Priority.INTERACTIVE,
                                        timeout=INTERACTIVE_SEND_TIMEOUT)
            result = await deps.graph.send_text(cfg.phone_number_id, cfg.access_token, thread.wa_id, chunk)
            _count(deps, cfg, "ok")
            await record_sent(deps, thread, result, kind="text", text=chunk, user=user, slack_ts=ts,
                              content=reply.content, mirror=show)
    except (GraphError, FileRefused, ThrottleUnavailable, TimeoutError) as exc:
        _count(deps, cfg, "error")
        if isinstance(exc, GraphError):
            await after_send_error(deps, cfg, exc)
        log.info("reply from %s in %s not sent: %s", user, thread.thread_ts, exc)
        return await _explain_failure(deps, thread, user, ts, exc)
    return Outcome.SENT


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
    thread = await lookup_thread(deps, str(channel), str(thread_ts))
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
    return await send_reply(deps, thread, reply, str(user), reply_ledger.reply_key(str(channel), str(ts)))


async def send_reply(deps: Deps, thread: BridgedThread, reply: Reply, user: str, key: str) -> Outcome:
    """Send a reply whose checks passed (window open, allowed): the one path every staff reply takes."""
    # On record before the send and done only after it is stored: a stop in between is found and told.
    await reply_ledger.begin(deps.sessions, key, conversation_id=thread.conversation_id, user=user,
                             ts=reply.slack_ts or "")
    try:
        outcome = await _send(deps, thread, reply, user)
    except Exception:
        # A fault of ours: closed on record here (the sweep would call it a stop), and raised on so the
        # listeners' error handler logs it with its traceback and tells the author in the thread.
        await reply_ledger.finish(deps.sessions, key, "error")
        raise
    await reply_ledger.finish(deps.sessions, key, outcome.value)
    if outcome is Outcome.SENT:
        await tell_if_others(deps, thread.conversation_id, thread.slack_channel, thread.thread_ts, user)
    return outcome


def register(bolt: AsyncApp, deps: Deps) -> None:
    """Listen to messages in bridged threads."""
    bolt.event("message")(partial(on_message, deps, reply_gate(deps)))


async def on_message(deps: Deps, gate: ReplyGate, body: dict[str, Any], event: dict[str, Any]) -> None:
    outcome = await handle_thread_message(deps, body, event, gate)
    if outcome is not Outcome.IGNORED:
        log.info("Slack message %s in %s: %s", event.get("ts"), event.get("channel"), outcome.value)
