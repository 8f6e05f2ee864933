"""SQLAlchemy 2 models: the single schema that SQLite and PostgreSQL share.

This module holds the conversation itself (numbers, contacts, conversations, messages and their statuses); the
other tables are grouped by concept in storage/*_models.py on one declarative base (storage/model_base.py,
whose metadata the migrations compare against). Every model is importable from here.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum as PyEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.core.origin import Direction, Source
from bot.core.workspace import DEFAULT_WORKSPACE
from storage.account_models import OnboardedChannel as OnboardedChannel
from storage.account_models import OnboardingLink as OnboardingLink
from storage.account_models import SlackWorkspace as SlackWorkspace
from storage.account_models import SmbSync as SmbSync
from storage.campaign_models import AudienceMember as AudienceMember
from storage.campaign_models import Campaign as Campaign
from storage.campaign_models import CampaignRecipient as CampaignRecipient
from storage.campaign_models import CampaignRun as CampaignRun
from storage.campaign_models import Template as Template
from storage.model_base import NAMING as NAMING
from storage.model_base import Base as Base
from storage.model_base import UTCDateTime as UTCDateTime
from storage.model_base import as_utc as as_utc
from storage.model_base import utcnow as utcnow
from storage.privacy_models import Erasure as Erasure
from storage.privacy_models import SuppressedIdentity as SuppressedIdentity
from storage.reply_models import AutoReply as AutoReply
from storage.reply_models import SavedReply as SavedReply
from storage.work_models import AlertState as AlertState
from storage.work_models import SendErrorCount as SendErrorCount
from storage.work_models import SlackAction as SlackAction
from storage.work_models import SlackEvent as SlackEvent
from storage.work_models import SlackOutbox as SlackOutbox
from storage.work_models import SlackRedaction as SlackRedaction
from storage.work_models import WebhookLog as WebhookLog
from storage.work_models import Worker as Worker


def _stored_as_values(enum: type[PyEnum], length: int) -> Enum:
    """An enum column stored as its members' values in a plain VARCHAR (no CHECK, no native type), as the
    strings were stored before: rows already there read as members, and no migration is needed."""
    return Enum(enum, native_enum=False, create_constraint=False, length=length, validate_strings=True,
                values_callable=lambda members: [m.value for m in members])


CSAT_ANSWER = "csat_answer"
"""The stored type of a customer's tap on a satisfaction survey's button: no question, so no wait, no reopen."""


class Channel(Base):
    __tablename__ = "channels"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    phone_number_id: Mapped[str] = mapped_column(String(64), unique=True)
    waba_id: Mapped[str] = mapped_column(String(64), index=True)
    display_phone_number: Mapped[str] = mapped_column(String(64), default="")
    mode: Mapped[str] = mapped_column(String(20))
    mps: Mapped[int] = mapped_column(Integer)
    slack_channel: Mapped[str] = mapped_column(String(64), default="")
    # The Slack workspace this row belongs to (bot.core.workspace): every read from Slack is scoped by it.
    slack_team: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE, server_default=DEFAULT_WORKSPACE,
                                            index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    # The phone number; the business-scoped user id while Meta withholds the number.
    wa_id: Mapped[str] = mapped_column(String(512), unique=True)
    profile_name: Mapped[str | None] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(255))
    address_book_name: Mapped[str | None] = mapped_column(String(255))
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[datetime | None]
    opt_out_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ContactIdentity(Base):
    """One id Meta uses for a contact: phone, user_id (BSUID), parent_user_id or username."""

    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("kind", "value"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("channel_id", "contact_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    last_customer_message_at: Mapped[datetime | None]
    slack_channel: Mapped[str | None] = mapped_column(String(64))
    slack_thread_ts: Mapped[str | None] = mapped_column(String(32))
    # The Slack workspace this row belongs to (bot.core.workspace): every read from Slack is scoped by it.
    slack_team: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE, server_default=DEFAULT_WORKSPACE,
                                            index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The team's inbox (bot.bridge.inbox): who handles it, open or resolved, and the last status change.
    owner: Mapped[str | None] = mapped_column(String(64))  # a Slack user id
    inbox_status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    status_by: Mapped[str | None] = mapped_column(String(64))  # a Slack user id, or "customer"
    status_at: Mapped[datetime | None]
    # Snoozed: out of the waiting lists until then or until the customer writes (bot.bridge.inbox).
    snoozed_until: Mapped[datetime | None] = mapped_column(index=True)


class ConversationEvent(Base):
    """What staff (or the customer) did to a conversation in the inbox: take, assign, resolve, reopen; who, when.

    `dedupe_key` names the Slack interaction (or the customer's message) that caused it, so a replay adds nothing."""

    __tablename__ = "conversation_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    slack_team: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE, server_default=DEFAULT_WORKSPACE)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))  # a Slack user id, or "customer"
    assignee: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(255))  # a snooze's time, a label change ("+fees -complaint")
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConversationLabel(Base):
    """One of a conversation's labels (from `inbox.labels`)."""

    __tablename__ = "conversation_labels"
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_ts", "conversation_id", "wa_timestamp"),
                      # the managers' figures read a period across all conversations
                      Index("ix_messages_wa_timestamp", "wa_timestamp"))
    id: Mapped[int] = mapped_column(primary_key=True)
    wamid: Mapped[str | None] = mapped_column(String(255), unique=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    direction: Mapped[Direction] = mapped_column(_stored_as_values(Direction, 10))
    source: Mapped[Source] = mapped_column(_stored_as_values(Source, 20))
    type: Mapped[str] = mapped_column(String(32))
    text: Mapped[str | None] = mapped_column(Text)
    media_id: Mapped[str | None] = mapped_column(String(255))
    media_mime: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str | None] = mapped_column(String(20))
    status_history: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(String(500))
    slack_user: Mapped[str | None] = mapped_column(String(64))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    # What the bridge itself posted for the message ({"posts": [ts, ...], "files": [file id, ...]}), kept as long
    # as the message so retention and erasure can redact them after the outbox's record has aged out.
    slack_posts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    is_history: Mapped[bool] = mapped_column(Boolean, default=False)
    is_note: Mapped[bool] = mapped_column(Boolean, default=False)
    pricing_category: Mapped[str | None] = mapped_column(String(32))
    billable: Mapped[bool | None] = mapped_column(Boolean)
    wa_timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessageStatus(Base):
    """Every status Meta reported, kept even when it arrives before the message it refers to."""

    __tablename__ = "message_statuses"
    __table_args__ = (UniqueConstraint("wamid", "status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    wamid: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(20))
    wa_timestamp: Mapped[datetime]
    recipient_id: Mapped[str | None] = mapped_column(String(512))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(String(500))
    pricing: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WhatsAppGroup(Base):
    """A WhatsApp group the business number is in (Groups API). Its thread belongs to the contact
    `group:<group_id>`; this row holds what the thread's header shows and whether the group can be written to."""

    __tablename__ = "whatsapp_groups"
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(512), unique=True)
    subject: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    invite_link: Mapped[str | None] = mapped_column(String(512))
    # [{"wa_id", "user_id", "username", "name"}], in the order they were first seen
    participants: Mapped[list[Any]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(20), default="active")  # active | suspended | deleted
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
