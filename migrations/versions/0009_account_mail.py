"""Account mail: notification switches, address confirmation, password-reset and calendar-feed nonces, the
networks each key was used from, and outbox messages given up on

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 03:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_confirmed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reset_nonce', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('calendar_nonce', sa.String(length=32), nullable=True))
        for switch in ('notify_expiry', 'notify_suspension', 'notify_new_network', 'notify_admin_action'):
            batch_op.add_column(sa.Column(switch, sa.Boolean(), server_default=sa.true(), nullable=False))
    # Accounts made before confirmation existed count as confirmed: nobody loses the right to create keys.
    op.execute("UPDATE users SET email_confirmed_at = created_at")
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('key_networks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('network', sa.String(length=43), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('alerted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_key_networks_key_id_api_keys'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_key_networks')),
    sa.UniqueConstraint('key_id', 'network', name='uq_key_networks_key_id_network')
    )


def downgrade():
    op.drop_table('key_networks')
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_column('failed_at')
    with op.batch_alter_table('users', schema=None) as batch_op:
        for column in ('notify_admin_action', 'notify_new_network', 'notify_suspension', 'notify_expiry',
                       'calendar_nonce', 'reset_nonce', 'email_confirmed_at'):
            batch_op.drop_column(column)
