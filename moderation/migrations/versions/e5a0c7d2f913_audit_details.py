"""what an edit replaced, kept in the audit trail

Revision ID: e5a0c7d2f913
Revises: b3e81f0c5a27
Create Date: 2026-12-07 17:30:00

An edit by the author or a moderator used to overwrite a comment's text with nothing left of
the original (an insult edited away after a report left no trace), and a settings change
recorded only the names of what changed. Audit rows now keep the changed fields' old (and, for
settings, new) values in `details`. Rows written before this revision have none.
"""
import sqlalchemy as sa
from alembic import op

revision = 'e5a0c7d2f913'
down_revision = 'b3e81f0c5a27'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('moderation_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('details', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('moderation_event', schema=None) as batch_op:
        batch_op.drop_column('details')
