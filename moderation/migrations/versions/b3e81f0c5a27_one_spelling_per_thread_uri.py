"""one spelling per thread URI

Revision ID: b3e81f0c5a27
Revises: c29fa4830fb4
Create Date: 2026-12-07 17:00:00

Thread URIs used to be stored as spelt: /posts/旧区改造 written by a blogger and
/posts/%E6%97%A7%E5%8C%BA%E6%94%B9%E9%80%A0 from a browser's location.pathname were two
threads of one page. Every URI now has one spelling (comments.normalise_uri); this rewrites
the stored ones, and where two threads of a site turn out to be one page, moves the comments
of the later ones to the first and drops the empty threads. Nothing is deleted but threads
left empty. The downgrade keeps the new spellings (the old ones are not known any more).
A page whose path began with // was stored under the rest of its path (//2024/01/post as
/01/post, the first segment read as a host name); the original cannot be told from what was
stored, so such threads keep that spelling.
"""
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from moderation.comments import normalise_uri
from moderation.exceptions import InvalidField

revision = 'b3e81f0c5a27'
down_revision = 'c29fa4830fb4'
branch_labels = None
depends_on = None


def upgrade():
    connection = op.get_bind()
    threads = sa.table('thread', sa.column('id'), sa.column('site_id'), sa.column('uri'))
    comments = sa.table('comment', sa.column('thread_id'))
    pages = defaultdict(list)
    for thread_id, site_id, uri in connection.execute(
            sa.select(threads.c.id, threads.c.site_id, threads.c.uri).order_by(threads.c.id)):
        try:
            # A stored URI is a path already stripped of surrounding whitespace: the slash
            # keeps what is left of it at its end (decoded later, /tag/\u3000 is /tag/%E3%80%80).
            spelling = normalise_uri(uri + "/")
        except InvalidField:  # not a URI any more: left as it is
            spelling = uri
        pages[site_id, spelling].append((thread_id, uri))
    renamed = []
    for (_, spelling), found in pages.items():
        (first, first_uri), later = found[0], found[1:]
        for thread_id, _ in later:
            connection.execute(sa.update(comments).where(comments.c.thread_id == thread_id)
                               .values(thread_id=first))
            connection.execute(sa.delete(threads).where(threads.c.id == thread_id))
        if first_uri != spelling:
            renamed.append((first, spelling))
    # In two steps, through names no page has (stored URIs begin with /), so no rename meets
    # a spelling another thread still holds until its own turn.
    for thread_id, _ in renamed:
        connection.execute(sa.update(threads).where(threads.c.id == thread_id)
                           .values(uri=f" renaming {thread_id}"))
    for thread_id, spelling in renamed:
        connection.execute(sa.update(threads).where(threads.c.id == thread_id)
                           .values(uri=spelling))


def downgrade():
    pass
