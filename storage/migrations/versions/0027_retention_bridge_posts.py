"""retention of the bridge's own posts: each message's posts and uploaded files kept with it, and redactions that
only delete files (media past `retention.media_days`); messages whose outbox item is still kept get their record

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 19:45:00.000000
"""
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0027'
down_revision: str | None = '0026'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


BATCH = 1000


def _made(parts: dict[str, Any]) -> dict[str, list[str]]:
    """What the bridge posted for a message, from its outbox item's parts (as storage.redactions.bridge_posts
    read them when this was written)."""
    posts: list[str] = []
    files: list[str] = []
    for part, value in sorted(parts.items(), key=lambda kv: (not kv[0].isdigit(), kv[0].zfill(6))):
        value = str(value)
        if part == "file" and value.startswith("F"):
            files.append(value)
        elif (part.isdigit() or part == "file") and value not in posts:
            posts.append(value)
    return {"posts": posts, "files": files}


def _backfill() -> None:
    """Messages whose outbox item is still kept get their record now, before that item ages out."""
    conn = op.get_bind()
    outbox = sa.table('slack_outbox', sa.column('id', sa.Integer), sa.column('dedupe_key', sa.String),
                      sa.column('result', sa.JSON))
    messages = sa.table('messages', sa.column('id', sa.Integer), sa.column('slack_posts', sa.JSON))
    after = 0
    while True:
        rows = conn.execute(sa.select(outbox.c.id, outbox.c.dedupe_key, outbox.c.result)
                            .where(outbox.c.id > after, outbox.c.dedupe_key.like('msg:%'))
                            .order_by(outbox.c.id).limit(BATCH)).all()
        for row in rows:
            result = row.result if isinstance(row.result, dict) else json.loads(row.result or 'null') or {}
            made = _made(dict(result.get('parts') or {}))
            key = row.dedupe_key[len('msg:'):]
            if (made['posts'] or made['files']) and key.isdigit():
                conn.execute(sa.update(messages).where(messages.c.id == int(key)).values(slack_posts=made))
        if len(rows) < BATCH:
            return
        after = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('slack_posts', sa.JSON(), nullable=True))
    with op.batch_alter_table('slack_redactions') as batch:
        batch.add_column(sa.Column('files_only', sa.Boolean(), nullable=False, server_default=sa.false()))
    _backfill()


def downgrade() -> None:
    with op.batch_alter_table('slack_redactions') as batch:
        batch.drop_column('files_only')
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('slack_posts')
