"""Verifier credentials, key usage per verifier, recent requests checked by services, and the verifier behind an
audited check

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 22:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('verifiers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=500), server_default='', nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('display_start', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('usage_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verifiers')),
    sa.UniqueConstraint('name', name=op.f('uq_verifiers_name')),
    sa.UniqueConstraint('secret_hash', name=op.f('uq_verifiers_secret_hash'))
    )
    op.create_table('key_verifier_usage',
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('verifier_id', sa.Integer(), nullable=False),
    sa.Column('requests', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('failures', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_key_verifier_usage_key_id_api_keys'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['verifier_id'], ['verifiers.id'],
                            name=op.f('fk_key_verifier_usage_verifier_id_verifiers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_id', 'verifier_id', name=op.f('pk_key_verifier_usage'))
    )
    op.create_table('key_recent_requests',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('verifier_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_key_recent_requests_key_id_api_keys'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['verifier_id'], ['verifiers.id'],
                            name=op.f('fk_key_recent_requests_verifier_id_verifiers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_key_recent_requests'))
    )
    with op.batch_alter_table('key_recent_requests', schema=None) as batch_op:
        batch_op.create_index('ix_key_recent_requests_key_id_at', ['key_id', 'at'], unique=False)
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verifier_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_audit_events_verifier_id_verifiers'), 'verifiers',
                                    ['verifier_id'], ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_audit_events_verifier_id_verifiers'), type_='foreignkey')
        batch_op.drop_column('verifier_id')
    op.drop_table('key_recent_requests')
    op.drop_table('key_verifier_usage')
    op.drop_table('verifiers')
