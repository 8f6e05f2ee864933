"""`column IN (:name)` for statements built once and run with any number of values."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY


def among(column: ColumnElement[Any], name: str, *, postgres: bool) -> ColumnElement[bool]:
    """On PostgreSQL `column = ANY(:name)`, one array parameter: the statement's text, and so its prepared
    statement, is the same whatever the number of values and nothing is rendered per value. Elsewhere an
    expanding `IN`."""
    if postgres:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))
