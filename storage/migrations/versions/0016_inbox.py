"""inbox: each conversation's owner and open/resolved status, and the audit of who changed them when

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 16:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('owner', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('inbox_status', sa.String(length=16), server_default='open', nullable=False))
        batch.add_column(sa.Column('status_by', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('status_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'conversation_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('slack_team', sa.String(length=32), server_default='default', nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('assignee', sa.String(length=64), nullable=True),
        sa.Column('dedupe_key', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'],
                                name=op.f('fk_conversation_events_conversation_id_conversations'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_conversation_events')),
        sa.UniqueConstraint('dedupe_key', name=op.f('uq_conversation_events_dedupe_key')),
    )
    op.create_index(op.f('ix_conversation_events_conversation_id'), 'conversation_events', ['conversation_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_conversation_events_conversation_id'), table_name='conversation_events')
    op.drop_table('conversation_events')
    with op.batch_alter_table('conversations') as batch:
        for column in ('status_at', 'status_by', 'inbox_status', 'owner'):
            batch.drop_column(column)
