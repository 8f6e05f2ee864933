"""The work the bridge queues and claims, and its bookkeeping: the webhook log, the Slack outbox and
events, interactions acted on once, send-error counts, workers' heartbeats, alert states, Slack redactions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.model_base import Base, utcnow


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
    # Only the files go (media past retention.media_days; `ts` then holds the first file's id): the post stays.
    files_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(100))  # "redacted", or Slack's refusal
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
