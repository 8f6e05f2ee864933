"""managers' view: messages indexed by time, for the figures read across all conversations of a period

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-27 17:10:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_messages_wa_timestamp', 'messages', ['wa_timestamp'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_messages_wa_timestamp', table_name='messages')
