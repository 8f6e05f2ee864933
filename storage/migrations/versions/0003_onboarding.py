"""onboarding: onboarded channels (tokens encrypted), one-time links, Business App syncs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 04:27:28.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('onboarded_channels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('phone_number_id', sa.String(length=64), nullable=False),
    sa.Column('waba_id', sa.String(length=64), nullable=False),
    sa.Column('display_phone_number', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=20), nullable=False),
    sa.Column('mps', sa.Integer(), nullable=False),
    sa.Column('slack_channel', sa.String(length=64), nullable=False),
    sa.Column('token_ciphertext', sa.Text(), nullable=False),
    sa.Column('onboarded_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_onboarded_channels')),
    sa.UniqueConstraint('name', name=op.f('uq_onboarded_channels_name')),
    sa.UniqueConstraint('phone_number_id', name=op.f('uq_onboarded_channels_phone_number_id'))
    )
    op.create_table('onboarding_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('slack_channel', sa.String(length=64), nullable=False),
    sa.Column('channel_name', sa.String(length=100), nullable=True),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_onboarding_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_onboarding_links_token_hash'))
    )
    op.create_table('smb_syncs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('sync_type', sa.String(length=32), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=True),
    sa.Column('progress', sa.Integer(), nullable=True),
    sa.Column('chunks_seen', sa.JSON(), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('last_progress_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('slack_channel', sa.String(length=64), nullable=True),
    sa.Column('slack_ts', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_smb_syncs_channel_id_channels')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_smb_syncs'))
    )
    with op.batch_alter_table('smb_syncs', schema=None) as batch_op:
        batch_op.create_index('ix_smb_syncs_channel_type', ['channel_id', 'sync_type'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('smb_syncs', schema=None) as batch_op:
        batch_op.drop_index('ix_smb_syncs_channel_type')

    op.drop_table('smb_syncs')
    op.drop_table('onboarding_links')
    op.drop_table('onboarded_channels')
