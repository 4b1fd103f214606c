"""Rate limits: the limiter extension, its key functions and the named limits from config."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from .db import Site

F = TypeVar("F", bound=Callable[..., Any])

limiter = Limiter(key_func=lambda: client_key())


def client_addr() -> str:
    """Return the client's address as seen through the configured number of proxies."""
    return request.remote_addr or ""


def client_key() -> str:
    """Return a keyed hash of the client address, so raw addresses never reach the counters."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, client_addr().encode(), hashlib.sha256).hexdigest()[:24]


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True) if request.is_json else None
    return data if isinstance(data, dict) else {}


def request_site_key() -> str:
    """Return the site key a request is about (JSON body, then query string)."""
    if "site_key" not in g:
        key = _body().get("site") or request.args.get("site") or ""
        g.site_key = key if isinstance(key, str) else ""
    return str(g.site_key)


def site_key() -> str:
    """Key posts by site: the site-wide breaker against floods from rotating addresses."""
    return "site:" + request_site_key()


def thread_key() -> str:
    """Key posts by site and page: a burst guard for one thread."""
    uri = _body().get("uri")
    return f"thread:{request_site_key()}:{uri if isinstance(uri, str) else ''}"[:1200]


def configured(name: str) -> Callable[[], str]:
    """Return a callable giving the limit string for name, overridden per site if set."""

    def value() -> str:
        override = site_limit_override(name)
        return override or current_app.config[f"LIMIT_{name.upper()}"]

    return value


def request_site() -> Site | None:
    """Return the site the request names, loaded once per request (None if unknown)."""
    if "site" not in g:
        key = request_site_key()
        g.site = None
        if key:
            from .db import Site, db  # local: limits must not pull the ORM in at import

            g.site = db.session.execute(
                db.select(Site).where(Site.key == key)
            ).scalar_one_or_none()
    return g.site  # type: ignore[no-any-return]


def site_limit_override(name: str) -> str | None:
    """Return the requesting site's own limit for name, if it sets one."""
    site = request_site()
    limits = ((site.settings or {}).get("limits") or {}) if site is not None else {}
    value = limits.get(name)
    return value if isinstance(value, str) and value else None


def _writes(methods: list[str]) -> dict[str, Any]:
    return {"methods": methods, "override_defaults": False}


def posting(view: F) -> F:
    """Apply the per-address, per-thread and per-site limits on new comments."""
    view = limiter.limit(configured("post"), key_func=client_key, scope="post-addr",
                         **_writes(["POST"]))(view)
    view = limiter.limit(configured("thread"), key_func=thread_key, scope="post-thread",
                         **_writes(["POST"]))(view)
    view = limiter.limit(configured("site"), key_func=site_key, scope="post-site",
                         **_writes(["POST"]))(view)
    return view


def editing(view: F) -> F:
    """Apply the per-address limit on edits and deletes."""
    return limiter.limit(configured("edit"), key_func=client_key, scope="edit",
                         **_writes(["PATCH", "DELETE"]))(view)


def reporting(view: F) -> F:
    """Apply the per-address limit on reader reports."""
    return limiter.limit(configured("report"), key_func=client_key, scope="report",
                         **_writes(["POST"]))(view)


def reading(view: F) -> F:
    """Apply the per-address limit on thread listings and counts."""
    return limiter.limit(configured("read"), key_func=client_key, scope="read",
                         **_writes(["GET", "POST"]))(view)


def storage_ok() -> bool:
    """Return whether the configured counter storage answers (not the in-memory fallback)."""
    if not limiter.enabled:
        return True
    try:
        ok = bool(limiter.storage.check())
    except Exception:  # noqa: BLE001 - any storage failure means "not ok"
        ok = False
    # flask-limiter only retries a dead storage on rate-limited requests, with backoff; a
    # successful check here ends the fallback at once (its own recovery step, done earlier).
    if ok and limiter._storage_dead:
        limiter._storage_dead = False
    _log_transition(ok)
    return ok


def _log_transition(ok: bool) -> None:
    """Log once each time this process sees the shared counter storage go down or come back."""
    state = current_app.extensions.setdefault("limiter_storage", {"ok": True})
    if state["ok"] == ok:
        return
    state["ok"] = ok
    uri = current_app.config["RATELIMIT_STORAGE_URI"].split(":", 1)[0]
    if ok:
        current_app.logger.warning("rate-limit storage (%s) is back: shared limits again", uri)
    else:
        current_app.logger.error(
            "rate-limit storage (%s) unreachable: per-process in-memory limits, health degraded",
            uri,
        )


def init_app(app: Flask) -> None:
    """Trust the configured proxies and bind the limiter to the app."""
    proxies = int(app.config.get("PROXY_COUNT", 0))
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    # flask-limiter keeps the first app's key prefix and strategy on the (module-level) limiter;
    # clear them so every app, e.g. each test's, is configured from its own settings.
    limiter._key_prefix = None  # noqa: SLF001
    limiter._strategy = None  # noqa: SLF001
    limiter.init_app(app)
