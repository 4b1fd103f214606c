"""Documented defaults; every tunable has its meaning and unit beside it."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Flask session signing key; the app refuses to start with this value outside debug/testing.
SECRET_KEY = "dev"

# Database URL (SQLAlchemy form); empty means SQLite in the instance folder.
SQLALCHEMY_DATABASE_URI = ""
# Pool settings for server databases: recycle connections after 30 min. Instead of a ping on
# every checkout, a connection idle for more than DB_PING_IDLE_SECONDS is pinged before use.
SQLALCHEMY_ENGINE_OPTIONS: dict[str, object] = {"pool_recycle": 1800}
DB_PING_IDLE_SECONDS = 10
# Seconds to wait for PostgreSQL to accept a connection: a server that hangs instead of
# refusing makes requests answer 503 after this long rather than wait for the worker timeout.
DB_CONNECT_TIMEOUT_SECONDS = 5

# Largest accepted request body in bytes; larger bodies get 413.
MAX_CONTENT_LENGTH = 64 * 1024

# Seconds during which a comment's author may edit or delete it with its edit token.
EDIT_WINDOW_SECONDS = 15 * 60

# Top-level comments per page in thread listings (default and largest allowed).
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Most URIs one count request may ask for.
MAX_COUNT_URIS = 100

# Where the trained classifier lives (manifest.json + artifacts); empty disables scoring.
MODEL_DIR = str(PROJECT_ROOT / "models")

# Score thresholds used when neither the site nor the model manifest sets them (probabilities).
DEFAULT_THRESHOLDS = {
    "spam": {"hold": 0.5, "reject": 0.95},
    "toxicity": {"hold": 0.5, "reject": 0.97},
}
# Comments with more links than this are held for review.
MAX_LINKS = 3

# Rate-limit counter storage: memory:// (one process) or redis://host:port/db (shared).
RATELIMIT_STORAGE_URI = "memory://"
# Options of the storage's client. A Redis that hangs (rather than refusing connections) fails
# within a second, so the in-memory fallback below takes over instead of requests waiting.
RATELIMIT_STORAGE_OPTIONS: dict[str, object] = {"socket_connect_timeout": 1.0,
                                                 "socket_timeout": 1.0}
# Counting strategy: the sliding-window counter costs O(1) per check in memory and in Redis and
# is exact within one window (a moving window keeps every hit and slows down under load).
RATELIMIT_STRATEGY = "sliding-window-counter"
# Use in-memory counters while the configured storage is unreachable (logged, health degraded).
RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
# flask-limiter's X-RateLimit-*/Retry-After headers on every answer of a per-key limited route:
# off, as successful answers carry no rate-limit headers (each would cost a second counter
# read). 429 answers still carry Retry-After and X-RateLimit-* (limits.limited_headers).
RATELIMIT_HEADERS_ENABLED = False
# Limiter on/off switch (tests turn it off except where limits are tested).
RATELIMIT_ENABLED = True
# New comments per client (an IPv4 address, or an IPv6 /64, as for every per-client limit).
LIMIT_POST = "3/minute;30/day"
# New comments per thread, across all addresses (burst guard for one post).
LIMIT_THREAD = "20/minute"
# New comments per site, across all addresses (breaker against floods from rotating addresses).
LIMIT_SITE = "60/minute"
# Edits and deletes per client address.
LIMIT_EDIT = "10/minute"
# Reader reports per client address.
LIMIT_REPORT = "5/minute;50/day"
# Reads (thread listings, counts) per client address.
LIMIT_READ = "300/minute"
# Failed dashboard sign-ins per client network: one IPv4 address, or one IPv6 /64 (a single
# subscriber's allocation, so rotating addresses inside it shares one count).
LIMIT_LOGIN = "5/minute"
# Failed dashboard sign-ins per account (the email typed), from all addresses together: slows
# password guessing against one account from many networks. While it is exceeded the account's
# own sign-ins are refused too (429) until the window passes.
LIMIT_LOGIN_ACCOUNT = "10/hour"
# Requests per server-to-server API key (all /api/v1 key routes, Perspective and Akismet).
LIMIT_API_KEY = "600/minute"

# Run the webhook delivery thread in each web process (or run `flask webhooks deliver`).
WEBHOOKS_WORKER = True
# Seconds to wait for a webhook receiver to answer one delivery attempt.
WEBHOOK_TIMEOUT_SECONDS = 5
# Attempts per delivery before it is marked failed (backoff 10 s × 2^n between attempts).
WEBHOOK_MAX_ATTEMPTS = 6
# Seconds before the first retry; each later retry waits twice as long as the one before.
WEBHOOK_BACKOFF_SECONDS = 10
# Allow webhook URLs that resolve to loopback/private/link-local addresses (off: no SSRF).
WEBHOOK_ALLOW_PRIVATE_TARGETS = False
# Spam probability from which Akismet comment-check answers "true" (or the site's spam hold
# threshold when that is higher); "discard" from the site's spam reject threshold.
AKISMET_SPAM_PROBABILITY = 0.5

# Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted.
PROXY_COUNT = 0

# Log format on stderr: "json" (one object per line, with request_id), "text", or "" to leave
# logging alone; LOG_LEVEL is a logging level name; LOG_REQUESTS logs one line per request.
LOG_FORMAT = "json"
LOG_LEVEL = "INFO"
LOG_REQUESTS = True
# Serve Prometheus metrics at /metrics, only to clients in these networks (others get 404).
METRICS_ENABLED = True
METRICS_ALLOW_NETWORKS = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12",
                          "192.168.0.0/16", "fc00::/7"]
# Rendered thread pages each worker keeps (0 turns the cache off), and their total size in
# bytes; a page is served from it only while the thread's fingerprint in the database matches.
READ_CACHE_ENTRIES = 256
READ_CACHE_MAX_BYTES = 32 * 1024 * 1024
# Seconds each worker reuses a snapshot of a site's row (origins, limits, policy) and of which
# sites have webhooks; changes made in the same process apply at once (0 turns the cache off).
SITE_CACHE_SECONDS = 5
# Whether /readyz answers 503 while no model is loaded (off: comments are held, still ready).
READY_REQUIRES_MODEL = False
# Content-Security-Policy of our HTML pages; {nonce} is replaced by the request's nonce.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Strict-Transport-Security max-age in seconds, sent on https requests only (0 turns it off).
HSTS_SECONDS = 365 * 24 * 3600
# Session cookie: Secure (None means on except in debug/testing), HttpOnly, SameSite=Lax.
SESSION_COOKIE_SECURE: bool | None = None
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Seconds a dashboard session stays valid after its last request (each request renews it);
# signing out ends every session of the account at once.
PERMANENT_SESSION_LIFETIME = 14 * 24 * 3600
# Seconds a dashboard form's CSRF token is valid; None binds it to the session instead (it lasts
# as long as the session), so a form left open for hours still works.
WTF_CSRF_TIME_LIMIT: int | None = None

# Widget submissions filled in faster than this (milliseconds, sent as elapsed_ms) go to Spam.
MIN_FILL_MS = 2000
# Serve the demo blog posts under /demo/ (python3 dev.py serve turns this on).
DEMO = False
# Origin the demo pages load embed.js from; empty means the other loopback name on the same
# port (localhost <-> 127.0.0.1), so the demo is cross-origin like a real blog.
DEMO_API_ORIGIN = ""


def database_url_from_env() -> str:
    """Return DATABASE_URL in SQLAlchemy's psycopg 3 form, or an empty string."""
    return sqlalchemy_url(os.environ.get("DATABASE_URL", ""))


def sqlalchemy_url(url: str) -> str:
    """Return a PostgreSQL URL (postgres:// or postgresql://) in psycopg 3 form; others as given."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
