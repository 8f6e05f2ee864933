"""Audience batches land intact (COPY on PostgreSQL, INSERT on SQLite), duplicates dropped across batches."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from scheduler.campaigns.audience_store import insert_members
from storage.db import make_sessionmaker
from storage.models import AudienceMember
from tests.test_audience import _campaign


async def test_batches_keep_every_field_and_drop_duplicates(db_url: str) -> None:
    engine, cid = await _campaign(db_url)
    sessions = make_sessionmaker(engine)  # type: ignore[arg-type]
    odd = {"name": 'Zoë "Z" \\ 🙂\ttab', "course": "", "note": "{not json}"}
    first: list[tuple[str, dict[str, Any]]] = [("919800000001", odd), ("919800000002", {"name": "Asha"})]
    second: list[tuple[str, dict[str, Any]]] = [("919800000002", {"name": "again"}), ("919800000003", {})]
    for batch in (first, second):
        async with sessions() as s, s.begin():
            await insert_members(s, cid, batch)
    async with sessions() as s, s.begin():  # a batch rolled back leaves nothing behind
        await insert_members(s, cid, [("919800000004", {"name": "gone"})])
        await s.rollback()
    async with sessions() as s:
        stored = {m.wa_id: m.fields for m in (await s.scalars(
            select(AudienceMember).where(AudienceMember.campaign_id == cid))).all()}
    assert stored == {"919800000001": odd, "919800000002": {"name": "Asha"}, "919800000003": {}}
    await engine.dispose()  # type: ignore[attr-defined]
