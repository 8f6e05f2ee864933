"""Insert-or-ignore with a column's values as one array (PostgreSQL): the rows stored are those the multi-row
INSERT stores, in the order given, once each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Table, select
from sqlalchemy.exc import DBAPIError

from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import MessageStatus, SlackOutbox
from storage.upsert import insert_ignore_arrays, insert_ignore_many

STATUSES: Table = MessageStatus.__table__  # type: ignore[assignment]
OUTBOX: Table = SlackOutbox.__table__  # type: ignore[assignment]
AT = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _statuses(prefix: str) -> list[dict[str, Any]]:
    return [
        {"wamid": f"{prefix}.1", "status": "sent", "wa_timestamp": AT, "recipient_id": "919800000001",
         "error_code": None, "error_title": None, "pricing": None, "created_at": AT},
        {"wamid": f"{prefix}.1", "status": "failed", "wa_timestamp": AT + timedelta(seconds=1),
         "recipient_id": "919800000001", "error_code": 131026, "error_title": "Message undeliverable",
         "pricing": {"billable": False, "category": "marketing"}, "created_at": AT},
        {"wamid": f"{prefix}.1", "status": "sent", "wa_timestamp": AT, "recipient_id": None,  # stored already
         "error_code": None, "error_title": None, "pricing": None, "created_at": AT},
        {"wamid": f"{prefix}.2", "status": "read", "wa_timestamp": AT, "recipient_id": "user.Ab9",
         "error_code": None, "error_title": "ü ✓", "pricing": {"nested": [1, None, "x"]}, "created_at": AT},
    ]


def _posts(prefix: str) -> list[dict[str, Any]]:
    return [{"dedupe_key": f"{prefix}:{i}", "thread_key": f"conv:{i % 2}", "kind": "status",
             "payload": {"message_id": i, "status": "read", "conversation_id": None}, "order_ts": AT,
             "conversation_id": None, "attempts": 0, "created_at": AT, "slack_team": "T0ARRAYS"}
            for i in (3, 1, 2, 1)]


def _stored(rows: list[Any], key: str, prefix: str) -> list[tuple[Any, ...]]:
    """The rows in id order, without their id and with the prefix taken out of their key."""
    out = []
    for row in sorted(rows, key=lambda r: r.id):
        values = {k: v for k, v in row._mapping.items() if k != "id"}
        values[key] = str(values[key]).replace(prefix, "")
        out.append(tuple(sorted(values.items())))
    return out


async def test_arrays_store_what_the_multi_row_insert_stores(pg_url: str) -> None:
    await migrate(pg_url)
    engine = make_engine(pg_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as s, s.begin():
            many = await insert_ignore_many(s, STATUSES, _statuses("wamid.many"), ["wamid", "status"],
                                            returning=["wamid", "status"])
            arrays = await insert_ignore_arrays(s, STATUSES, _statuses("wamid.arrays"), ["wamid", "status"],
                                                returning=["wamid", "status"])
            await insert_ignore_many(s, OUTBOX, _posts("many"), ["dedupe_key"])
            assert await insert_ignore_arrays(s, OUTBOX, _posts("arrays"), ["dedupe_key"]) == []
        # The rows added, in the order given; the one already stored (same wamid and status) is left alone.
        assert [(w.replace("wamid.arrays", ""), st) for w, st in arrays] == \
            [(w.replace("wamid.many", ""), st) for w, st in many] == [(".1", "sent"), (".1", "failed"), (".2", "read")]
        async with sessions() as s:
            found = (await s.execute(select(STATUSES))).all()
            posts = (await s.execute(select(OUTBOX))).all()
        assert _stored([r for r in found if r.wamid.startswith("wamid.arrays")], "wamid", "wamid.arrays") == \
            _stored([r for r in found if r.wamid.startswith("wamid.many")], "wamid", "wamid.many")
        assert _stored([p for p in posts if p.dedupe_key.startswith("arrays")], "dedupe_key", "arrays") == \
            _stored([p for p in posts if p.dedupe_key.startswith("many")], "dedupe_key", "many")
        assert len(posts) == 6 and {p.fence for p in posts} == {0}  # the column's default, as the INSERT's
        async with sessions() as s, s.begin():  # the same rows again: nothing new
            assert await insert_ignore_arrays(s, STATUSES, _statuses("wamid.arrays"), ["wamid", "status"],
                                              returning=["wamid", "status"]) == []
    finally:
        await engine.dispose()


async def test_a_value_longer_than_its_column_is_refused_not_cut_short(pg_url: str) -> None:
    await migrate(pg_url)
    engine = make_engine(pg_url)
    try:
        row = {**_statuses("wamid.long")[0], "wamid": "wamid." + "X" * 300}  # the column holds 255
        with pytest.raises(DBAPIError, match="too long"):
            async with make_sessionmaker(engine)() as s, s.begin():
                await insert_ignore_arrays(s, STATUSES, [row], ["wamid", "status"])
    finally:
        await engine.dispose()
