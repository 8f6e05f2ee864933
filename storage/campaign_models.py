"""Templates and campaigns: the audience, each run, and each recipient's send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.model_base import Base, utcnow


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
