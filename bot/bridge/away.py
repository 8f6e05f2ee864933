"""Away messages: a customer who writes while their number is closed is owed the number's away message, once
per closed period and conversation.

The debt is written in the transaction that stores the customer's message (bot.bridge.meta_events and
message_batch), only for a message stored for the first time: Meta's retries and a delivery reaching two
processes store it once, and the (conversation, period) key keeps a second message of the same night from
owing another. `bot.bridge.auto_replies` sends what is owed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.away import away_applies
from bot.core.config import Settings, ThreadReplies
from bot.core.origin import Direction, Source
from bot.core.window import WINDOW
from bot.ops.sla import hours_for
from storage.models import CSAT_ANSWER, AutoReply, Channel, Contact, Conversation, Message, utcnow
from storage.upsert import insert_ignore

log = logging.getLogger(__name__)

AWAY = "away"
NOT_ASKING = frozenset({"reaction", "system", CSAT_ANSWER})  # a customer's messages that expect no answer
PLACEHOLDERS = ("name", "first_name", "number", "business")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def fill(text: str, values: Mapping[str, str]) -> str:
    """The away text with `{name}`, `{first_name}`, `{number}`, `{business}` filled; other braces as typed."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)


def any_away(settings: Settings) -> bool:
    """Whether some number sends away messages at all (else the webhook path asks nothing more)."""
    return any(away_applies(settings, c) for c in settings.channels)


async def answered_since(session: AsyncSession, conversation_id: int, since: datetime) -> bool:
    """Whether someone answered the conversation (from Slack or the phone app) since this moment: staff
    working through a closed period need no away message speaking for them."""
    found = await session.scalar(select(Message.id).where(
        Message.conversation_id == conversation_id, Message.direction == Direction.OUTBOUND,
        Message.source.in_([Source.SLACK, Source.PHONE_APP]), Message.is_note.is_(False),
        Message.wa_timestamp >= since).limit(1))
    return found is not None


async def owe_away(session: AsyncSession, settings: Settings, latest: Mapping[int, datetime],
                   now: datetime | None = None) -> int:
    """Owe the away message to each conversation (id -> its customer's new message time) that wrote while its
    number was closed and still is; returns how many were owed now.

    Not owed: a delivery late enough that the number opened since (the message was answered by then, or will
    be), one outside the 24-hour window, an opted-out customer, a notes-only number, a conversation someone
    answered during this closed period."""
    if not latest or not any_away(settings):
        return 0
    now = now or utcnow()
    rows = (await session.execute(
        select(Conversation.id, Conversation.slack_team, Channel.phone_number_id, Contact.opted_out)
        .join(Channel, Channel.id == Conversation.channel_id).join(Contact, Contact.id == Conversation.contact_id)
        .where(Conversation.id.in_(sorted(latest))))).tuples().all()
    owed = 0
    for conv_id, team, pnid, opted_out in rows:
        channel = settings.channel_by_phone_number_id(pnid)
        if channel is None or not away_applies(settings, channel) or opted_out \
                or channel.thread_replies is ThreadReplies.NOTES_ONLY:
            continue
        clock = hours_for(settings, channel)
        at = latest[conv_id]
        period = clock.closed_since(at) if clock is not None else None
        if clock is None or period is None or clock.closed_since(now) != period or at + WINDOW <= now \
                or await answered_since(session, conv_id, period):
            continue
        if await insert_ignore(session, AutoReply, {
            "conversation_id": conv_id, "slack_team": team, "kind": AWAY, "period_key": period.isoformat(),
            "state": "pending", "trigger_at": at, "created_at": now, "updated_at": now,
        }, ["conversation_id", "kind", "period_key"]) is not None:
            owed += 1
    return owed
