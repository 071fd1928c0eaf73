"""Expiry reminders sent: one per key, threshold and expiry date

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 02:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('key_reminders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.String(length=16), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_key_reminders_key_id_api_keys'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_key_reminders')),
    sa.UniqueConstraint('key_id', 'threshold', 'expires_at', name='uq_key_reminders_key_id_threshold_expires_at')
    )


def downgrade():
    op.drop_table('key_reminders')
