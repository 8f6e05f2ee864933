"""Everything stored about one person (storage.erasure.Person), as plain rows for an export.

Only rows that belong to the person are read: their contact rows and ids, their conversations in scope and the
messages in them (staff replies included: they are part of the conversation), the statuses of those
messages, the inbox's changes to those conversations, their campaign sends and audience rows in scope, and
earlier erasures of their ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.origin import Direction
from storage.erasure import Person, campaigns_in, runs_in
from storage.erasure_groups import names_person
from storage.models import (
    AudienceMember,
    AutoReply,
    Campaign,
    CampaignRecipient,
    CampaignRun,
    Channel,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationEvent,
    ConversationLabel,
    Erasure,
    Message,
    MessageStatus,
    WhatsAppGroup,
)


def as_row(obj: Any, *, leave_out: Sequence[str] = ()) -> dict[str, Any]:
    """A mapped object's columns as JSON-ready values (times in ISO 8601)."""
    out: dict[str, Any] = {}
    for attr in inspect(obj).mapper.column_attrs:
        if attr.key in leave_out:
            continue
        value = getattr(obj, attr.key)
        out[attr.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


async def collect(session: AsyncSession, person: Person, channel_ids: Sequence[int] | None,
                  hashes: Sequence[str] = ()) -> dict[str, Any]:
    """The person's data by kind; hashes (their salted ids, when a salt is set) find earlier erasures."""
    contacts = (await session.scalars(select(Contact).where(Contact.id.in_(person.contact_ids))
                                      .order_by(Contact.id))).all()
    identities = (await session.scalars(select(ContactIdentity).where(
        ContactIdentity.contact_id.in_(person.contact_ids)).order_by(ContactIdentity.id))).all()
    convs = (await session.execute(select(Conversation, Channel.name, Channel.display_phone_number)
                                   .join(Channel, Channel.id == Conversation.channel_id)
                                   .where(Conversation.id.in_(person.conversation_ids))
                                   .order_by(Conversation.id))).all()
    messages = (await session.scalars(select(Message).where(Message.conversation_id.in_(person.conversation_ids))
                                      .order_by(Message.conversation_id, Message.wa_timestamp, Message.id))).all()
    wamids = [m.wamid for m in messages if m.wamid]
    statuses = (await session.scalars(select(MessageStatus).where(MessageStatus.wamid.in_(wamids))
                                      .order_by(MessageStatus.wamid, MessageStatus.wa_timestamp))).all()
    sends = (await session.execute(
        select(CampaignRecipient, Campaign.name, CampaignRun.scheduled_for)
        .join(CampaignRun, CampaignRun.id == CampaignRecipient.run_id)
        .join(Campaign, Campaign.id == CampaignRun.campaign_id)
        .where(CampaignRecipient.wa_id.in_(person.wa_ids), CampaignRecipient.run_id.in_(runs_in(channel_ids)))
        .order_by(CampaignRecipient.id))).all()
    audience = (await session.execute(
        select(AudienceMember, Campaign.name).join(Campaign, Campaign.id == AudienceMember.campaign_id)
        .where(AudienceMember.wa_id.in_(person.wa_ids), AudienceMember.campaign_id.in_(campaigns_in(channel_ids)))
        .order_by(AudienceMember.id))).all()
    labels: dict[int, list[str]] = {}
    for conv_id, label in (await session.execute(select(ConversationLabel.conversation_id, ConversationLabel.label)
                                                 .where(ConversationLabel.conversation_id.in_(person.conversation_ids))
                                                 .order_by(ConversationLabel.label))).tuples():
        labels.setdefault(conv_id, []).append(label)
    changes = (await session.scalars(select(ConversationEvent).where(
        ConversationEvent.conversation_id.in_(person.conversation_ids))
        .order_by(ConversationEvent.conversation_id, ConversationEvent.id))).all()
    automatic = (await session.scalars(select(AutoReply).where(
        AutoReply.conversation_id.in_(person.conversation_ids)).order_by(AutoReply.id))).all()
    groups = await _groups(session, person, channel_ids)
    erasures = [e for e in (await session.scalars(select(Erasure).order_by(Erasure.id))).all()
                if set(hashes) & set(e.identity_hashes or [])] if hashes else []
    return {
        "contacts": [as_row(c) for c in contacts],
        "identities": [as_row(i) for i in identities],
        "conversations": [{**as_row(c), "channel": name, "business_number": number, "labels": labels.get(c.id, [])}
                          for c, name, number in convs],
        "messages": [as_row(m) for m in messages],
        "media": [{"message_id": m.id, "type": m.type, "media_id": m.media_id, "mime_type": m.media_mime,
                   **{k: v for k, v in ((m.content or {}).get("media") or {}).items() if k in ("filename", "sha256")}}
                  for m in messages if m.media_id],
        "statuses": [as_row(s) for s in statuses],
        "opt_outs": [{"contact_id": c.id, "opted_out": c.opted_out,
                      "at": c.opted_out_at.isoformat() if c.opted_out_at else None, "reason": c.opt_out_reason}
                     for c in contacts],
        "campaign_sends": [{**as_row(r, leave_out=("owner_id", "fence")), "campaign": name,
                            "scheduled_for": at.isoformat()} for r, name, at in sends],
        "audiences": [{**as_row(a), "campaign": name} for a, name in audience],
        "groups": groups,
        # Who took, assigned, resolved or reopened their conversations, and when (the team inbox's audit).
        "inbox_changes": [as_row(c, leave_out=("dedupe_key",)) for c in changes],
        # Away messages and satisfaction surveys the bridge sent them, with their answers and comments.
        "automatic_messages": [as_row(a, leave_out=("period_key",)) for a in automatic],
        "audit": [as_row(e, leave_out=("contact_ids", "conversation_ids")) for e in erasures],
    }


async def _groups(session: AsyncSession, person: Person, channel_ids: Sequence[int] | None) -> list[dict[str, Any]]:
    """The WhatsApp groups they are in: the group's subject, their own entry and the messages they sent there."""
    where = [] if channel_ids is None else [Conversation.channel_id.in_(list(channel_ids))]
    rows = (await session.execute(select(WhatsAppGroup, Conversation.id)
                                  .join(Conversation, Conversation.contact_id == WhatsAppGroup.contact_id)
                                  .where(*where).order_by(Conversation.id))).all()
    out = []
    for group, conv_id in rows:
        entry = [p for p in group.participants or [] if names_person(p, person)]
        messages = [as_row(m) for m in (await session.scalars(
            select(Message).where(Message.conversation_id == conv_id, Message.direction == Direction.INBOUND)
            .order_by(Message.wa_timestamp, Message.id))).all()
            if names_person(dict((m.content or {}).get("group_sender") or {}), person)]
        if entry or messages:
            out.append({"group_id": group.group_id, "subject": group.subject, "as_participant": entry,
                        "messages": messages})
    return out
