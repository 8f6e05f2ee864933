"""SQLAlchemy 2 models: the single schema that SQLite and PostgreSQL share.

Why one module: one SQLAlchemy metadata that the migrations and their tests compare against; the
tables refer to one another.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.core.workspace import DEFAULT_WORKSPACE

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | str) -> datetime:
    """An aware UTC datetime from what a query returned: aggregates (min, max) bypass the column type on
    SQLite and come back naive, or as ISO text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite drops tzinfo on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:  # asyncpg's, in a UTC session: most rows, kept as they are
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Source(StrEnum):
    CUSTOMER = "customer"
    PHONE_APP = "phone_app"
    SLACK = "slack"
    CAMPAIGN = "campaign"
    API = "api"
    BRIDGE = "bridge"  # sent by Wabridge on its own: an away message, a satisfaction survey


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
    direction: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(20))
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


class WebhookLog(Base):
    """The raw delivery, stored before Meta gets its 200; processed from here (an outbox)."""

    __tablename__ = "webhook_logs"
    __table_args__ = (
        Index("ix_webhook_logs_pending", "processed_at", "id"),
        # Claims read one lane's pending rows in id order; processed rows (nearly all) stay out of it.
        Index("ix_webhook_logs_lane_pending", "lane", "id",
              postgresql_where=text("processed_at IS NULL"), sqlite_where=text("processed_at IS NULL")),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    event_type: Mapped[str] = mapped_column(String(32), index=True)
    lane: Mapped[str] = mapped_column(String(8), default="live", server_default="live")
    # Whose delivery it is (bot.bridge.webhook_sources): live deliveries are claimed round robin across sources.
    source: Mapped[str] = mapped_column(String(64), default="", server_default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the claiming worker (storage/fencing.py)
    fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SlackOutbox(Base):
    """Posts owed to Slack, delivered in order per thread and retried until Slack takes them."""

    __tablename__ = "slack_outbox"
    __table_args__ = (Index("ix_slack_outbox_pending", "done_at", "thread_key", "order_ts", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    thread_key: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    # The Slack workspace this row belongs to (bot.core.workspace): every read from Slack is scoped by it.
    slack_team: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE, server_default=DEFAULT_WORKSPACE,
                                            index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    order_ts: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
    owner_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the claiming worker (storage/fencing.py)
    fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SlackEvent(Base):
    """Slack event ids already handled, so Slack's retries never act twice."""

    __tablename__ = "slack_events"
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("waba_id", "name", "language"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    waba_id: Mapped[str] = mapped_column(String(64))
    meta_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(32))
    quality: Mapped[str | None] = mapped_column(String(32))
    components: Mapped[list[Any]] = mapped_column(JSON, default=list)
    rejected_reason: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    template_name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    schedule_kind: Mapped[str] = mapped_column(String(10))  # now | at | cron
    run_at: Mapped[datetime | None]
    cron: Mapped[str | None] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Kolkata")
    # When a repeating campaign was last scheduled or resumed: firings before it are not owed.
    active_since: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20), default="scheduled", index=True)
    pause_reason: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(64))
    slack_channel: Mapped[str | None] = mapped_column(String(64))
    # The Slack workspace this row belongs to (bot.core.workspace): every read from Slack is scoped by it.
    slack_team: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE, server_default=DEFAULT_WORKSPACE,
                                            index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AudienceMember(Base):
    """A campaign's audience, kept so that a repeating campaign sends to the same list each time."""

    __tablename__ = "audience_members"
    __table_args__ = (UniqueConstraint("campaign_id", "wa_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    wa_id: Mapped[str] = mapped_column(String(32))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CampaignRun(Base):
    """One firing of a campaign; unique per scheduled time so that a firing happens once in any cluster."""

    __tablename__ = "campaign_runs"
    __table_args__ = (UniqueConstraint("campaign_id", "scheduled_for"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    scheduled_for: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    slack_channel: Mapped[str | None] = mapped_column(String(64))
    slack_progress_ts: Mapped[str | None] = mapped_column(String(32))


class CampaignRecipient(Base):
    __tablename__ = "campaign_recipients"
    __table_args__ = (
        UniqueConstraint("run_id", "wa_id"),
        Index("ix_campaign_recipients_claim", "run_id", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id"))
    wa_id: Mapped[str] = mapped_column(String(32))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # pending -> sending -> sent -> delivered -> read | failed | skipped | unknown
    status: Mapped[str] = mapped_column(String(20), default="pending")
    wamid: Mapped[str | None] = mapped_column(String(255), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(String(500))
    pricing_category: Mapped[str | None] = mapped_column(String(32))
    billable: Mapped[bool | None] = mapped_column(Boolean)
    owner_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the claiming worker (storage/fencing.py)
    fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set, and committed, before the request to Meta: only a recipient with it set can have been sent.
    attempted_at: Mapped[datetime | None]


class Worker(Base):
    """One running process: its heartbeat says whether the work it claimed may be taken over."""

    __tablename__ = "workers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    stopped_at: Mapped[datetime | None]


class AlertState(Base):
    """The last state announced per subject, so each change is alerted once and repeats are not."""

    __tablename__ = "alert_states"
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(255))
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)


class OnboardedChannel(Base):
    """A WhatsApp number connected through the /onboard page; merged into the running settings."""

    __tablename__ = "onboarded_channels"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    phone_number_id: Mapped[str] = mapped_column(String(64), unique=True)
    waba_id: Mapped[str] = mapped_column(String(64))
    display_phone_number: Mapped[str] = mapped_column(String(64), default="")
    mode: Mapped[str] = mapped_column(String(20))
    mps: Mapped[int] = mapped_column(Integer)
    slack_channel: Mapped[str] = mapped_column(String(64))
    slack_team: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE, server_default=DEFAULT_WORKSPACE)
    token_ciphertext: Mapped[str] = mapped_column(Text)  # Fernet token of the business access token
    onboarded_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OnboardingLink(Base):
    """A one-time /onboard link: only its SHA-256 is kept; it expires and completes one onboarding."""

    __tablename__ = "onboarding_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    slack_channel: Mapped[str] = mapped_column(String(64))
    slack_team: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE, server_default=DEFAULT_WORKSPACE)
    channel_name: Mapped[str | None] = mapped_column(String(100))
    requested_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(500))


class SmbSync(Base):
    """A Business App data sync asked of Meta (contacts or history) and how far it got."""

    __tablename__ = "smb_syncs"
    __table_args__ = (Index("ix_smb_syncs_channel_type", "channel_id", "sync_type"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    sync_type: Mapped[str] = mapped_column(String(32))  # smb_app_state_sync | history
    request_id: Mapped[str | None] = mapped_column(String(128))
    # requested -> in_progress -> completed | declined | failed
    state: Mapped[str] = mapped_column(String(20), default="requested")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    phase: Mapped[int | None] = mapped_column(Integer)
    progress: Mapped[int | None] = mapped_column(Integer)
    chunks_seen: Mapped[list[Any]] = mapped_column(JSON, default=list)
    items: Mapped[int] = mapped_column(Integer, default=0)  # history messages or contacts received
    last_progress_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    slack_channel: Mapped[str | None] = mapped_column(String(64))
    slack_ts: Mapped[str | None] = mapped_column(String(32))


class SlackAction(Base):
    """Slack interactions already acted on, with the answer given, so a replayed request acts once."""

    __tablename__ = "slack_actions"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None while the first delivery is at work
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SendErrorCount(Base):
    """Meta's throughput refusals (130429, 131056) per channel and hour; a later success does not clear them."""

    __tablename__ = "send_error_counts"
    channel_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class SlackWorkspace(Base):
    """A workspace that installed the app (many-workspace mode): whether its work runs or waits for a reinstall.

    The tokens are in slack_installations / slack_bots (slack_sdk's installation store, sealed); this row is
    what stays after an uninstall deletes them, so the workspace's numbers and queued work wait, not vanish."""

    __tablename__ = "slack_workspaces"
    team: Mapped[str] = mapped_column(String(32), primary_key=True)  # bot.core.workspace.workspace_key
    enterprise_id: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), default="active")  # active | uninstalled | revoked
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    paused_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Erasure(Base):
    """A customer's data erased on request: the audit record, holding no personal data (who asked, when, the
    salted hashes of the person's ids), and how far the erasure got, so a stopped one resumes."""

    __tablename__ = "erasures"
    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(255))  # a Slack user id, or `cli:<login>`
    requested_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    identity_hashes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    scope: Mapped[list[Any] | None] = mapped_column(JSON)  # channel ids erased in; None: every channel
    # erasing -> redacting -> done. While erasing, the rows still to go are named by id.
    state: Mapped[str] = mapped_column(String(20), default="erasing", index=True)
    contact_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    conversation_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    threads: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [slack channel, thread ts] to redact
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    slack_refused: Mapped[list[Any]] = mapped_column(JSON, default=list)  # what Slack would not redact, and why
    finished_at: Mapped[datetime | None]


class SuppressedIdentity(Base):
    """The salted hash of an erased person's id: no campaign reaches them again until they opt back in."""

    __tablename__ = "suppressed_identities"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
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


class SavedReply(Base):
    """A saved reply of one workspace's library (for every number, or for one): text staff send with a click."""

    __tablename__ = "saved_replies"
    id: Mapped[int] = mapped_column(primary_key=True)
    slack_team: Mapped[str] = mapped_column(String(32), index=True)  # bot.core.workspace.workspace_key
    phone_number_id: Mapped[str | None] = mapped_column(String(64))  # None: every number of the workspace
    name: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # replies sent with it
    # An image or document sent with the text (its caption): the Slack file as uploaded in the editor (id, name,
    # mimetype, size, url_private); None for text only.
    attachment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SlackRedaction(Base):
    """A Slack post whose data the retention pass deleted, owed a redaction (bot/ops/retention_redaction.py).

    Written in the transaction that deletes the message, so a stop never loses one; worked off slowly, behind
    each workspace's live posts. `parent`: the thread's parent carried the message, refreshed rather than
    overwritten (it holds the conversation's header and buttons)."""

    __tablename__ = "slack_redactions"
    __table_args__ = (UniqueConstraint("channel", "ts"), Index("ix_slack_redactions_pending", "done_at", "id"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    slack_team: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE)
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[int | None] = mapped_column(Integer)
    parent: Mapped[bool] = mapped_column(Boolean, default=False)
    files: Mapped[list[str]] = mapped_column(JSON, default=list)  # Slack file ids shared with the message
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(100))  # "redacted", or Slack's refusal
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]


class AutoReply(Base):
    """A message the bridge owes a customer on its own (an away message), at most once per key.

    Written in the transaction that stores the customer's message, so a replayed webhook adds nothing; a sender
    takes it by moving `pending` to `sending` (one process wins), and a stop after that leaves it `sending`:
    never sent twice, at worst not at all."""

    __tablename__ = "auto_replies"
    __table_args__ = (UniqueConstraint("conversation_id", "kind", "period_key"),
                      Index("ix_auto_replies_state", "state", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    slack_team: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE, server_default=DEFAULT_WORKSPACE)
    kind: Mapped[str] = mapped_column(String(16))  # away | csat
    # away: the closed period's start (ISO, UTC); csat: the resolve (its conversation_events key)
    period_key: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sending|sent|skipped|failed
    reason: Mapped[str | None] = mapped_column(String(255))  # why skipped or failed
    wamid: Mapped[str | None] = mapped_column(String(255))
    message_id: Mapped[int | None] = mapped_column(Integer)
    trigger_at: Mapped[datetime]  # the customer's message (away) or the resolve (csat) that asked for it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # csat: the staff member credited (the owner when resolved, else who resolved) and the customer's answer
    staff: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[int | None] = mapped_column(Integer)  # 3 best .. 1 worst
    answer: Mapped[str | None] = mapped_column(String(32))  # the button's title
    answered_at: Mapped[datetime | None]
    comment: Mapped[str | None] = mapped_column(Text)
