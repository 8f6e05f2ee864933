"""Replies written ahead: staff's saved replies and the messages the bridge owes a customer on its own."""

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
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.model_base import Base, utcnow


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


class AutoReply(Base):
    """A message the bridge owes a customer on its own (an away message, a survey), at most once per key.

    Written in the transaction that stores the customer's message, so a replayed webhook adds nothing; a sender
    takes it by moving `pending` to `sending` under its worker id and a new fence (one process wins) and writes
    `attempted_at` just before its request leaves. A sender that stops mid-way leaves it `sending`; once that
    process is silent (bot.bridge.auto_replies recovery), a row never attempted is `pending` again, and one
    whose request may have reached Meta is `failed` with a note in its thread: never sent twice."""

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
    # The claim: the sending process (workers.id) and its fence token (storage/fencing.py), and when the request
    # to Meta was about to leave (None: the send was never attempted, so it may be tried again safely).
    owner_id: Mapped[int | None] = mapped_column(Integer)
    fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attempted_at: Mapped[datetime | None]
