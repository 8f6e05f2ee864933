"""Writing a batch of audience rows: ``COPY`` into PostgreSQL, one multi-row INSERT elsewhere; duplicates
(campaign, wa_id) are dropped by the unique key either way."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AudienceMember
from storage.upsert import insert_ignore_many

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# COPY cannot skip conflicting rows: it fills a per-connection scratch table emptied at every commit, and
# one INSERT … SELECT moves the batch over, skipping duplicates.
_SCRATCH = "CREATE TEMP TABLE IF NOT EXISTS audience_load (wa_id text, fields text) ON COMMIT DELETE ROWS"
_MOVE = (
    "INSERT INTO audience_members (campaign_id, wa_id, fields) "
    "SELECT $1, wa_id, fields::json FROM audience_load ON CONFLICT (campaign_id, wa_id) DO NOTHING"
)


async def insert_members(
    session: AsyncSession, campaign_id: int, rows: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """Add (wa_id, fields) rows to campaign_id's audience inside the session's transaction."""
    if not rows:
        return
    if session.bind.dialect.name == "postgresql" and session.bind.dialect.driver == "asyncpg":
        # Through SQLAlchemy first: that opens the transaction the COPY and the move then run in.
        await session.execute(text(_SCRATCH))
        raw = await (await session.connection()).get_raw_connection()
        conn: Any = raw.driver_connection
        await conn.copy_records_to_table(
            "audience_load", records=[(wa_id, _dumps(fields)) for wa_id, fields in rows], columns=["wa_id", "fields"])
        await conn.execute(_MOVE, campaign_id)
        return
    table: Table = AudienceMember.__table__  # type: ignore[assignment]
    await insert_ignore_many(session, table, [{"campaign_id": campaign_id, "wa_id": wa_id, "fields": fields}
                                              for wa_id, fields in rows], ["campaign_id", "wa_id"])
