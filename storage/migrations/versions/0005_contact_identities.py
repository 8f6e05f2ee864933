"""contact identities: every id Meta uses for a person (phone, BSUID, parent BSUID, username); ids at full length

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-27 17:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Business-scoped user ids are up to 256 alphanumerics after a prefix; room to spare.
ID_LENGTH = 512


def upgrade() -> None:
    with op.batch_alter_table('contacts') as batch:
        batch.alter_column('wa_id', existing_type=sa.String(length=32), type_=sa.String(length=ID_LENGTH),
                           existing_nullable=False)
        batch.add_column(sa.Column('username', sa.String(length=255), nullable=True))
    with op.batch_alter_table('message_statuses') as batch:
        batch.alter_column('recipient_id', existing_type=sa.String(length=32),
                           type_=sa.String(length=ID_LENGTH), existing_nullable=True)
    op.create_table('contact_identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('value', sa.String(length=ID_LENGTH), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'],
                            name=op.f('fk_contact_identities_contact_id_contacts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_identities')),
    sa.UniqueConstraint('kind', 'value', name=op.f('uq_contact_identities_kind')),
    )
    op.create_index(op.f('ix_contact_identities_contact_id'), 'contact_identities', ['contact_id'])
    # Every existing contact is known by its wa_id: a phone number, or a BSUID where Meta withheld it.
    op.execute(sa.text(
        "INSERT INTO contact_identities (contact_id, kind, value, created_at) "
        "SELECT id, CASE WHEN wa_id LIKE '%.%' THEN 'user_id' ELSE 'phone' END, wa_id, created_at "
        "FROM contacts"))


def downgrade() -> None:
    op.drop_index(op.f('ix_contact_identities_contact_id'), table_name='contact_identities')
    op.drop_table('contact_identities')
    with op.batch_alter_table('message_statuses') as batch:
        batch.alter_column('recipient_id', existing_type=sa.String(length=ID_LENGTH),
                           type_=sa.String(length=32), existing_nullable=True)
    with op.batch_alter_table('contacts') as batch:
        batch.drop_column('username')
        batch.alter_column('wa_id', existing_type=sa.String(length=ID_LENGTH), type_=sa.String(length=32),
                           existing_nullable=False)
