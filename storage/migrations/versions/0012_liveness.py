"""liveness: a heartbeat row per process; queue rows carry their claimant and a fence token

Revision ID: 0012
Revises: 0003
Create Date: 2026-11-27 17:45:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUES = ('webhook_logs', 'slack_outbox', 'campaign_recipients')


def upgrade() -> None:
    op.create_table(
        'workers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_workers')),
    )
    op.create_index(op.f('ix_workers_heartbeat_at'), 'workers', ['heartbeat_at'], unique=False)
    for table in QUEUES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('owner_id', sa.Integer(), nullable=True))
            batch.add_column(sa.Column('fence', sa.Integer(), server_default='0', nullable=False))
        op.create_index(op.f(f'ix_{table}_owner_id'), table, ['owner_id'], unique=False)
    with op.batch_alter_table('campaign_recipients') as batch:
        batch.add_column(sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('campaign_recipients') as batch:
        batch.drop_column('attempted_at')
    for table in QUEUES:
        op.drop_index(op.f(f'ix_{table}_owner_id'), table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column('fence')
            batch.drop_column('owner_id')
    op.drop_index(op.f('ix_workers_heartbeat_at'), table_name='workers')
    op.drop_table('workers')
