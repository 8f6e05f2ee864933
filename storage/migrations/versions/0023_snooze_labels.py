"""snooze and labels: a conversation's snooze time, its labels, and a detail on each audit row

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 17:15:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('conversations', sa.Column('snoozed_until', sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f('ix_conversations_snoozed_until'), 'conversations', ['snoozed_until'], unique=False)
    op.add_column('conversation_events', sa.Column('detail', sa.String(length=255), nullable=True))
    op.create_table(
        'conversation_labels',
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('label', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'],
                                name=op.f('fk_conversation_labels_conversation_id_conversations'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('conversation_id', 'label', name=op.f('pk_conversation_labels')),
    )
    op.create_index(op.f('ix_conversation_labels_label'), 'conversation_labels', ['label'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_conversation_labels_label'), table_name='conversation_labels')
    op.drop_table('conversation_labels')
    with op.batch_alter_table('conversation_events') as batch:
        batch.drop_column('detail')
    op.drop_index(op.f('ix_conversations_snoozed_until'), table_name='conversations')
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('snoozed_until')
