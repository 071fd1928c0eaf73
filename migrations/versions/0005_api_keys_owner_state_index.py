"""Index api_keys on (user_id, revoked_at, expires_at) for the dashboard's counts and renewal list

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 14:34:47

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index('ix_api_keys_user_id_revoked_at_expires_at', ['user_id', 'revoked_at', 'expires_at'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_api_keys_user_id_revoked_at_expires_at')
