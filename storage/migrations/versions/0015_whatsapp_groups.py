"""whatsapp groups: subject, participants and state of the groups a business number is in

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 15:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'whatsapp_groups',
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('group_id', sa.String(length=512), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=True),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('invite_link', sa.String(length=512), nullable=True),
        sa.Column('participants', sa.JSON(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_whatsapp_groups_contact_id_contacts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('contact_id', name=op.f('pk_whatsapp_groups')),
        sa.UniqueConstraint('group_id', name=op.f('uq_whatsapp_groups_group_id')),
    )


def downgrade() -> None:
    op.drop_table('whatsapp_groups')
