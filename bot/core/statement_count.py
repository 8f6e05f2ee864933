"""Count the SQL statements a process sends, for /metrics: statements per delivery is the worker's cost."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.core.metrics import Metrics


def count_statements(engine: AsyncEngine, metrics: Metrics) -> None:
    """Increment metrics.db_statements for every statement engine executes."""
    counter = metrics.db_statements

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        counter.inc()
