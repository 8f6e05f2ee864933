"""The Slack threads staff reply in: which conversation, customer and WhatsApp number a bridged thread stands for.

The thread's own number decides, never the Slack channel's: a number moved to another channel keeps answering its
old threads, and a thread of a number no longer configured sends nothing (`NumberGone`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

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


def number_gone_text(gone: NumberGone) -> str:
    """What the thread says when someone answers in it after its number was removed from the config."""
    return (f"Not sent: this conversation belongs to the WhatsApp number {render.escape(gone.number)}, which is "
            "no longer configured in Wabridge, so nothing goes to the customer from this thread. Ask your "
            "Wabridge admin to add the number back to reply from it.")


__all__ = ["BridgedThread", "NumberGone", "find_thread", "lookup_thread", "number_gone_text"]
