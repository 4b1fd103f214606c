"""covering index for thread fingerprints

Revision ID: 9c1f4e2ab7d0
Revises: 6d7b682a3698
Create Date: 2026-11-26 14:40:00

Every thread read checks the thread's fingerprint (count, highest id, latest decision and
edit); with these four columns in one index the check never reads the table.
"""
from alembic import op


revision = '9c1f4e2ab7d0'
down_revision = '6d7b682a3698'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('comment', schema=None) as batch_op:
        batch_op.create_index('ix_comment_thread_fingerprint',
                              ['thread_id', 'id', 'decided_at', 'edited_at'], unique=False)


def downgrade():
    with op.batch_alter_table('comment', schema=None) as batch_op:
        batch_op.drop_index('ix_comment_thread_fingerprint')
