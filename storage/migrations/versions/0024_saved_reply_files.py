"""saved reply files: a saved reply may carry an image or document (the Slack file uploaded in its editor)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 17:45:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0024'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('saved_replies') as batch:
        batch.add_column(sa.Column('attachment', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('saved_replies') as batch:
        batch.drop_column('attachment')
