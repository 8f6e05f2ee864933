"""slack redactions: Slack posts of messages the retention pass deleted, owed a redaction

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 17:15:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'slack_redactions',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('slack_team', sa.String(length=32), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('ts', sa.String(length=32), nullable=False),
        sa.Column('conversation_id', sa.Integer(), nullable=True),
        sa.Column('parent', sa.Boolean(), nullable=False),
        sa.Column('files', sa.JSON(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('outcome', sa.String(length=100), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_redactions')),
        sa.UniqueConstraint('channel', 'ts', name=op.f('uq_slack_redactions_channel')),
    )
    op.create_index('ix_slack_redactions_pending', 'slack_redactions', ['done_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_slack_redactions_pending', table_name='slack_redactions')
    op.drop_table('slack_redactions')
