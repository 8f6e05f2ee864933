"""The staff-replies wing: what happens to a reply from Slack once its listener has parsed it.

- dedupe: Slack's retries of one event act once (`claim_event`, before anything is sent);
- ledger: a reply is on record before its send and done after it is stored, so a stop in between is found and
  told (bot.slack.reply_ledger);
- conversion: Slack markup as the customer reads it, mentioned ids named through Slack;
- send: files, then the text in 4,096-character parts, each at the number's throttle (INTERACTIVE priority);
- record: each message stored with its author, statuses Meta already reported folded in, the thread owed what
  shows (a copy when the customer reads something other than what Slack shows), the inbox told who answered.

It answers nobody: the listeners (bot/handlers/slack_messages.py, slack_saved_replies.py) tell the author what
the `Sent` it returns says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.bridge import inbox
from bot.bridge.media import FileOffSlack, FileRefused, send_slack_file
from bot.bridge.reply_threads import BridgedThread, NumberGone
from bot.bridge.throughput import after_send_error
from bot.core.config import ChannelSettings
from bot.core.origin import Direction, Source
from bot.deps import Deps
from bot.meta.errors import GraphError, SendAction, explain
from bot.meta.graph import SendResult
from bot.slack import reply_ledger
from bot.slack.names import resolve_names
from bot.slack.outbox import wake_outbox
from bot.slack.reply_parts import CAPTIONED_KINDS, caption_and_rest, split_message
from bot.slack.to_whatsapp import NO_NAMES, Converted, references, to_whatsapp
from scheduler.throttle import Priority, ThrottleUnavailable
from storage import repository as repo
from storage.models import SlackEvent, utcnow
from storage.outbox_kinds import MessagePost, Note, enqueue
from storage.upsert import insert_ignore

log = logging.getLogger(__name__)

INTERACTIVE_SEND_TIMEOUT = 30.0  # seconds a staff reply may wait for the number's throttle


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
class Sent:
    """How a reply went: its outcome and, when it was not sent, why (for the author)."""

    outcome: Outcome
    reason: str | None = None


@dataclass(frozen=True)
class Reply:
    """A staff reply: its Slack text, files, and Slack message (None when made in a modal: the thread gets a copy)."""

    text: str
    files: list[dict[str, Any]]
    slack_ts: str | None
    content: dict[str, Any] | None = None  # kept with each message sent (e.g. which saved reply)


async def claim_event(deps: Deps, keys: list[str]) -> bool:
    """Record that these deliveries are being handled; False when any was handled before."""
    async with deps.sessions() as s, s.begin():
        fresh = True
        for key in keys:
            if await insert_ignore(s, SlackEvent, {"event_id": key[:64], "received_at": utcnow()},
                                   ["event_id"]) is None:
                fresh = False
        return fresh


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


async def whatsapp_text(deps: Deps, slack_text: str) -> Converted:
    """What the customer reads for a Slack message: markup converted, mentioned ids named through Slack."""
    refs = references(slack_text)
    names = await resolve_names(deps.slack, deps.slack_names, refs) if refs else NO_NAMES
    return to_whatsapp(slack_text, names)


async def _failure(deps: Deps, thread: BridgedThread, user: str, ts: str | None, exc: Exception) -> Sent:
    """Why a reply did not go out, in the author's words; a file whose link leaves Slack is noted in the thread."""
    if isinstance(exc, GraphError) and exc.action is SendAction.WINDOW_CLOSED:
        return Sent(Outcome.WINDOW_CLOSED)
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
    return Sent(Outcome.FAILED, what)


async def _send(deps: Deps, thread: BridgedThread, reply: Reply, user: str) -> Sent:
    cfg, ts = thread.channel, reply.slack_ts
    converted = await whatsapp_text(deps, reply.text)
    body, files = converted.text, reply.files
    if not body and not files:
        return Sent(Outcome.EMPTY, "without the @here / @channel there is no text for the customer")
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
        return await _failure(deps, thread, user, ts, exc)
    return Sent(Outcome.SENT)


async def send_reply(deps: Deps, thread: BridgedThread, reply: Reply, user: str, key: str) -> Sent:
    """Send a reply whose checks passed (window open, allowed): the one path every staff reply takes."""
    # On record before the send and done only after it is stored: a stop in between is found and told.
    await reply_ledger.begin(deps.sessions, key, conversation_id=thread.conversation_id, user=user,
                             ts=reply.slack_ts or "")
    try:
        sent = await _send(deps, thread, reply, user)
    except Exception:
        # A fault of ours: closed on record here (the sweep would call it a stop), and raised on so the
        # listeners' error handler logs it with its traceback and tells the author in the thread.
        await reply_ledger.finish(deps.sessions, key, "error")
        raise
    await reply_ledger.finish(deps.sessions, key, sent.outcome.value)
    return sent


__all__ = ["INTERACTIVE_SEND_TIMEOUT", "Outcome", "Reply", "Sent", "claim_event", "note_in_thread", "record_sent",
           "send_reply", "store_note", "whatsapp_text"]
