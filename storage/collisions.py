"""Who else is on a conversation when someone answers it: its owner, and whoever else answered it just before.

The collision notice (bot.handlers.slack_collision) reads these; the notice itself is rationed per person and
conversation with one row in `slack_events` whose time moves forward, so several processes agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.origin import Direction, Source
from storage.models import Conversation, Message, SlackEvent
from storage.upsert import insert_ignore

RECENT = timedelta(minutes=2)  # another answer this close is someone else on it now
QUIET = timedelta(minutes=10)  # at most one notice per person and conversation in this long


@dataclass(frozen=True)
class Others:
    """The people besides the one answering: the owner (when not them) and recent answerers (Slack ids)."""

    owner: str | None
    answered: tuple[str, ...] = ()
    phone_app: bool = False  # someone answered from the WhatsApp app on the phone

    def __bool__(self) -> bool:
        return bool(self.owner or self.answered or self.phone_app)


async def others_on(session: AsyncSession, conversation_id: int, user: str, now: datetime) -> Others:
    """Who else holds or answered the conversation in the RECENT span before `now` (notes, history do not count)."""
    owner = await session.scalar(select(Conversation.owner).where(Conversation.id == conversation_id))
    rows = (await session.execute(
        select(Message.source, Message.slack_user).where(
            Message.conversation_id == conversation_id, Message.direction == Direction.OUTBOUND,
            Message.source.in_([Source.SLACK, Source.PHONE_APP]), Message.is_note.is_(False),
            Message.is_history.is_(False), Message.wa_timestamp >= now - RECENT)
        .order_by(Message.wa_timestamp, Message.id))).all()
    answered: list[str] = []
    phone_app = False
    for source, slack_user in rows:
        if source == Source.PHONE_APP:
            phone_app = True
        elif slack_user and slack_user not in (user, owner) and slack_user not in answered:
            answered.append(slack_user)  # the owner is named once, as the owner
    return Others(owner if owner and owner != user else None, tuple(answered), phone_app)


async def claim_notice(session: AsyncSession, conversation_id: int, user: str, now: datetime) -> bool:
    """True when `user` had no collision notice on this conversation in the last QUIET span (and now has one)."""
    key = f"collision:{conversation_id}:{user}"[:64]
    if await insert_ignore(session, SlackEvent, {"event_id": key, "received_at": now}, ["event_id"]) is not None:
        return True
    result = await session.execute(update(SlackEvent).where(SlackEvent.event_id == key,
                                                            SlackEvent.received_at <= now - QUIET)
                                   .values(received_at=now).execution_options(synchronize_session=False))
    return isinstance(result, CursorResult) and result.rowcount == 1
