"""webhook sources: each stored delivery names the workspace it belongs to, so live work is taken round robin

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 17:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Deliveries stored before the upgrade share the empty source: they take one turn together.
    with op.batch_alter_table('webhook_logs') as batch:
        batch.add_column(sa.Column('source', sa.String(length=64), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('webhook_logs') as batch:
        batch.drop_column('source')
