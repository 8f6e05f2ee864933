"""Numbers and workspaces being set up: onboarded channels and their links, Business App syncs, installed
Slack workspaces."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.model_base import Base, utcnow


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
