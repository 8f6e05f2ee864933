"""webhook lanes: live/bulk lane on webhook_logs, a partial index for claims, slack_events by age

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 17:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must match storage.lanes: the delivery types a person sees in a Slack thread.
_LIVE_TYPES = ("message", "smb_message_echo", "mixed")


def upgrade() -> None:
    with op.batch_alter_table('webhook_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lane', sa.String(length=8), server_default='live', nullable=False))
    # Deliveries still waiting at upgrade time join the lane they would have been stored in.
    webhook_logs = sa.table('webhook_logs', sa.column('lane', sa.String), sa.column('event_type', sa.String),
                            sa.column('processed_at', sa.DateTime))
    op.execute(webhook_logs.update()
               .where(webhook_logs.c.processed_at.is_(None), webhook_logs.c.event_type.not_in(_LIVE_TYPES))
               .values(lane='bulk'))
    op.create_index('ix_webhook_logs_lane_pending', 'webhook_logs', ['lane', 'id'], unique=False,
                    postgresql_where=sa.text('processed_at IS NULL'), sqlite_where=sa.text('processed_at IS NULL'))
    op.create_index(op.f('ix_slack_events_received_at'), 'slack_events', ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_slack_events_received_at'), table_name='slack_events')
    op.drop_index('ix_webhook_logs_lane_pending', table_name='webhook_logs',
                  postgresql_where=sa.text('processed_at IS NULL'), sqlite_where=sa.text('processed_at IS NULL'))
    with op.batch_alter_table('webhook_logs', schema=None) as batch_op:
        batch_op.drop_column('lane')
