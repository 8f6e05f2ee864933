"""search stems: `/wabridge find refunds` finds "refund", `booking` finds "booked"

PostgreSQL: `search_tsv` becomes the message's words as written (the `simple` configuration, weight A) together
with their English stems (the `english` configuration, default weight D), in the one generated column under the
one GIN index. A lexeme both give is stored once, so the index grows only by the stems that differ from the words.
A word is searched as written (by prefix) OR by its stem, so Hindi and Hinglish words, which the English stemmer
does not know, are still found as typed; a quoted phrase asks for weight A only: its words exactly as written.
The column is re-added (PostgreSQL 15 cannot change a generated column's expression), which rewrites `messages`
once under an exclusive lock.

SQLite: a second FTS5 index over the same text with the porter stemmer (`messages_fts_stem`, kept by triggers like
`messages_fts`, which stays as written for prefixes and phrases); filled from the messages stored so far. Where
SQLite lacks FTS5 nothing is created and search reads the text with LIKE, without stems.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 19:55:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0026'
down_revision: str | None = '0025'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORDS_AND_STEMS = ("setweight(to_tsvector('simple', coalesce(text, '')), 'A') || "
                   "to_tsvector('english', coalesce(text, ''))")
WORDS_ONLY = "to_tsvector('simple', coalesce(text, ''))"  # as 0018 made it

SQLITE_TRIGGERS = (
    "CREATE TRIGGER messages_fts_stem_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts_stem(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER messages_fts_stem_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts_stem(messages_fts_stem, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER messages_fts_stem_update AFTER UPDATE OF text ON messages BEGIN "
    "INSERT INTO messages_fts_stem(messages_fts_stem, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO messages_fts_stem(rowid, text) VALUES (new.id, new.text); END",
)


def _search_column(expression: str) -> None:
    op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS search_tsv")  # its index goes with it
    op.execute(f"ALTER TABLE messages ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS ({expression}) STORED")
    op.execute("CREATE INDEX ix_messages_search_tsv ON messages USING gin (search_tsv)")


def _has_plain_fts(bind: sa.engine.Connection) -> bool:
    """Whether 0018 made `messages_fts` (it does only where SQLite has FTS5)."""
    return bind.exec_driver_sql(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'").scalar() == 1


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        _search_column(WORDS_AND_STEMS)
    elif bind.dialect.name == 'sqlite' and _has_plain_fts(bind):
        op.execute("CREATE VIRTUAL TABLE messages_fts_stem USING fts5(text, content='messages', content_rowid='id', "
                   "tokenize='porter unicode61 remove_diacritics 2')")
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
        op.execute("INSERT INTO messages_fts_stem(messages_fts_stem) VALUES ('rebuild')")  # the messages so far


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        _search_column(WORDS_ONLY)
    elif bind.dialect.name == 'sqlite':
        for name in ('messages_fts_stem_insert', 'messages_fts_stem_delete', 'messages_fts_stem_update'):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS messages_fts_stem")
