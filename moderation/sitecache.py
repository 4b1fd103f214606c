"""Short-lived per-process snapshots of site rows and webhook subscriptions.

Every API request names a site: its origins, limits and policy decide how the request is
handled, and every new comment asks whether the site has webhooks. Those rows change when an
operator edits settings, not per comment, so each worker keeps a snapshot of them for
``SITE_CACHE_SECONDS`` (default 5; 0 turns the cache off) instead of querying on every request.

Consistency: any flush in this process that adds, changes or deletes a site or a webhook (the
dashboard, the management API, the CLI, tests) clears every snapshot at once, and its commit
clears them again (another thread may have cached the old row in between); a change made by
another worker or host reaches this one within ``SITE_CACHE_SECONDS``. Nothing here is state
another worker needs: a cold or cleared cache only costs a query.

Snapshots are detached ``Site`` instances built from a Core row, never attached to a session,
so they can be shared by threads; treat them as read-only.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from flask import Flask, current_app
from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session, make_transient_to_detached

from .db import Site, Webhook, db, is_site_key

# Bound on cached keys, so requests naming random site keys cannot grow the map without end.
MAX_KEYS = 4096

_SITE_BY_KEY = select(Site.__table__).where(Site.__table__.c.key == bindparam("key"))
_HOOKED_SITES = select(Webhook.__table__.c.site_id).where(
    Webhook.__table__.c.active.is_(True)).distinct()

_caches: weakref.WeakSet[SiteCache] = weakref.WeakSet()


class SiteCache:
    """Site snapshots by key, and the set of site ids with active webhooks, for a few seconds."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._sites: dict[str, tuple[float, Site | None]] = {}
        self._hooked: tuple[float, frozenset[int]] | None = None
        self._lock = threading.Lock()
        _caches.add(self)

    def clear(self) -> None:
        """Forget every snapshot."""
        with self._lock:
            self._sites.clear()
            self._hooked = None

    def site(self, key: str) -> Site | None:
        """Return a read-only snapshot of the site with this key, or None if there is none."""
        if not is_site_key(key):
            return None
        now = time.monotonic()
        found = self._sites.get(key)
        if found is not None and found[0] > now:
            return found[1]
        row = db.session.connection().execute(_SITE_BY_KEY, {"key": key}).mappings().first()
        site = None
        if row is not None:
            site = Site(**row)
            make_transient_to_detached(site)
        if self.seconds > 0:
            with self._lock:
                if len(self._sites) >= MAX_KEYS:
                    self._sites.clear()
                self._sites[key] = (now + self.seconds, site)
        return site

    def hooked_sites(self) -> frozenset[int]:
        """Return the ids of the sites that have at least one active webhook."""
        now = time.monotonic()
        found = self._hooked
        if found is not None and found[0] > now:
            return found[1]
        ids = frozenset(db.session.connection().execute(_HOOKED_SITES).scalars())
        if self.seconds > 0:
            self._hooked = (now + self.seconds, ids)
        return ids


def cache() -> SiteCache:
    """Return the current app's site cache."""
    return current_app.extensions["site_cache"]  # type: ignore[no-any-return]


def _clear_all() -> None:
    for each in list(_caches):
        each.clear()


def _clear_on_change(session: Session, _context: Any) -> None:
    """Clear every snapshot when a flush touches a site or a webhook, and again at commit:
    a thread that read the row between the flush and the commit cached the old one."""
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Site | Webhook):
            _clear_all()
            session.info["site_cache_stale"] = True
            return


def _clear_at_end(session: Session, *_: Any) -> None:
    """At commit or rollback of a transaction that changed a site or webhook, clear again."""
    if session.info.pop("site_cache_stale", False):
        _clear_all()


def init_app(app: Flask) -> None:
    """Give the app its site cache."""
    app.extensions["site_cache"] = SiteCache(float(app.config.get("SITE_CACHE_SECONDS", 5)))


event.listen(Session, "after_flush", _clear_on_change)
event.listen(Session, "after_commit", _clear_at_end)
event.listen(Session, "after_soft_rollback", _clear_at_end)
