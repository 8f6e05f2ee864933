"""satisfaction surveys: an auto reply of kind csat keeps who it credits and the customer's answer and comment

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 17:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('auto_replies') as batch:
        batch.add_column(sa.Column('staff', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('score', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('answer', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('comment', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('auto_replies') as batch:
        batch.drop_column('comment')
        batch.drop_column('answered_at')
        batch.drop_column('answer')
        batch.drop_column('score')
        batch.drop_column('staff')
