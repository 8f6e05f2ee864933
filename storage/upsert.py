"""Insert-or-ignore on a unique key, the same on SQLite and PostgreSQL.

SQLAlchemy 2.0 gives the dialects' `insert(...).on_conflict_do_nothing()` no cache key, so every call would be
compiled afresh (about a millisecond of CPU each on the hot webhook path). The statement is built once per
(dialect, table, column set, conflict key) as a typed `text()` construct instead, which caches normally.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Enum, Row, String, Table, Text, TextClause, TextualSelect, TypeDecorator, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from storage.deferred import Write

_STATEMENTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], TextualSelect] = {}


def with_defaults(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Fill the columns' Python-side defaults, as an ORM insert would."""
    out = dict(values)
    for column in table.columns:
        if column.name in out or column.default is None or column.primary_key:
            continue
        default: Any = column.default
        if default.is_scalar:
            out[column.name] = default.arg
        elif default.is_callable:
            out[column.name] = default.arg(None)
    return out


def _statement(dialect: Any, table: Table, columns: tuple[str, ...], conflict: tuple[str, ...]) -> TextualSelect:
    key = (dialect.name, table.name, columns, conflict)
    cached = _STATEMENTS.get(key)
    if cached is not None:
        return cached
    quote = dialect.identifier_preparer.quote
    pk = next(iter(table.primary_key))
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)}) "
        f"ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING "
        f"RETURNING {quote(pk.name)}"
    )
    stmt = text(sql).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns)).columns(pk)
    _STATEMENTS[key] = stmt
    return stmt


async def insert_ignore(
    session: AsyncSession, model: type[DeclarativeBase], values: dict[str, Any], conflict: list[str]
) -> Any | None:
    """Insert one row unless its unique key already exists; returns the new primary key or None."""
    table: Table = model.__table__  # type: ignore[assignment]
    row_values = with_defaults(table, values)
    columns = tuple(sorted(row_values))
    stmt = _statement(session.bind.dialect, table, columns, tuple(conflict))
    result = await session.execute(stmt, row_values)
    row = result.first()
    return None if row is None else row[0]


def insert_ignore_write(dialect: Any, model: type[DeclarativeBase], values: dict[str, Any],
                        conflict: list[str]) -> Write:
    """`insert_ignore` as a write to run later in another transaction (e.g. with an outbox item's outcome); the
    statement is the cached template, so the writes of many items run as one executemany."""
    table: Table = model.__table__  # type: ignore[assignment]
    row_values = with_defaults(table, values)
    return Write(_statement(dialect, table, tuple(sorted(row_values)), tuple(conflict)), row_values)


async def insert_ignore_many(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert rows (all with the same keys) unless their unique key exists, in the order given; returns the
    `returning` columns of the rows inserted.

    The rows go as parameters of one single-row statement, which SQLAlchemy sends as multi-row INSERTs
    ("insertmanyvalues"): a literal `.values(rows)` would be compiled afresh for every batch, about 18 ms of
    CPU per 200 rows against 2 ms, and the event loop that answers Meta would wait for it.
    """
    if not rows:
        return []
    name = session.bind.dialect.name
    stmt: Any = (postgresql.insert(table) if name == "postgresql" else sqlite.insert(table))
    stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    if returning:
        stmt = stmt.returning(*(table.c[c] for c in returning))
        return list((await session.execute(stmt, list(rows))).all())
    await session.execute(stmt, list(rows))
    return []


_ARRAY_STATEMENTS: dict[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], TextClause] = {}


def _arrays_statement(table: Table, columns: tuple[str, ...], conflict: tuple[str, ...],
                      returning: tuple[str, ...]) -> TextClause:
    """PostgreSQL: `INSERT … SELECT … FROM unnest(:c1, :c2, …) WITH ORDINALITY … ORDER BY n ON CONFLICT DO
    NOTHING`: each column's values as one array parameter, the rows inserted in the order given."""
    key = (table.name, columns, conflict, returning)
    cached = _ARRAY_STATEMENTS.get(key)
    if cached is not None:
        return cached
    quote = postgresql.dialect().identifier_preparer.quote
    # JSON values travel as text (asyncpg has no codec for an array of json) and are cast back.
    picked = [f"CAST(r.{quote(c)} AS JSON)" if isinstance(table.c[c].type, JSON) else f"r.{quote(c)}"
              for c in columns]
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"SELECT {', '.join(picked)} FROM unnest({', '.join(':' + c for c in columns)}) WITH ORDINALITY "
           f"AS r({', '.join(quote(c) for c in columns)}, wabridge_n) ORDER BY r.wabridge_n "
           f"ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING")
    if returning:
        sql += f" RETURNING {', '.join(quote(c) for c in returning)}"
    arrays = [bindparam(c, type_=postgresql.ARRAY(_element_type(table, c))) for c in columns]
    statement = _ARRAY_STATEMENTS[key] = text(sql).bindparams(*arrays)
    return statement


def _element_type(table: Table, column: str) -> Any:
    """The array's element type for a column. Strings go without their length: an array parameter is cast
    explicitly, and an explicit cast to varchar(n) cuts a longer value short where the INSERT refuses it."""
    kind = table.c[column].type
    if isinstance(kind, JSON):
        return Text()
    if isinstance(kind, Enum) or (isinstance(kind, TypeDecorator) and isinstance(kind.impl, String)):
        raise TypeError(f"{table.name}.{column}: insert_ignore_arrays takes no enum or decorated string column")
    if isinstance(kind, String):
        return Text()
    return kind


async def insert_ignore_arrays(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """`insert_ignore_many` on PostgreSQL with each column's values as one array (`unnest`): one statement text
    whatever the number of rows, and nothing rendered or bound per row (a batch of 200 statuses or posts took
    about half the CPU). Rows carry every column to set (no Python-side default is filled in; server defaults
    apply), all the same keys."""
    if not rows:
        return []
    columns = tuple(rows[0])
    params: dict[str, list[Any]] = {c: [] for c in columns}
    for row in rows:
        for c in columns:
            params[c].append(row[c])
    for c in columns:
        if isinstance(table.c[c].type, JSON):  # as the JSON column stores it: None as JSON null
            params[c] = [json.dumps(v) for v in params[c]]
    result = await session.execute(_arrays_statement(table, columns, tuple(conflict), tuple(returning)), params)
    return list(result.all()) if returning else []
