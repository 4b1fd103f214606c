"""moderator session epoch and disabled accounts

Revision ID: c29fa4830fb4
Revises: 9c1f4e2ab7d0
Create Date: 2026-12-07 16:42:36

Every dashboard session carries its account's session_epoch; signing out (or disabling the
account) bumps it, so copies of the session cookie stop working in every worker and on every
host. disabled_at marks an account that may no longer sign in; its audit trail rows stay.
Existing accounts start at epoch 0, enabled; sessions opened before this revision carry no
epoch, so every moderator signs in once more after the upgrade.
"""
import sqlalchemy as sa
from alembic import op

revision = 'c29fa4830fb4'
down_revision = '9c1f4e2ab7d0'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('moderator', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('moderator', schema=None) as batch_op:
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('session_epoch')
