"""A cache of rendered thread pages, checked against the database on every read.

Each read asks the database for the thread's fingerprint (comment count, highest id, latest
decision and latest edit, and the thread's undo count): one indexed aggregate, far cheaper than
loading and serialising the page. Any write that changes what readers see moves the fingerprint
(a new comment raises the count and id, a status change sets ``decided_at``, an edit sets
``edited_at``, an Undo, which puts decision times back, raises the thread's ``undo_count``), so
a cached page is used only while it is still exactly what the database would give. The cache is
per process and needs no invalidation messages: every worker validates against the shared
database.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from flask import Flask, Response, current_app, request
from sqlalchemy import bindparam, func, select

from .db import Comment, Site, Thread, read_direct


class PageCache:
    """A bounded least-recently-used map from a page key to (fingerprint, JSON bytes)."""

    def __init__(self, entries: int, max_bytes: int) -> None:
        self.entries, self.max_bytes = entries, max_bytes
        self._data: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple[Any, ...], fingerprint: tuple[Any, ...]) -> bytes | None:
        """Return the cached page if its fingerprint still matches."""
        with self._lock:
            found = self._data.get(key)
            if found is None or found[0] != fingerprint:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return found[1]

    def put(self, key: tuple[Any, ...], fingerprint: tuple[Any, ...], body: bytes) -> None:
        """Store a page, evicting the least recently used ones beyond the bounds."""
        if len(body) > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._data[key] = (fingerprint, body)
            self._bytes += len(body)
            while self._data and (len(self._data) > self.entries or self._bytes > self.max_bytes):
                _, (_, evicted) = self._data.popitem(last=False)
                self._bytes -= len(evicted)


_thread, _comment = Thread.__table__, Comment.__table__
# Built once: the join on thread_id lets the (thread_id, status, created_at) index drive the
# aggregate; it runs straight on the driver (read_direct), as it does on every read. Its values
# are only compared, so the driver's own types (timestamps as text on SQLite) serve.
_FINGERPRINT = (
    select(_thread.c.id, _thread.c.title, _thread.c.undo_count, func.count(_comment.c.id),
           func.max(_comment.c.id), func.max(_comment.c.decided_at),
           func.max(_comment.c.edited_at))
    .select_from(_thread.outerjoin(_comment, _comment.c.thread_id == _thread.c.id))
    .where(_thread.c.site_id == bindparam("site"), _thread.c.uri == bindparam("uri"))
    .group_by(_thread.c.id, _thread.c.title, _thread.c.undo_count)
)


def fingerprint(site: Site, uri: str) -> tuple[Any, ...]:
    """Return what identifies the current state of a thread's comments (one aggregate query)."""
    rows = read_direct(_FINGERPRINT, {"site": site.id, "uri": uri})
    return ("no thread",) if not rows else tuple(rows[0])


def thread_response(
    site: Site, uri: str, sort: str, position: Hashable, per_page: int,
    build: Callable[[], dict[str, Any]],
) -> Response:
    """Answer a thread listing from the cache when it is current, else build and cache it.

    ``position`` is where the page starts: its number, or the place a cursor names. It is part
    of the cache key and so of the ETag.
    """
    cache: PageCache | None = current_app.extensions.get("read_cache")
    state = fingerprint(site, uri)
    key = (site.id, uri, sort, position, per_page)
    body = cache.get(key, state) if cache is not None else None
    if body is None:
        body = (current_app.json.dumps(build()) + "\n").encode()
        if cache is not None:
            cache.put(key, state, body)
    response = Response(body, mimetype="application/json")
    # Clients may revalidate with If-None-Match; nothing is cached by them without asking.
    response.set_etag(hashlib.sha256(repr((key, state)).encode()).hexdigest()[:32])
    response.headers["Cache-Control"] = "no-cache"
    # Only a revalidation can turn the answer into a 304; skipping werkzeug's conditional
    # handling otherwise saves a few percent of a cached read (the server adds the Date header).
    if "HTTP_IF_NONE_MATCH" not in request.environ:
        return response
    return response.make_conditional(request)


def init_app(app: Flask) -> None:
    """Create this process's page cache, unless READ_CACHE_ENTRIES is 0."""
    entries = int(app.config.get("READ_CACHE_ENTRIES", 0))
    if entries > 0:
        app.extensions["read_cache"] = PageCache(
            entries, int(app.config.get("READ_CACHE_MAX_BYTES", 32 * 1024 * 1024))
        )
