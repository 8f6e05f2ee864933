"""A stored message with what its rendering needs, read for the outbox's handlers: one item at a time, or a
claim's message posts together before they start (prefetch_messages)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, case, false, select
from sqlalchemy.orm import aliased

from bot.bridge.group_events import member_label, members_of
from bot.core.config import ChannelSettings
from bot.core.origin import Direction
from bot.deps import Deps
from bot.slack import render
from bot.slack.outbox import ItemContext, OutboxItem
from scheduler.campaigns.sent_text import campaign_text
from storage.models import Campaign, Channel, Contact, Conversation, Message
from storage.outbox_kinds import MessagePost


@dataclass
class Loaded:
    """A stored message with everything its rendering needs."""

    msg: Message
    conv: Conversation
    contact: Contact
    channel: ChannelSettings | None
    channel_row: Channel
    quoted: str | None
    campaign: str | None
    previous_inbound: datetime | None = None  # the customer's mirrored message before this one (see _load_statement)

    @property
    def contact_view(self) -> render.ContactView:
        return contact_view(self.contact)

    @property
    def channel_view(self) -> render.ChannelView:
        return render.ChannelView(self.channel_row.name, self.channel_row.display_phone_number)


def contact_view(contact: Contact, members: tuple[str, ...] = ()) -> render.ContactView:
    """How a contact is named: the phone app's address book first, then their WhatsApp profile (a group: its
    subject, and `members` its participants)."""
    # Blank names (a profile of spaces) count as none: the username is shown instead.
    name = (contact.address_book_name or "").strip() or (contact.profile_name or "").strip() or None
    return render.ContactView(contact.wa_id, name, contact.username, members)


async def header_view(ctx: ItemContext, contact: Contact) -> render.ContactView:
    """The contact as a thread's header shows it: a group with its participants."""
    if not contact.wa_id.startswith("group:"):
        return contact_view(contact)
    async with ctx.deps.sessions() as s:
        members = await members_of(s, contact.id) or []
    return contact_view(contact, tuple(member_label(m) for m in members))


def summary(msg: Message) -> str:
    if msg.text:
        return msg.text
    return f"[{msg.type}]"


ROWS = "conversation_rows"  # ctx.cache key: conversation id -> (conversation, contact, channel)
HISTORY = "has_history"  # ctx.cache key: conversation id -> whether it holds imported history messages


def _load_statement(many: bool = False) -> Select[Any]:
    earlier = aliased(Message)
    # The customer's message before this one that was mirrored with the parent's window in mind (a reaction or
    # imported history never moves what the parent shows; a message not in Slack may not have either).
    previous = (select(earlier.wa_timestamp).where(
        earlier.conversation_id == Message.conversation_id, earlier.direction == Direction.INBOUND,
        earlier.is_history.is_(False), earlier.type != "reaction", earlier.slack_ts.is_not(None),
        earlier.wa_timestamp < Message.wa_timestamp)
        .order_by(earlier.wa_timestamp.desc()).limit(1).scalar_subquery())
    imported = aliased(Message)
    # Asked only while the conversation has no thread (a long conversation's messages are not scanned after).
    has_history = case((Conversation.slack_thread_ts.is_(None),
                        select(imported.id).where(imported.conversation_id == Message.conversation_id,
                                                  imported.is_history.is_(True)).exists()), else_=false())
    return (select(Message, Conversation, Contact, Channel, previous, has_history)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(Contact, Contact.id == Conversation.contact_id)
            .join(Channel, Channel.id == Conversation.channel_id)
            .where(Message.id.in_(bindparam("message_ids", expanding=True)) if many
                   else Message.id == bindparam("message_id")))


# Built once: building it (and its cache key) for every item cost more CPU than running it.
_LOAD_MESSAGE = _load_statement()
_LOAD_MESSAGES = _load_statement(many=True)
_PREFETCHED = "prefetched"  # OutboxItem.cache key: message id -> its load row, read with the item's claim


async def prefetch_messages(deps: Deps, items: Sequence[OutboxItem]) -> None:
    """Read the messages a claim's message posts show, all in one query, before they start: a round trip for
    the claim instead of one (and a connection's checkout) per item."""
    wanted: dict[int, list[OutboxItem]] = {}
    for item in items:
        message_id = item.payload.get("message_id") if item.kind == MessagePost.KIND else None
        if isinstance(message_id, int):
            wanted.setdefault(message_id, []).append(item)
    if not wanted:
        return
    async with deps.read_session() as s:
        rows = (await s.execute(_LOAD_MESSAGES, {"message_ids": sorted(wanted)})).all()
    for row in rows:
        for item in wanted.get(row[0].id, ()):
            item.cache.setdefault(_PREFETCHED, {})[row[0].id] = tuple(row)


async def load_message(ctx: ItemContext, message_id: int) -> Loaded | None:
    """The message, its conversation, contact, channel, quoted message and campaign name."""
    found = ctx.cache.get(_PREFETCHED, {}).pop(message_id, None)
    if found is None:
        async with ctx.deps.read_session() as s:
            found = (await s.execute(_LOAD_MESSAGE, {"message_id": message_id})).first()
        if found is None:
            return None
    msg, conv, contact, channel_row, previous_inbound, has_history = found
    # The rest of this attempt (thread, parent refresh) works from these rows rather than reading them again.
    ctx.cache.setdefault(ROWS, {})[conv.id] = (conv, contact, channel_row)
    ctx.cache.setdefault(HISTORY, {})[conv.id] = bool(has_history)
    quoted = campaign = None
    ctx_id = (msg.content or {}).get("context", {}) or {}
    if ctx_id.get("id") or msg.campaign_id is not None:
        quoted, campaign = await _quoted_and_campaign(ctx, msg, str(ctx_id.get("id") or ""))
    cfg = ctx.deps.settings.channel_by_phone_number_id(channel_row.phone_number_id)
    return Loaded(msg, conv, contact, cfg, channel_row, quoted, campaign, previous_inbound)


async def _quoted_and_campaign(ctx: ItemContext, msg: Message, context_id: str) -> tuple[str | None, str | None]:
    """What the message quotes (the message it replies to) and the campaign it answers, by name."""
    quoted = campaign = None
    async with ctx.deps.read_session() as s:
        if context_id:
            target = await s.scalar(select(Message).where(Message.wamid == context_id))
            if target is not None:
                quoted = summary(target)
            else:  # a reply to a campaign: what that recipient read is the template filled with their row
                quoted = await campaign_text(s, context_id)
        if msg.campaign_id is not None:
            row = await s.get(Campaign, msg.campaign_id)
            campaign = row.name if row is not None else f"#{msg.campaign_id}"
    return quoted, campaign
