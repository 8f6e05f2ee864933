"""Stored conversations for the managers' view tests: written through the repository into a real database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import repository as repo


@dataclass(frozen=True)
class Msg:
    """One stored message, `minutes` after the scenario's start."""

    minutes: float
    source: str  # customer | phone_app | slack | campaign | api
    slack_user: str | None = None
    note: bool = False
    status: str | None = None


async def seed(sessions: async_sessionmaker[AsyncSession], channel_id: int, wa_id: str, name: str | None,
               start: datetime, messages: Sequence[Msg], *, thread: tuple[str, str] | None = None) -> int:
    """A conversation with its messages; returns the conversation id."""
    async with sessions() as s, s.begin():
        contact = await repo.contact_for(s, wa_id, name)
        conv = await repo.conversation_for(s, channel_id, contact.id, thread[0] if thread else None)
        if thread:
            conv.slack_thread_ts = thread[1]
        for i, m in enumerate(messages):
            at = start + timedelta(minutes=m.minutes)
            values: dict[str, Any] = {
                "wamid": None if m.note else f"wamid.{wa_id}.{i}.{at.timestamp()}", "conversation_id": conv.id,
                "direction": "inbound" if m.source == "customer" else "outbound", "source": m.source,
                "type": "template" if m.source == "campaign" else "text", "text": f"message {i}",
                "slack_user": m.slack_user, "is_note": m.note, "status": m.status, "wa_timestamp": at}
            await repo.insert_message(s, values)
            if m.source == "customer":
                await repo.touch_window(s, conv.id, at)
        return conv.id
