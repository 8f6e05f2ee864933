"""saved replies: each workspace's library of replies staff send from a thread, with their use counts

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 15:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'saved_replies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('slack_team', sa.String(length=32), nullable=False),
        sa.Column('phone_number_id', sa.String(length=64), nullable=True),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('uses', sa.Integer(), server_default='0', nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_saved_replies')),
    )
    op.create_index(op.f('ix_saved_replies_slack_team'), 'saved_replies', ['slack_team'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_saved_replies_slack_team'), table_name='saved_replies')
    op.drop_table('saved_replies')
