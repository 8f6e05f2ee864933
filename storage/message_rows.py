"""Store a batch of messages and owe Slack each new one's post, in one statement on PostgreSQL.

The rows are those `meta_events._store_message` writes for a plain message; each new message gets the
`MessagePost` outbox row `outbox_kinds.outbox_row` makes (its thread, ordered by WhatsApp's time), in the
same transaction. PostgreSQL takes the batch as arrays (`unnest`): one statement text whatever the batch's
size, no per-row parameter work in SQLAlchemy, the posts written by the same round trip (a data-modifying
CTE). Elsewhere (SQLite) two multi-row inserts do the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Table, Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.model_base import UTCDateTime
from storage.models import Message, SlackOutbox
from storage.outbox_kinds import MessagePost, outbox_row
from storage.upsert import insert_ignore_many

# The columns each row gives (the others take the plain message's constants: no campaign, not history, not a
# note, no statuses yet).
COLUMNS = ("wamid", "conversation_id", "direction", "source", "type", "text", "media_id", "media_mime", "content",
           "wa_timestamp")

_PG_STORE = text(
    "WITH new AS ("
    " INSERT INTO messages (wamid, conversation_id, direction, source, type, text, media_id, media_mime, content,"
    " wa_timestamp, status_history, campaign_id, is_history, is_note, created_at)"
    " SELECT r.wamid, r.conversation_id, r.direction, r.source, r.type, r.text, r.media_id, r.media_mime,"
    " CAST(r.content AS JSON), r.wa_timestamp, CAST('[]' AS JSON), NULL, false, false, :now"
    " FROM unnest(:wamids, :conversation_ids, :directions, :sources, :types, :texts, :media_ids, :media_mimes,"
    " :contents, :wa_timestamps) AS r(wamid, conversation_id, direction, source, type, text, media_id, media_mime,"
    " content, wa_timestamp) ORDER BY r.wamid"
    " ON CONFLICT (wamid) DO NOTHING RETURNING id, wamid, conversation_id, wa_timestamp"
    "), posts AS ("
    " INSERT INTO slack_outbox (dedupe_key, thread_key, conversation_id, slack_team, kind, payload, order_ts,"
    " attempts, created_at, fence)"
    " SELECT 'msg:' || new.id, 'conv:' || new.conversation_id, new.conversation_id, :team, :kind,"
    " CAST('{\"message_id\": ' || new.id || '}' AS JSON), new.wa_timestamp, 0, :now, 0 FROM new ORDER BY new.id"
    " ON CONFLICT (dedupe_key) DO NOTHING"
    ") SELECT wamid, id FROM new"
).bindparams(
    bindparam("wamids", type_=ARRAY(String)), bindparam("conversation_ids", type_=ARRAY(Integer)),
    bindparam("directions", type_=ARRAY(String)), bindparam("sources", type_=ARRAY(String)),
    bindparam("types", type_=ARRAY(String)), bindparam("texts", type_=ARRAY(Text)),
    bindparam("media_ids", type_=ARRAY(String)), bindparam("media_mimes", type_=ARRAY(String)),
    bindparam("contents", type_=ARRAY(Text)), bindparam("wa_timestamps", type_=ARRAY(UTCDateTime())),
    bindparam("now", type_=UTCDateTime()), bindparam("team", type_=String), bindparam("kind", type_=String))


async def store_with_posts(session: AsyncSession, rows: Sequence[dict[str, Any]], now: datetime) -> dict[str, int]:
    """Insert rows (COLUMNS each, distinct wamids) unless their wamid is stored, and owe
    each new message its Slack post; returns wamid -> id of the new messages."""
    if not rows:
        return {}
    rows = sorted(rows, key=lambda r: r["wamid"])
    if session.bind.dialect.name == "postgresql":
        params: dict[str, Any] = {
            "wamids": [r["wamid"] for r in rows], "conversation_ids": [r["conversation_id"] for r in rows],
            "directions": [_value(r["direction"]) for r in rows], "sources": [_value(r["source"]) for r in rows],
            "types": [r["type"] for r in rows], "texts": [r["text"] for r in rows],
            "media_ids": [r["media_id"] for r in rows], "media_mimes": [r["media_mime"] for r in rows],
            "contents": [None if r["content"] is None else json.dumps(r["content"]) for r in rows],
            "wa_timestamps": [r["wa_timestamp"] for r in rows]}
        params.update(now=now, team=DEFAULT_WORKSPACE, kind=MessagePost.KIND)
        return {wamid: message_id for wamid, message_id in (await session.execute(_PG_STORE, params)).tuples()}
    messages: Table = Message.__table__  # type: ignore[assignment]
    new = {w: i for w, i in await insert_ignore_many(session, messages, [
        {**r, "status_history": [], "campaign_id": None, "is_history": False, "is_note": False, "created_at": now}
        for r in rows], ["wamid"], returning=["wamid", "id"])}
    by_wamid = {r["wamid"]: r for r in rows}
    outbox: Table = SlackOutbox.__table__  # type: ignore[assignment]
    await insert_ignore_many(session, outbox, [
        outbox_row(MessagePost(message_id, by_wamid[w]["conversation_id"]), dedupe_key=f"msg:{message_id}",
                   order_ts=by_wamid[w]["wa_timestamp"])
        for w, message_id in sorted(new.items(), key=lambda kv: kv[1])], ["dedupe_key"])
    return new


def _value(member: Any) -> Any:
    """An enum column's stored value (they are stored as their members' values)."""
    return getattr(member, "value", member)
