"""A person's erasure and the identities kept out afterwards (hashed, never the number)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.model_base import Base, utcnow


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
