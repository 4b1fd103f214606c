"""Server-to-server API keys: issue, rotate, authenticate, check scopes and rate-limit per key."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import current_app, g, request
from sqlalchemy import select

from . import limits
from .db import ApiKey, Site, db, utcnow
from .errors import error_response

F = TypeVar("F", bound=Callable[..., Any])

# read: list/read comments; write: post on behalf of readers; moderate: moderation, bans and
# webhooks; analyze: /analyze, /feedback and the Perspective and Akismet endpoints.
SCOPES = ("read", "write", "moderate", "analyze")
KEY_MARK = "mk"


@dataclass(frozen=True)
class IssuedKey:
    """A freshly issued key: the secret is shown once, only its hash is stored."""

    key: str
    prefix: str
    scopes: tuple[str, ...]


def hash_key(raw: str) -> str:
    """Return the stored form of an API key."""
    return hashlib.sha256(raw.encode()).hexdigest()


def parse_scopes(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Return a validated tuple of scopes from a comma-separated string or a list."""
    if value is None:
        return SCOPES
    items = value.split(",") if isinstance(value, str) else list(value)
    scopes = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}")
    return scopes


def issue(site: Site, scopes: Sequence[str] = SCOPES) -> IssuedKey:
    """Create a key for a site and return its secret (caller commits)."""
    scopes = parse_scopes(scopes)
    prefix = secrets.token_hex(4)
    raw = f"{KEY_MARK}_{prefix}_{secrets.token_urlsafe(32)}"
    db.session.add(ApiKey(site_id=site.id, prefix=prefix, key_hash=hash_key(raw),
                          scopes=list(scopes)))
    return IssuedKey(raw, prefix, scopes)


def rotate(site: Site, scopes: Sequence[str] = SCOPES) -> IssuedKey:
    """Revoke every active key of the site and issue a new one (caller commits)."""
    now = utcnow()
    for key in active_keys(site):
        key.revoked_at = now
    return issue(site, scopes)


def active_keys(site: Site) -> list[ApiKey]:
    """Return the site's keys that are not revoked."""
    query = select(ApiKey).where(ApiKey.site_id == site.id, ApiKey.revoked_at.is_(None))
    return list(db.session.execute(query).scalars())


def authenticate(raw: str | None) -> ApiKey | None:
    """Return the active key matching this secret, or None."""
    if not raw:
        return None
    parts = raw.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_MARK or not parts[1]:
        return None
    key = db.session.execute(
        select(ApiKey).where(ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if key is None or not hmac.compare_digest(key.key_hash, hash_key(raw.strip())):
        return None
    return key


def presented() -> str | None:
    """Return the key the request carries: Bearer header, ?key= (Perspective), api_key form."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    if request.args.get("key"):
        return request.args["key"]
    if request.mimetype == "application/x-www-form-urlencoded":
        return request.form.get("api_key") or request.form.get("key") or None
    return None


def current() -> ApiKey | None:
    """Return the request's authenticated key, looking it up once per request."""
    if "api_key" not in g:
        g.api_key = authenticate(presented())
    return g.api_key


def actor(key: ApiKey) -> str:
    """Return how a key appears in the audit trail and on labels."""
    return f"api:{key.prefix}"


def rate_key() -> str:
    """Key the per-key limit by key prefix; unknown keys share a per-address bucket."""
    key = current()
    return f"apikey:{key.prefix}" if key else f"apikey-invalid:{limits.client_key()}"


def _limit_value() -> str:
    return str(current_app.config["LIMIT_API_KEY"])


def limited(view: F) -> F:
    """Apply the per-key request limit to a view: one budget per key, shared by every view
    it decorates (a plain limit would give each endpoint its own)."""
    return cast(F, limits.limiter.shared_limit(_limit_value, scope="api-key", key_func=rate_key,
                                               override_defaults=False)(view))


def require_key(*scopes: str) -> Callable[[F], F]:
    """Require a Bearer key with every given scope; 401 or 403 in the JSON error shape."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # Query-string and form keys are for the Perspective and Akismet protocols only.
            bearer = request.headers.get("Authorization", "")[:7].lower() == "bearer "
            key = current() if bearer else None
            if key is None:
                response = error_response(
                    401, "unauthorized",
                    "send a valid site API key as 'Authorization: Bearer mk_...'",
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="moderation"'
                return response
            missing = [s for s in scopes if s not in (key.scopes or [])]
            if missing:
                return error_response(
                    403, "insufficient_scope",
                    f"this key lacks the scope {', '.join(missing)}",
                )
            return view(*args, **kwargs)

        return limited(cast(F, wrapper))

    return decorator
