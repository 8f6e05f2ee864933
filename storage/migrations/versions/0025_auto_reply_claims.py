"""auto reply claims: the process sending an away message or survey (owner and fence) and when its request left

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 20:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0025'
down_revision: str | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('auto_replies') as batch:
        batch.add_column(sa.Column('owner_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('fence', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=True))
    # A row left `sending` before claims were recorded may have reached Meta: it counts as attempted, so the
    # sender's recovery reports it instead of sending it again.
    op.execute("UPDATE auto_replies SET attempted_at = updated_at WHERE state = 'sending'")


def downgrade() -> None:
    with op.batch_alter_table('auto_replies') as batch:
        batch.drop_column('attempted_at')
        batch.drop_column('fence')
        batch.drop_column('owner_id')
