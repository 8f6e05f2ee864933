"""Saved replies: each workspace's library, read and written only under that workspace's key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SavedReply, utcnow


async def library(s: AsyncSession, workspace: str, phone_number_id: str | None = None) -> list[SavedReply]:
    """A workspace's saved replies by name; with a number, those for every number and for that one."""
    query = select(SavedReply).where(SavedReply.slack_team == workspace)
    if phone_number_id is not None:
        query = query.where(or_(SavedReply.phone_number_id.is_(None),
                                SavedReply.phone_number_id == phone_number_id))
    return list((await s.scalars(query.order_by(SavedReply.name, SavedReply.id))).all())


async def get(s: AsyncSession, reply_id: int) -> SavedReply | None:
    """A saved reply by id, whatever its workspace (the caller checks it is the request's)."""
    return await s.get(SavedReply, reply_id)


async def add(s: AsyncSession, workspace: str, *, name: str, text: str, phone_number_id: str | None,
              user: str, attachment: dict[str, Any] | None = None) -> int:
    row = SavedReply(slack_team=workspace, name=name, text=text, phone_number_id=phone_number_id,
                     created_by=user, attachment=attachment)
    s.add(row)
    await s.flush()
    return row.id


KEEP: Any = object()  # `change`'s attachment: leave it as it is


async def change(s: AsyncSession, workspace: str, reply_id: int, *, name: str, text: str,
                 phone_number_id: str | None, attachment: Any = KEEP) -> bool:
    """Update a saved reply of this workspace (its attachment only when one is given, None removes it); False
    when it has none by that id."""
    values: dict[str, Any] = {"name": name, "text": text, "phone_number_id": phone_number_id,
                              "updated_at": utcnow()}
    if attachment is not KEEP:
        values["attachment"] = attachment
    result = await s.execute(update(SavedReply).where(SavedReply.id == reply_id, SavedReply.slack_team == workspace)
                             .values(**values))
    return bool(getattr(result, "rowcount", 0))


async def remove(s: AsyncSession, workspace: str, reply_id: int) -> bool:
    """Delete a saved reply of this workspace; False when it has none by that id."""
    result = await s.execute(delete(SavedReply).where(SavedReply.id == reply_id, SavedReply.slack_team == workspace))
    return bool(getattr(result, "rowcount", 0))


async def count_use(s: AsyncSession, reply_id: int) -> None:
    """One more reply sent with it."""
    await s.execute(update(SavedReply).where(SavedReply.id == reply_id).values(uses=SavedReply.uses + 1))
