"""hardening: Slack interactions acted on once, persistent counts of Meta's throughput refusals

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-27 17:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('slack_actions',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_slack_actions'))
    )
    op.create_table('send_error_counts',
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.Integer(), nullable=False),
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('channel_id', 'code', 'hour', name=op.f('pk_send_error_counts'))
    )


def downgrade() -> None:
    op.drop_table('send_error_counts')
    op.drop_table('slack_actions')
