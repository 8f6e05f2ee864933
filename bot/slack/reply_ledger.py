"""A reply typed in Slack is on record from before its send until after the send is stored.

The Slack event is acknowledged (and deduplicated in `slack_events`) before the reply goes to WhatsApp, so a
crash in between would lose the reply silently: Slack does not deliver an acknowledged event again. Here the
reply is written to `slack_actions` as `sending` before the Graph call and marked done only after the
messages are stored; a sweep finds replies left `sending` by a stopped process and says so in their thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.origin import Source
from bot.deps import Deps
from bot.slack.outbox import wake_outbox
from storage.models import Message, SlackAction, utcnow
from storage.outbox_kinds import Note, enqueue
from storage.upsert import insert_ignore

log = logging.getLogger(__name__)

PREFIX = "reply:"
SENDING = "sending"
SWEEP_AFTER = timedelta(minutes=2)  # far longer than a reply takes, even behind a throttled number
LOOK_BACK = timedelta(days=7)


@dataclass(frozen=True)
class PendingReply:
    key: str
    conversation_id: int
    user: str
    ts: str  # the Slack message that is the reply; empty for one made in a modal (a saved reply)
    since: datetime | None = None  # when it was put on record


def reply_key(channel: str, ts: str) -> str:
    return f"{PREFIX}{channel}:{ts}"[:64]


async def begin(sessions: async_sessionmaker[AsyncSession], key: str, *, conversation_id: int, user: str,
                ts: str) -> None:
    """Put the reply on record as being sent (committed before the Graph call)."""
    async with sessions() as s, s.begin():
        await insert_ignore(s, SlackAction, {"key": key, "created_at": utcnow(), "outcome": {
            "state": SENDING, "conversation_id": conversation_id, "user": user, "ts": ts}}, ["key"])


async def finish(sessions: async_sessionmaker[AsyncSession], key: str, outcome: str) -> None:
    """Mark the reply done (after its messages, if any, are stored)."""
    async with sessions() as s, s.begin():
        await s.execute(update(SlackAction).where(SlackAction.key == key)
                        .values(outcome={"state": "done", "outcome": outcome}))


async def interrupted(sessions: async_sessionmaker[AsyncSession], older_than: timedelta) -> list[PendingReply]:
    """Replies still `sending` after older_than: the process sending them stopped."""
    now = utcnow()
    async with sessions() as s:
        rows = (await s.scalars(select(SlackAction).where(
            SlackAction.key.startswith(PREFIX), SlackAction.created_at <= now - older_than,
            SlackAction.created_at >= now - LOOK_BACK))).all()
    found = []
    for row in rows:
        o: dict[str, Any] = row.outcome or {}
        if o.get("state") == SENDING:
            found.append(PendingReply(row.key, int(o.get("conversation_id") or 0), str(o.get("user") or ""),
                                      str(o.get("ts") or ""), row.created_at))
    return found


async def sweep(deps: Deps, older_than: timedelta = SWEEP_AFTER) -> int:
    """Close replies a stopped process left `sending`, noting in their thread any that may not have gone out."""
    noted = 0
    for reply in await interrupted(deps.sessions, older_than):
        async with deps.sessions() as s, s.begin():
            # A reply made in a modal is no Slack message: what its author sent since it went on record counts.
            mine = (Message.slack_ts == reply.ts if reply.ts or reply.since is None else
                    (Message.slack_user == reply.user) & (Message.wa_timestamp >= reply.since))
            stored = int(await s.scalar(select(func.count()).select_from(Message).where(
                Message.conversation_id == reply.conversation_id, mine,
                Message.source == Source.SLACK, Message.is_note.is_(False))) or 0)
            if not stored:
                text = (f":warning: A reply by <@{reply.user}> may not have reached the customer: the bridge "
                        "stopped while sending it. Check the thread's statuses before sending it again.")
                await enqueue(s, Note(reply.conversation_id, text, mrkdwn=True),
                              dedupe_key=f"interrupted:{reply.key}"[:200])
                noted += 1
            await s.execute(update(SlackAction).where(SlackAction.key == reply.key).values(
                outcome={"state": "done", "outcome": "sent" if stored else "interrupted"}))
    if noted:
        log.warning("%d reply(ies) interrupted by a stop were noted in their threads", noted)
        wake_outbox(deps)
    return noted
