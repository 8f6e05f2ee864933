"""auto replies: away messages the bridge owes customers who write while their number is closed, once each

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 16:50:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'auto_replies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('slack_team', sa.String(length=32), server_default='default', nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('period_key', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=255), nullable=True),
        sa.Column('wamid', sa.String(length=255), nullable=True),
        sa.Column('message_id', sa.Integer(), nullable=True),
        sa.Column('trigger_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ondelete='CASCADE',
                                name=op.f('fk_auto_replies_conversation_id_conversations')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_replies')),
        sa.UniqueConstraint('conversation_id', 'kind', 'period_key', name=op.f('uq_auto_replies_conversation_id')),
    )
    op.create_index(op.f('ix_auto_replies_conversation_id'), 'auto_replies', ['conversation_id'], unique=False)
    op.create_index('ix_auto_replies_state', 'auto_replies', ['state', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_auto_replies_state', table_name='auto_replies')
    op.drop_index(op.f('ix_auto_replies_conversation_id'), table_name='auto_replies')
    op.drop_table('auto_replies')
