"""undo count per thread, for the page cache's fingerprint

Revision ID: f4d2a9c61e08
Revises: e5a0c7d2f913
Create Date: 2026-12-07 23:10:00

Undo now puts each comment's decision time back to what it was before the click (a held
comment is undecided again), so the thread's latest decision, part of the page cache's
fingerprint, may not move when an Undo hides or shows a comment. Each Undo counts on the
thread instead, and the fingerprint reads the count. Existing threads start at 0.
"""
import sqlalchemy as sa
from alembic import op

revision = 'f4d2a9c61e08'
down_revision = 'e5a0c7d2f913'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('thread', schema=None) as batch_op:
        batch_op.add_column(sa.Column('undo_count', sa.Integer(), server_default='0',
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('thread', schema=None) as batch_op:
        batch_op.drop_column('undo_count')
