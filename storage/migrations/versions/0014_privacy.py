"""privacy: erasure audit records and the hashed ids of erased people kept out of campaigns

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 14:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'erasures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('requested_by', sa.String(length=255), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('identity_hashes', sa.JSON(), nullable=False),
        sa.Column('scope', sa.JSON(), nullable=True),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('contact_ids', sa.JSON(), nullable=False),
        sa.Column('conversation_ids', sa.JSON(), nullable=False),
        sa.Column('threads', sa.JSON(), nullable=False),
        sa.Column('counts', sa.JSON(), nullable=False),
        sa.Column('slack_refused', sa.JSON(), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures')),
    )
    op.create_index(op.f('ix_erasures_requested_at'), 'erasures', ['requested_at'], unique=False)
    op.create_index(op.f('ix_erasures_state'), 'erasures', ['state'], unique=False)
    op.create_table(
        'suppressed_identities',
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('hash', name=op.f('pk_suppressed_identities')),
    )


def downgrade() -> None:
    op.drop_table('suppressed_identities')
    op.drop_index(op.f('ix_erasures_state'), table_name='erasures')
    op.drop_index(op.f('ix_erasures_requested_at'), table_name='erasures')
    op.drop_table('erasures')
