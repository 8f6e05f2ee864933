"""The webhook worker's claim on PostgreSQL finds the rows it picked by their address, whatever the statistics say.

A prepared statement runs a generic plan; statistics taken while the table was empty once made that plan walk every
pending row of the lane against the picked ids (300-900 ms a claim with 10,000 deliveries waiting)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from storage import webhook_logs
from storage.db import make_engine, migrate

pytestmark = pytest.mark.postgres

BACKLOG = 3000


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [node for child in plan.get("Plans", []) for node in _nodes(child)]


@pytest.mark.parametrize("round_robin", [False, True])
async def test_the_claim_finds_its_picked_rows_by_address_with_statistics_of_an_empty_table(
        pg_url: str, round_robin: bool) -> None:
    await migrate(pg_url)
    engine = make_engine(pg_url)
    try:
        statement = webhook_logs._build_claim("live", round_robin, True, True)
        compiled = statement.compile(dialect=engine.dialect)
        now = datetime.now(UTC)
        values = {**compiled.params, "now": now, "until": now + timedelta(minutes=1), "limit": 100, "owner": 7}
        assert compiled.positiontup is not None
        arguments = ", ".join(_literal(values[name]) for name in compiled.positiontup)
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE webhook_logs"))  # while empty, as after the first migration
            await conn.execute(text(
                "INSERT INTO webhook_logs (raw_body, event_type, source, lane, attempts, fence, received_at) "
                "SELECT convert_to('{}', 'UTF8'), 'messages', 'w' || (g % 3), 'live', 0, 0, now() "
                f"FROM generate_series(1, {BACKLOG}) g"))
            await conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            await conn.exec_driver_sql(f"PREPARE claim AS {compiled}")
            explained = (await conn.exec_driver_sql(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim({arguments})")).scalar_one()
            await conn.rollback()
    finally:
        await engine.dispose()
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    assert plan["Node Type"] == "ModifyTable" and plan["Actual Rows"] == 100
    updated = [node for node in _nodes(plan)[1:]
               if node.get("Relation Name") == "webhook_logs" and node.get("Parent Relationship") != "InitPlan"
               and node.get("Alias") == "webhook_logs"]
    assert [node["Node Type"] for node in updated] == ["Tid Scan"], plan
    assert updated[0]["Actual Loops"] == 1 and updated[0]["Actual Rows"] == 100
    assert not any("Join Filter" in node for node in _nodes(plan)), plan
