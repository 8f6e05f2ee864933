"""search: full-text search over messages for `/wabridge find`

PostgreSQL: a generated `search_tsv` column (to_tsvector('simple', text)) with a GIN index; the column follows
every insert, edit and redaction by itself. SQLite: an FTS5 index (`messages_fts`, external content) kept by
triggers; where SQLite lacks FTS5 nothing is created and search reads the text with LIKE.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 17:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 'simple' lowercases and splits words without stemming: it suits names, numbers and mixed languages alike.
SQLITE_TRIGGERS = (
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
)


def _has_fts5(bind: sa.engine.Connection) -> bool:
    try:
        bind.exec_driver_sql("CREATE VIRTUAL TABLE temp.wabridge_fts5_probe USING fts5(x)")
    except sa.exc.DBAPIError:
        return False
    bind.exec_driver_sql("DROP TABLE temp.wabridge_fts5_probe")
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute("ALTER TABLE messages ADD COLUMN search_tsv tsvector "
                   "GENERATED ALWAYS AS (to_tsvector('simple', coalesce(text, ''))) STORED")
        op.execute("CREATE INDEX ix_messages_search_tsv ON messages USING gin (search_tsv)")
    elif bind.dialect.name == 'sqlite' and _has_fts5(bind):
        op.execute("CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='id', "
                   "tokenize='unicode61 remove_diacritics 2')")
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
        op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")  # the messages stored so far


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute("DROP INDEX IF EXISTS ix_messages_search_tsv")
        op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS search_tsv")
    elif bind.dialect.name == 'sqlite':
        for name in ('messages_fts_insert', 'messages_fts_delete', 'messages_fts_update'):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
