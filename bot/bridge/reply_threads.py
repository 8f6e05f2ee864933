"""The Slack threads staff reply in: which conversation, customer and WhatsApp number a bridged thread stands for.

The thread's own number decides, never the Slack channel's: a number moved to another channel keeps answering its
old threads, and a thread of a number no longer configured sends nothing (`NumberGone`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select

from bot.core.config import ChannelSettings
from bot.core.workspace import in_scope
from bot.deps import Deps
from bot.slack import render
from storage.models import Channel, Contact, Conversation


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


# A new thread is recorded with its parent's outcome, a moment after the parent appears in Slack (longer while
# the database is slow): a reply typed in that moment waits for it rather than being taken for one in a thread
# the bridge did not make. Looked for again after each of these pauses (about 6 s in all).
RECORD_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)


async def lookup_thread_being_recorded(deps: Deps, slack_channel: str, thread_ts: str,
                                       waits: tuple[float, ...] = RECORD_WAITS) -> BridgedThread | NumberGone | None:
    """`lookup_thread`, and in a channel the bridge posts threads in, again a few times while a thread it has
    just opened may still be on its way to the database."""
    found = await lookup_thread(deps, slack_channel, thread_ts)
    if found is not None or not await _bridge_channel(deps, slack_channel):
        return found
    for pause in waits:
        await asyncio.sleep(pause)
        found = await lookup_thread(deps, slack_channel, thread_ts)
        if found is not None:
            return found
    return None


async def _bridge_channel(deps: Deps, slack_channel: str) -> bool:
    """Whether the bridge opens threads in this Slack channel (a number's channel or its campaign spill-over)."""
    if any(slack_channel in (c.slack_channel, c.campaign_replies_channel) for c in deps.settings.channels):
        return True
    async with deps.sessions() as s:
        return bool(await s.scalar(select(exists().where(Channel.slack_channel == slack_channel))))


def number_gone_text(gone: NumberGone) -> str:
    """What the thread says when someone answers in it after its number was removed from the config."""
    return (f"Not sent: this conversation belongs to the WhatsApp number {render.escape(gone.number)}, which is "
            "no longer configured in Wabridge, so nothing goes to the customer from this thread. Ask your "
            "Wabridge admin to add the number back to reply from it.")


__all__ = ["BridgedThread", "NumberGone", "find_thread", "lookup_thread", "lookup_thread_being_recorded",
           "number_gone_text"]
