"""Rate limits: the limiter extension, its key functions and the named limits from config."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisSentinelStorage, RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from werkzeug.exceptions import TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from .db import Site

F = TypeVar("F", bound=Callable[..., Any])

limiter = Limiter(key_func=lambda: client_key())
# Seconds between attempts to reach the shared counter storage while on the in-memory fallback.
RECHECK_SECONDS = 5.0
# Seconds between sweeps of expired counters out of the in-memory storage.
SWEEP_SECONDS = 5.0


def client_addr() -> str:
    """Return the client's address as seen through the configured number of proxies."""
    return request.remote_addr or ""


def keyed(value: str) -> str:
    """Return a keyed hash of a value, so raw addresses and emails never reach the counters."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:24]


def client_network(addr: str) -> str:
    """Return the network a client is counted by: an IPv6 /64, else the address.

    An IPv6 subscriber usually gets a whole /64 and can pick any address in it; IPv4 addresses
    (also when written IPv4-mapped, ::ffff:a.b.c.d) count one by one.
    """
    try:
        parsed = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
    return str(parsed)


def client_key() -> str:
    """Return the keyed hash of the client's network (client_network): per-address limits
    count a whole IPv6 /64 as one client."""
    return keyed(client_network(client_addr()))


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
    """Key posts by site and page: a burst guard for one thread, however its URI is spelt."""
    from .comments import normalise_uri  # local: limits must not pull the ORM in at import
    from .exceptions import InvalidField

    try:
        uri = normalise_uri(_body().get("uri"))
    except InvalidField:
        uri = ""
    return f"thread:{request_site_key()}:{uri}"[:1200]


def request_site() -> Site | None:
    """Return a snapshot of the site the request names, once per request (None if unknown)."""
    if "site" not in g:
        key = request_site_key()
        g.site = None
        if key:
            from . import sitecache  # local: limits must not pull the ORM in at import

            g.site = sitecache.cache().site(key)
    return g.site  # type: ignore[no-any-return]


def site_limit_override(name: str) -> str | None:
    """Return the requesting site's own limit for name, if it sets one."""
    site = request_site()
    limits = ((site.settings or {}).get("limits") or {}) if site is not None else {}
    value = limits.get(name)
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Rule:
    """One named limit (LIMIT_<NAME> in config, overridable per site) on some methods."""

    name: str
    key: Callable[[], str]
    scope: str
    methods: frozenset[str]


@lru_cache(maxsize=256)
def parse(value: str) -> tuple[RateLimitItem, ...]:
    """Parse a limit string such as "5/minute; 100/day" once, not on every request."""
    return tuple(parse_many(value))


Hit = tuple[RateLimitItem, tuple[str, ...]]

# The limits library's sliding-window acquire script, applied to several limits in one round
# trip: KEYS are (previous, current) window pairs, ARGV (limit, expiry in s) per limit. Limits
# are counted in order and counting stops at the first that refuses, as hitting them one by
# one does; the script returns that limit's 1-based position, or 0 when all admitted the hit.
_ACQUIRE_MANY = """
for i = 1, #KEYS / 2 do
  local previous, current = KEYS[2 * i - 1], KEYS[2 * i]
  local limit = tonumber(ARGV[2 * i - 1])
  local expiry = tonumber(ARGV[2 * i]) * 1000
  if limit < 1 then return i end
  local current_ttl = tonumber(redis.call('pttl', current))
  if current_ttl > 0 and current_ttl < expiry then
    redis.call('rename', current, previous)
    redis.call('set', current, 0, 'PX', current_ttl + expiry)
  end
  local previous_count = tonumber(redis.call('get', previous)) or 0
  local previous_ttl = tonumber(redis.call('pttl', previous)) or 0
  local current_count = tonumber(redis.call('get', current)) or 0
  current_ttl = tonumber(redis.call('pttl', current)) or 0
  if previous_ttl < 0 then previous_ttl = 0 end
  if current_ttl < 0 then current_ttl = 0 end
  if math.floor(previous_count * previous_ttl / expiry) + current_count + 1 > limit then
    return i
  end
  if redis.call('exists', current) == 1 then
    redis.call('incrby', current, 1)
  else
    redis.call('set', current, 1, 'PX', expiry * 2)
  end
end
return 0
"""


@lru_cache(maxsize=4)
def _acquire_many_script(storage: RedisStorage) -> Any:
    """Return the batch script registered on a Redis storage (loaded on its first use)."""
    return storage.get_connection().register_script(_ACQUIRE_MANY)


def _one_round_trip(hits: list[Hit]) -> Any:
    """Return the batch script if these hits can be counted in one Redis call, else None.

    Only for sliding-window counters in a single Redis (or Sentinel-managed) server: a cluster
    would spread the keys over nodes, and the in-memory fallback needs no round trips.
    """
    storage = limiter._storage  # noqa: SLF001
    if (len(hits) < 2 or limiter._storage_dead  # noqa: SLF001
            or type(storage) not in (RedisStorage, RedisSentinelStorage)
            or not isinstance(limiter._limiter, SlidingWindowCounterRateLimiter)):  # noqa: SLF001
        return None
    return _acquire_many_script(storage)


def _hit_all(hits: list[Hit]) -> Hit | None:
    """Count one request against each limit in order; return the first that refuses it."""
    script = _one_round_trip(hits)
    if script is not None:
        storage = cast(RedisStorage, limiter._storage)  # noqa: SLF001
        keys: list[str] = []
        amounts: list[int] = []
        for item, args in hits:
            key = item.key_for(*args)
            keys += [storage.prefixed_key(storage._previous_window_key(key)),  # noqa: SLF001
                     storage.prefixed_key(storage._current_window_key(key))]  # noqa: SLF001
            amounts += [item.amount, item.get_expiry()]
        try:
            refused = int(script(keys, amounts))
        except Exception as error:  # noqa: BLE001 - any storage failure: fall back
            _fall_back(error)
        else:
            return hits[refused - 1] if refused else None
    for item, args in hits:
        if not _hit(item, args):
            return item, args
    return None


def _hit(item: RateLimitItem, args: tuple[str, ...]) -> bool:
    """Count one request against a limit, falling back to per-process counters if need be."""
    if limiter._storage_dead:  # noqa: SLF001 - flask-limiter's own fallback state
        _maybe_recover()
    try:
        return bool(limiter.limiter.hit(item, *args))
    except Exception as error:  # noqa: BLE001 - any storage failure: fall back
        _fall_back(error)
        return bool(limiter.limiter.hit(item, *args))


def _fall_back(error: Exception) -> None:
    """Switch to per-process counters after a storage failure, as flask-limiter does.

    Re-raises the failure when the fallback is off, or when it was the fallback that failed.
    """
    if not limiter._in_memory_fallback_enabled or limiter._storage_dead:  # noqa: SLF001
        raise error
    limiter._storage_dead = True  # noqa: SLF001
    current_app.extensions["limiter_recheck"] = time.monotonic() + RECHECK_SECONDS
    _log_transition(False)


def _maybe_recover() -> None:
    """While on the fallback, ask the shared storage again every few seconds."""
    due = current_app.extensions.get("limiter_recheck", 0.0)
    if time.monotonic() < due:
        return
    current_app.extensions["limiter_recheck"] = time.monotonic() + RECHECK_SECONDS
    storage_ok()


def check(rules: tuple[Rule, ...]) -> None:
    """Count this request against each rule for its method; raise 429 on the first breach."""
    if not limiter.enabled:
        return
    prefix = limiter._key_prefix  # noqa: SLF001
    hits: list[Hit] = []
    for rule in rules:
        if request.method not in rule.methods:
            continue
        value = site_limit_override(rule.name) or current_app.config[f"LIMIT_{rule.name.upper()}"]
        key = rule.key()
        args = (prefix, key, rule.scope) if prefix else (key, rule.scope)
        hits += [(item, args) for item in parse(value)]
    refused = _hit_all(hits)
    if refused is not None:
        g.rate_limited = refused
        raise TooManyRequests(str(refused[0]))


def guarded(*rules: Rule) -> Callable[[F], F]:
    """Decorate a view so each request is counted against the rules before it runs.

    The counters, strategy (sliding window) and in-memory fallback are flask-limiter's; the
    check itself is direct, without its generic per-request limit resolution.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            check(rules)
            return view(*args, **kwargs)

        return cast(F, inner)

    return decorate


def limited_headers(response: Response) -> Response:
    """Tell a refused client when to retry (Retry-After and X-RateLimit-* on 429s).

    The limits check() counts record their breach in g; the per-key limit is flask-limiter's
    decorator (keys.limited), whose own headers are off (RATELIMIT_HEADERS_ENABLED) since it
    would put them on successful answers too.
    """
    if response.status_code != 429:
        return response
    breached = g.get("rate_limited")
    if breached is None:
        current = limiter.current_limit
        if current is None or not current.breached:
            return response
        breached = (current.limit, tuple(current.request_args))
    item, args = breached
    try:
        reset, _ = limiter.limiter.get_window_stats(item, *args)
    except Exception:  # noqa: BLE001 - a header is not worth failing the answer over
        reset = time.time() + item.get_expiry()
    response.headers["Retry-After"] = str(max(1, int(reset - time.time()) + 1))
    response.headers["X-RateLimit-Limit"] = str(item.amount)
    response.headers["X-RateLimit-Remaining"] = "0"
    response.headers["X-RateLimit-Reset"] = str(int(reset))
    return response


_POST, _EDIT = frozenset({"POST"}), frozenset({"PATCH", "DELETE"})
# New comments: per address, per thread (burst guard) and per site (flood breaker).
_POSTING = (Rule("post", client_key, "post-addr", _POST),
            Rule("thread", thread_key, "post-thread", _POST),
            Rule("site", site_key, "post-site", _POST))


def admit_post() -> None:
    """Count a new comment against the posting limits (address, page, site); 429 beyond."""
    check(_POSTING)


# Edits and deletes, reader reports, and thread listings and counts: per address.
editing = guarded(Rule("edit", client_key, "edit", _EDIT))
reporting = guarded(Rule("report", client_key, "report", _POST))
reading = guarded(Rule("read", client_key, "read", frozenset({"GET", "POST"})))


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
    # No application-wide or default limits exist: every limit is on its view, checked by the
    # view's decorator, so flask-limiter's per-request pass over all limits is not needed.
    hooks = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit in hooks:  # noqa: SLF001
        hooks.remove(limiter._check_request_limit)  # noqa: SLF001
    app.after_request(limited_headers)
    for storage in (limiter._storage, getattr(limiter, "_fallback_storage", None)):  # noqa: SLF001
        if type(storage) is MemoryStorage:
            sweep_lazily(storage)


def sweep_lazily(storage: MemoryStorage) -> None:
    """Expire old in-memory counters inline every few seconds, not from a timer thread.

    limits' memory storage restarts a 10 ms timer thread on every count when the last one has
    finished, and each run walks every key: under steady traffic that is a thread start per
    few requests. Expired counters are already ignored on read, so sweeping them now and then
    only bounds memory.
    """
    storage.timer.cancel()
    expire = storage._MemoryStorage__expire_events  # type: ignore[attr-defined]
    due = [0.0]

    def schedule() -> None:
        now = time.monotonic()
        if now >= due[0]:
            due[0] = now + SWEEP_SECONDS
            expire()

    storage._MemoryStorage__schedule_expiry = schedule  # type: ignore[attr-defined]
