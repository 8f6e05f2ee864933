"""Edits and deletions of messages already stored: every version kept, the Slack post revised once.

A message's `content` keeps its history: `versions` (each earlier content with when it was replaced),
`edited_at`, `revisions` (the wamids of the edit/revoke events applied, so a redelivery does nothing)
and `revoked_at`. The "revision" outbox item (bot.bridge.revisions) updates the mirrored post.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Message
from storage.outbox_kinds import Revision, enqueue


def edited_content(previous: dict[str, Any], new: dict[str, Any], *, event_wamid: str,
                   at: datetime) -> dict[str, Any]:
    """The stored content after an edit: the new content, carrying every earlier version."""
    old = {k: v for k, v in previous.items() if k not in ("versions", "revisions")}
    versions = [*list(previous.get("versions") or []), {"replaced_at": at.isoformat(), "content": old}]
    return {**new, "versions": versions, "edited_at": at.isoformat(),
            "revisions": [*list(previous.get("revisions") or []), event_wamid]}


def revoked_content(previous: dict[str, Any], *, event_wamid: str, at: datetime) -> dict[str, Any]:
    """The stored content after a deletion: unchanged (kept for audit) but marked deleted."""
    return {**previous, "revoked_at": at.isoformat(),
            "revisions": [*list(previous.get("revisions") or []), event_wamid]}


async def _target(session: AsyncSession, wamid: str) -> Message | None:
    return await session.scalar(select(Message).where(Message.wamid == wamid))


async def _owe_revision(session: AsyncSession, msg: Message, event_wamid: str, at: datetime) -> None:
    await enqueue(session, Revision(msg.id, msg.conversation_id), dedupe_key=f"revision:{event_wamid}", order_ts=at)


async def apply_edit(session: AsyncSession, *, target_wamid: str, event_wamid: str, new: dict[str, Any],
                     text: str | None, kind: str, at: datetime) -> bool:
    """Replace a stored message's content with its edited version; False when the original is unknown."""
    msg = await _target(session, target_wamid)
    if msg is None:
        return False
    previous = dict(msg.content or {})
    if event_wamid in (previous.get("revisions") or []):
        return True  # this edit was applied already (a redelivery)
    msg.content = edited_content(previous, new, event_wamid=event_wamid, at=at)
    msg.text, msg.type = text, kind
    await _owe_revision(session, msg, event_wamid, at)
    return True


async def apply_revoke(session: AsyncSession, *, target_wamid: str, event_wamid: str, at: datetime) -> bool:
    """Mark a stored message deleted by its sender; False when the original is unknown."""
    msg = await _target(session, target_wamid)
    if msg is None:
        return False
    previous = dict(msg.content or {})
    if event_wamid in (previous.get("revisions") or []):
        return True
    msg.content = revoked_content(previous, event_wamid=event_wamid, at=at)
    await _owe_revision(session, msg, event_wamid, at)
    return True
