"""The comment service: the one place that writes comments, in pipeline order."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import math
import re
import secrets
import unicodedata
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

from blinker import Namespace
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Executable,
    Result,
    Row,
    String,
    and_,
    any_,
    bindparam,
    column,
    delete,
    exists,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import aliased, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from . import policy, sanitising
from .classifier import Classifier, CommentText, Scores
from .db import (
    Ban,
    Comment,
    Label,
    ModerationEvent,
    Report,
    Site,
    Status,
    Thread,
    TrustedAuthor,
    db,
    driver_connection,
    is_site_key,
    read_direct,
    session_in_transaction,
    utcnow,
)
from .exceptions import Forbidden, InvalidField, NotFound

signals = Namespace()
# Sent after a comment is stored: (comment, decision).
comment_submitted = signals.signal("comment-submitted")
# Sent after a moderator or API key changes a comment's status: (comment, event).
comment_moderated = signals.signal("comment-moderated")

SUBMIT_FIELDS = frozenset(
    {"site", "uri", "title", "parent", "author", "email", "website", "text", "hp", "elapsed_ms"}
)
EDIT_FIELDS = frozenset({"text", "author", "website"})
REPORT_REASONS = ("spam", "abuse", "off-topic", "other")
MAX_URI = 1024
# Largest id an Integer column holds on PostgreSQL (and so on every database we support).
MAX_ID = 2**31 - 1
MAX_TITLE = 300
# Reply nesting a thread page keeps; deeper replies are listed beside their ancestor there.
MAX_DEPTH = 32
# Orders of a thread listing, and the longest `cursor` it reads (its own are about 100).
THREAD_SORTS = ("oldest", "newest")
MAX_THREAD_CURSOR = 200


@dataclass(frozen=True)
class Client:
    """Who sent a request: their raw address (never stored) and user agent."""

    addr: str
    user_agent: str = ""


@dataclass(frozen=True)
class Pipeline:
    """What the pipeline needs from configuration, resolved once per request."""

    classifier: Classifier | None
    default_thresholds: Mapping[str, Mapping[str, float]]
    max_links: int = 3
    edit_window: timedelta = timedelta(minutes=15)
    # Fastest plausible human fill time of the widget's form, in milliseconds.
    min_fill_ms: int = 2000


@dataclass(frozen=True)
class Submission:
    """A stored comment with its decision and the author's edit token."""

    comment: Comment  # detached, with its thread: load it into a session to change it
    decision: policy.Decision
    token: str


# -- small pure helpers ---------------------------------------------------------------------


_IPV4_NET = (1 << 32) - (1 << 8)  # keep the /24
_IPV6_NET = (1 << 128) - (1 << 80)  # keep the /48


def anonymise_addr(addr: str) -> str:
    """Return the /24 (IPv4) or /48 (IPv6) network of an address, or "" if it is not one."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(ip) & _IPV4_NET))
    return str(ipaddress.IPv6Address(int(ip) & _IPV6_NET))


def normalise_uri(value: object, field: str = "uri") -> str:
    """Return the thread key of a page: its path, without query, fragment or trailing slash."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidField(field, "is required: the page path, e.g. /posts/hello")
    return _path_of(value, field)


@lru_cache(maxsize=4096)
def _path_of(value: str, field: str) -> str:
    """normalise_uri for a non-empty string; remembered, as pages ask for the same URIs."""
    raw = sanitising.normalise(value).strip()
    if len(raw) > MAX_URI:
        raise InvalidField(field, f"must be at most {MAX_URI} characters")
    if raw.startswith("//"):  # a path such as //2024/01/post, not a host name
        raw = "/" + raw.lstrip("/")
    try:
        parsed = urllib.parse.urlsplit(raw)
    except ValueError:  # e.g. an unclosed [ in the host
        raise InvalidField(field, "must be a path or an http(s) URL") from None
    if parsed.scheme and parsed.scheme not in ("http", "https"):
        raise InvalidField(field, "must be a path or an http(s) URL")
    path = _one_spelling(parsed.path or "/")
    if not path.startswith("/"):
        path = "/" + path
    while "//" in path:
        path = path.replace("//", "/")
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    if len(path) > MAX_URI:
        raise InvalidField(field, f"must be at most {MAX_URI} characters once percent-encoded")
    return path


_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# What browsers percent-encode in a path (the URL standard's path percent-encode set, less
# the controls normalise() already removed), and the backslash they read as a slash.
_RAW_IN_PATHS = {**{ord(c): f"%{ord(c):02X}" for c in ' "<>`{}^|'}, ord("\\"): "/"}


def _escaped(data: bytes) -> str:
    return "".join(f"%{byte:02X}" for byte in data)


def _readable(char: str) -> str:
    """A non-ASCII character as it reads, or escaped if it would not show as itself (spaces,
    controls, combining marks: they would merge with, or vanish beside, what is next)."""
    if char.isspace() or unicodedata.category(char)[0] in "CMZ":
        return _escaped(char.encode("utf-8"))
    return char


_BYTE_RUNS = re.compile(rb"[\x80-\xff]+|[\x00-\x7f]")


def _decode_escapes(match: re.Match[str]) -> str:
    """Decode a run of escapes: unreserved ASCII and UTF-8 text, each stretch of non-ASCII
    bytes on its own (one that is not UTF-8, a legacy encoding, stays escaped as a whole)."""
    out = []
    for piece in _BYTE_RUNS.finditer(bytes.fromhex(match.group(0).replace("%", ""))):
        chunk = piece.group(0)
        if chunk[0] < 0x80:
            char = chr(chunk[0])
            out.append(char if char in _UNRESERVED else f"%{chunk[0]:02X}")
            continue
        try:
            out.extend(_readable(char) for char in chunk.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(_escaped(chunk))
    return "".join(out)


def _one_spelling(path: str) -> str:
    """Return the one spelling of a path that any of its percent-encodings has.

    A browser's location.pathname escapes /posts/旧区改造 as /posts/%E6%97%A7%E5%8C%BA...,
    while a blogger may write it as it reads. Text is written as it reads (escapes of
    non-ASCII and unreserved characters decoded); escapes of other ASCII characters (%2F,
    %3F, %25, ...) and of bytes that are not UTF-8 are kept, in upper case; what browsers
    escape is escaped (a lone % as %25), so every spelling names one thread, and the
    spelling of a spelling is itself.
    """
    path = _LONE_PERCENT.sub("%25", path).translate(_RAW_IN_PATHS)
    path = _NON_ASCII.sub(lambda m: _readable(m.group(0)), path)
    return _ESCAPES.sub(_decode_escapes, path)


def author_key(email: str, author: str, addr: str) -> str:
    """Return a stable, non-reversible key grouping one author's comments."""
    basis = f"e:{email.lower()}" if email else f"n:{author.casefold()}|{addr}"
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def hash_token(token: str) -> str:
    """Return the stored form of an edit token."""
    return hashlib.sha256(token.encode()).hexdigest()


ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso(value: datetime | None) -> str | None:
    """Return an ISO 8601 UTC timestamp with a Z suffix."""
    return None if value is None else value.strftime(ISO_FORMAT)


def from_iso(value: str | None) -> datetime | None:
    """Return the aware UTC time that iso() wrote (None for None)."""
    return None if value is None else datetime.strptime(value, ISO_FORMAT).replace(tzinfo=UTC)


def _domain_candidates(hosts: Iterable[str]) -> set[str]:
    """Return every host and each of its parent domains (a.b.c → a.b.c, b.c)."""
    out: set[str] = set()
    for host in hosts:
        parts = host.lower().strip(".").split(".")
        for i in range(len(parts) - 1):
            out.add(".".join(parts[i:]))
    return out


def _host(url: str) -> str:
    return (urllib.parse.urlsplit(url).hostname or "") if url else ""


# -- lookups --------------------------------------------------------------------------------


def get_site(key: object) -> Site:
    """Return the site with this public key, or raise NotFound naming the field."""
    if not isinstance(key, str) or not key:
        raise InvalidField("site", "is required: the site key from the embed snippet")
    if not is_site_key(key):
        raise NotFound("unknown site key", field="site", code="unknown_site")
    site = db.session.execute(select(Site).where(Site.key == key)).scalar_one_or_none()
    if site is None:
        raise NotFound("unknown site key", field="site", code="unknown_site")
    return site


def get_comment(comment_id: int) -> Comment:
    """Return a comment by id, or raise NotFound."""
    # Ids past the integer column's range cannot exist (and would make the driver raise).
    comment = db.session.get(Comment, comment_id) if 0 < comment_id <= MAX_ID else None
    if comment is None:
        raise NotFound("no such comment")
    return comment


_ban, _trusted, _threads = Ban.__table__, TrustedAuthor.__table__, Thread.__table__
# Domains are matched through a fixed number of parameters: an expanding IN list would be
# rendered into new SQL on every call. Comments with more hosts ask again for the rest.
_DOMAIN_SLOTS = 8
_DOMAIN_KEYS = tuple(f"domain{i}" for i in range(_DOMAIN_SLOTS))
# The lookups every submission makes, built once (the ORM would rebuild them per call): is
# a ban in force on the author (as "kind value"), does the site trust them, and the thread.
_BAN = (
    select(_ban.c.kind + " " + _ban.c.value)
    .where(
        or_(_ban.c.site_id == bindparam("site"), _ban.c.site_id.is_(None)),
        or_(_ban.c.expires_at.is_(None), _ban.c.expires_at > bindparam("now")),
        or_(
            and_(_ban.c.kind == "email", _ban.c.value == bindparam("email")),
            and_(_ban.c.kind == "addr", _ban.c.value == bindparam("addr")),
            and_(_ban.c.kind == "domain",
                 _ban.c.value.in_([bindparam(k) for k in _DOMAIN_KEYS])),
        ),
    )
    .limit(1)
    .scalar_subquery()
    .label("ban")
)
_TRUSTED = exists().where(
    _trusted.c.site_id == bindparam("site"), _trusted.c.author_key == bindparam("key")
).label("trusted")
_STANDING = select(_BAN, _TRUSTED)
_BAN_ONLY = select(_BAN)


def _thread_column(name: str) -> Any:
    return (select(_threads.c[name])
            .where(_threads.c.site_id == bindparam("site"), _threads.c.uri == bindparam("uri"))
            .scalar_subquery().label(f"thread_{name}"))


# A new comment's author standing and its thread in one round trip.
_STANDING_AND_THREAD = select(
    _BAN, _TRUSTED, _thread_column("id"), _thread_column("title"), _thread_column("created_at")
)
# A new comment and its audit row, as statements built once (their cache keys too), each
# column bound by name: every column but the id is given.
_COMMENT_BINDS = {c.key: bindparam(c.key, type_=c.type) for c in Comment.__table__.c
                  if c.key != "id"}
_INSERT_COMMENT = insert(Comment.__table__).values(_COMMENT_BINDS)
_INSERT_EVENT = insert(ModerationEvent.__table__).values({
    c.key: bindparam(c.key, type_=c.type) for c in ModerationEvent.__table__.c if c.key != "id"
})


def _insert_both() -> Any:
    """Build one INSERT of a new comment and its audit row (PostgreSQL: a data-modifying CTE).

    Its parameters are the comment's columns, plus the event's "actor", "action" and "reason";
    the event shares the comment's site, status and time.
    """
    comments, events = Comment.__table__, ModerationEvent.__table__
    binds = _COMMENT_BINDS
    new = insert(comments).values(binds).returning(comments.c.id).cte("new_comment")
    event = select(
        binds["site_id"], new.c.id, bindparam("actor", type_=events.c.actor.type),
        bindparam("action", type_=events.c.action.type), null(), binds["status"],
        bindparam("reason", type_=events.c.reason.type), binds["created_at"],
    )
    columns = ["site_id", "comment_id", "actor", "action", "from_status", "to_status",
               "reason", "created_at"]
    # Columns left out (details) stay NULL: no Python-side defaults in the fixed statement.
    return (insert(events).from_select(columns, event, include_defaults=False)
            .returning(events.c.comment_id))


_INSERT_BOTH = _insert_both()
_PARENT = select(Comment.__table__.c["id", "thread_id", "root_id", "status"]).where(
    Comment.__table__.c.id == bindparam("id")
)
_PRIOR_PUBLISHED = select(func.count(Comment.__table__.c.id)).where(
    Comment.__table__.c.site_id == bindparam("site"),
    Comment.__table__.c.author_key == bindparam("key"),
    Comment.__table__.c.status == Status.PUBLISHED.value,
)


def _hosts(website: str, html: str, email: str) -> list[str]:
    """Return the hosts a comment names: its website, its links and its e-mail domain."""
    hosts = [_host(website), *sanitising.link_domains(html)]
    if email:
        hosts.append(email.rsplit("@", 1)[-1])
    return [h for h in hosts if h]


def _domain_slots(domains: Sequence[str]) -> dict[str, str]:
    # An empty string matches no ban: ban values are never empty.
    return dict(zip(_DOMAIN_KEYS, [*domains, *[""] * _DOMAIN_SLOTS], strict=False))


def _standing_params(site: Site, key: str, email: str, addr: str,
                     domains: Sequence[str]) -> dict[str, Any]:
    return {"site": site.id, "key": key, "now": utcnow(), "email": email.lower(), "addr": addr,
            **_domain_slots(domains)}


Lookup = Callable[[Executable, dict[str, Any]], Result[Any]]


def _in_session(statement: Executable, params: dict[str, Any]) -> Result[Any]:
    """Run a statement in the session's transaction."""
    return db.session.connection().execute(statement, params)


def _lookup_direct(statement: Executable, params: dict[str, Any]) -> Result[Any]:
    """Run a lookup straight on the driver, outside any transaction."""
    with driver_connection() as connection:
        return connection.result(statement, params)


def _store_direct(row: Mapping[str, Any], event: Mapping[str, Any],
                  audit: Mapping[str, Any]) -> int:
    """Store a new comment and its audit row straight on the driver; return the comment's id."""
    if db.engine.dialect.name == "postgresql":
        with driver_connection() as connection:  # one INSERT, committed as it runs
            return int(connection.rows(_INSERT_BOTH, {**row, **event})[0][0])
    with driver_connection(transaction=True) as connection:
        cursor = connection.execute(_INSERT_COMMENT, row)
        comment_id = int(cursor.lastrowid)
        cursor.close()
        connection.execute(_INSERT_EVENT, {**audit, "comment_id": comment_id}).close()
    return comment_id


def _ban_in_force(found: str | None, params: Mapping[str, Any], domains: Sequence[str],
                  lookup: Lookup = _in_session) -> str | None:
    """Return the ban the standing query found, else one on the domains past its slots."""
    start = _DOMAIN_SLOTS
    while found is None and start < len(domains):
        rest = _domain_slots(domains[start:start + _DOMAIN_SLOTS])
        found = lookup(_BAN_ONLY, {**params, "email": "", "addr": "", **rest}).scalar()
        start += _DOMAIN_SLOTS
    return found


def author_standing(site: Site, key: str, email: str, addr: str,
                    hosts: Iterable[str]) -> tuple[str | None, bool]:
    """Return ("kind value" of a ban in force on this author or None, whether they are trusted).

    A ban matches the e-mail, the anonymised address, or any of the hosts or their parents.
    """
    domains = sorted(_domain_candidates(hosts))
    params = _standing_params(site, key, email, addr, domains)
    found = db.session.connection().execute(_STANDING, params).one()
    return _ban_in_force(found.ban, params, domains), bool(found.trusted)


def _prior_published(site_id: int, key: str, lookup: Lookup) -> int:
    return int(lookup(_PRIOR_PUBLISHED, {"site": site_id, "key": key}).scalar_one())


def site_settings(site: Site, pipeline: Pipeline) -> policy.SiteSettings:
    """Return the site's policy with the model's and the service's defaults filled in."""
    defaults = dict(pipeline.default_thresholds)
    if pipeline.classifier is not None:
        defaults.update(pipeline.classifier.thresholds)
    return policy.SiteSettings.from_json(site.settings, defaults, pipeline.max_links)


# -- the pipeline ---------------------------------------------------------------------------


def reject_unknown(payload: Mapping[str, Any], allowed: Collection[str]) -> None:
    """Refuse fields outside the allowlist, naming the first unknown one."""
    unknown = sorted(set(payload).difference(allowed))
    if unknown:
        raise InvalidField(unknown[0], "is not a known field")


def _score(pipeline: Pipeline, item: CommentText) -> Scores | None:
    if pipeline.classifier is None:
        return None
    return pipeline.classifier.score_one(item)


def _apply_scores(comment: Comment, scores: Scores | None, decision: policy.Decision) -> None:
    comment.spam_score = None if scores is None else round(scores.spam, 4)
    comment.toxicity_score = None if scores is None else round(scores.toxicity, 4)
    comment.scores = {} if scores is None else scores.as_dict()
    comment.reasons = list(decision.reasons)
    comment.model_version = decision.model_version
    comment.status = decision.status


def _evaluate(
    site: Site,
    pipeline: Pipeline,
    *,
    text: str,
    html: str,
    author: str,
    email: str,
    website: str,
    addr: str,
    key: str,
    standing: tuple[str | None, bool] | None = None,
    lookup: Lookup = _in_session,
) -> tuple[Scores | None, policy.Decision]:
    """Score a cleaned comment and decide what the site's policy does with it.

    ``standing`` is the author's (ban, trusted) when the caller has looked it up already;
    ``lookup`` runs the author's history query.
    """
    if standing is None:
        standing = author_standing(site, key, email, addr, _hosts(website, html, email))
    ban, trusted = standing
    plain = sanitising.plain_text(html)
    scores = _score(pipeline, CommentText(plain, author, website, email))
    settings = site_settings(site, pipeline)
    context = policy.Context(
        text=text,
        author=author,
        website=website,
        links=sanitising.count_links(html),
        shown=plain if plain != text else "",
        # Only "new commenter" pre-moderation needs the author's history.
        prior_published=(
            _prior_published(site.id, key, lookup) if settings.premoderation == "new" else 0
        ),
        banned=ban,
    )
    version = pipeline.classifier.version if pipeline.classifier else None
    decision = policy.decide(scores, context, settings, version)
    # Trust only ever turns a hold into a publish.
    if decision.action is policy.Action.HOLD and trusted:
        decision = policy.decide(scores, replace(context, trusted=True), settings, version)
    return scores, decision


@dataclass(frozen=True)
class Assessment:
    """What the pipeline would decide about a comment, with the text the model saw."""

    item: CommentText
    scores: Scores | None
    decision: policy.Decision


def assess(site: Site, fields: Mapping[str, Any], client: Client, pipeline: Pipeline) -> Assessment:
    """Validate, sanitise, score and decide a comment as submit() would, storing nothing."""
    text, html = sanitising.clean_text(fields.get("text"))
    author = sanitising.clean_author(fields.get("author"))
    email = sanitising.clean_email(fields.get("email"))
    website = sanitising.clean_website(fields.get("website"))
    addr = anonymise_addr(client.addr)
    scores, decision = _evaluate(
        site, pipeline, text=text, html=html, author=author, email=email, website=website,
        addr=addr, key=author_key(email, author, addr),
    )
    item = CommentText(sanitising.plain_text(html), author, website, email)
    return Assessment(item, scores, decision)


def _parent(thread: Thread, parent_id: object, lookup: Lookup) -> Row[Any] | None:
    """Return the id, thread_id, root_id and status of the comment replied to, if any."""
    if parent_id is None:
        return None
    if (isinstance(parent_id, bool) or not isinstance(parent_id, int)
            or not 0 < parent_id <= MAX_ID):
        raise InvalidField("parent", "must be the id of a comment in this thread")
    parent = lookup(_PARENT, {"id": parent_id}).one_or_none()
    if parent is None or parent.thread_id != thread.id:
        raise InvalidField("parent", "is not a comment in this thread")
    if parent.status != Status.PUBLISHED:
        raise InvalidField("parent", "is not published")
    return parent


M = TypeVar("M")


def _detached(model: type[M], row: Mapping[str, Any], **loaded: Any) -> M:
    """Return a detached instance of a row read or written with Core, without a query.

    ``loaded`` sets relationships to objects already at hand, as if they had been loaded.
    Callers that go on changing it load it into their session (``db.session.get``).
    """
    # Filled the way a query loads a row (straight into the instance state): the constructor
    # would fire an attribute event per column, and adding it to the session would cost
    # more than the INSERT itself.
    obj = sa_inspect(model).class_manager.new_instance()
    instance_state(obj).dict.update(row)
    make_transient_to_detached(obj)
    for name, value in loaded.items():
        set_committed_value(obj, name, value)
    return obj


def _thread(site: Site, uri: str, title: object, found: Any) -> Thread:
    """Return the page's thread, creating it with the first comment.

    ``found`` is the row of thread_id, thread_title and thread_created_at the caller looked up
    (thread_id None: there is no thread yet).
    """
    if found.thread_id is not None:
        return _detached(Thread, {"id": found.thread_id, "site_id": site.id, "uri": uri,
                                  "title": found.thread_title,
                                  "created_at": found.thread_created_at})
    if title is not None and not isinstance(title, str):
        raise InvalidField("title", "must be a string")
    clean_title = " ".join(sanitising.normalise(title or "").split())[:MAX_TITLE]
    thread = Thread(site_id=site.id, uri=uri, title=clean_title)
    # A concurrent first comment may create the same thread; the savepoint keeps ours intact.
    try:
        with db.session.begin_nested():
            db.session.add(thread)
    except Exception:  # noqa: BLE001 - an IntegrityError from the unique (site, uri) pair
        thread = db.session.execute(
            select(Thread).where(Thread.site_id == site.id, Thread.uri == uri)
        ).scalar_one()
    return thread


def bot_signal(payload: Mapping[str, Any], min_fill_ms: int) -> str | None:
    """Return why the widget's honeypot or fill time marks a submission as a bot, if it does."""
    honeypot = payload.get("hp")
    if honeypot is not None and not isinstance(honeypot, str):
        raise InvalidField("hp", "must be a string")
    elapsed = payload.get("elapsed_ms")
    if elapsed is not None and (
        isinstance(elapsed, bool) or not isinstance(elapsed, int | float) or elapsed < 0
    ):
        raise InvalidField("elapsed_ms", "must be a number of milliseconds")
    if honeypot:
        return "bot: honeypot field filled in"
    if elapsed is not None and elapsed < min_fill_ms:
        return f"bot: form filled in {int(elapsed)} ms (minimum {min_fill_ms} ms)"
    return None


def submit(
    payload: Mapping[str, Any],
    client: Client,
    pipeline: Pipeline,
    site: Site | None = None,
    actor: str = "reader",
    admit: Callable[[], None] | None = None,
) -> Submission:
    """Validate, sanitise, score, decide and store a new comment.

    ``admit`` (the posting limits; it raises to refuse) runs once the cheap fields are valid
    and before the text is rendered and sanitised, the costly step: a typo in the name, email
    or website does not use up one of the reader's posts, and every post that costs more
    than a field check is counted.
    """
    reject_unknown(payload, SUBMIT_FIELDS)
    bot = bot_signal(payload, pipeline.min_fill_ms)
    site = site or get_site(payload.get("site"))
    uri = normalise_uri(payload.get("uri"))
    author = sanitising.clean_author(payload.get("author"))
    email = sanitising.clean_email(payload.get("email"))
    website = sanitising.clean_website(payload.get("website"))
    if admit is not None:
        admit()
    text, html = sanitising.clean_text(payload.get("text"))
    addr = anonymise_addr(client.addr)
    key = author_key(email, author, addr)

    # A post made outside an open transaction runs straight on the driver: its lookups outside
    # any transaction, then the comment and its audit row in one transaction of their own (on
    # PostgreSQL one INSERT that commits as it runs: two round trips in all). Otherwise (a
    # caller's open transaction; the first comment of a page, which creates its thread) it
    # all runs in the session's transaction.
    alone = not session_in_transaction()
    lookup: Lookup = _lookup_direct if alone else _in_session
    domains = sorted(_domain_candidates(_hosts(website, html, email)))
    params = _standing_params(site, key, email, addr, domains)
    found = lookup(_STANDING_AND_THREAD, {**params, "uri": uri}).one()
    thread = _thread(site, uri, payload.get("title"), found)
    parent = _parent(thread, payload.get("parent"), lookup)
    scores, decision = _evaluate(
        site, pipeline, text=text, html=html, author=author, email=email, website=website,
        addr=addr, key=key,
        standing=(_ban_in_force(found.ban, params, domains, lookup), bool(found.trusted)),
        lookup=lookup,
    )
    if bot:
        # Kept in the Spam queue with the reason; the client sees an ordinary rejection.
        decision = replace(
            decision, action=policy.Action.REJECT, reasons=(bot, *decision.reasons),
            reject_as=Status.SPAM,
        )
    token = secrets.token_urlsafe(24)
    now = utcnow()
    scored = scores is not None
    row: dict[str, Any] = {
        "site_id": site.id,
        "thread_id": thread.id,
        "parent_id": parent.id if parent else None,
        "root_id": (parent.root_id or parent.id) if parent else None,
        "author": author,
        "email": email,
        "website": website,
        "author_key": key,
        "client_addr": addr,
        "user_agent": client.user_agent[:300],
        "text": text,
        "html": html,
        "status": decision.status,
        "spam_score": round(scores.spam, 4) if scored else None,
        "toxicity_score": round(scores.toxicity, 4) if scored else None,
        "scores": scores.as_dict() if scored else {},
        "reasons": list(decision.reasons),
        "model_version": decision.model_version,
        "edit_token_hash": hash_token(token),
        "created_at": now,
        "edited_at": None,
        "decided_at": None if decision.action is policy.Action.HOLD else now,
    }
    event = {"actor": actor, "action": "submit", "reason": "; ".join(decision.reasons)}
    # (_thread() opens the session's transaction when it creates the page's thread.)
    audit = {**event, "site_id": site.id, "from_status": None, "to_status": decision.status,
             "details": None, "created_at": now}
    if alone and not session_in_transaction():
        comment_id = _store_direct(row, event, audit)
    else:
        # Plain INSERTs for the comment and its audit row, in one transaction: the unit of
        # work has nothing to add for a single new row and costs more than the insert itself.
        connection = db.session.connection()
        comment_id = connection.execute(_INSERT_COMMENT, row).inserted_primary_key[0]
        connection.execute(_INSERT_EVENT, {**audit, "comment_id": comment_id})
        db.session.commit()
    comment = _detached(Comment, {"id": comment_id, **row}, thread=thread)
    comment_submitted.send(comment, decision=decision)
    return Submission(comment, decision, token)


def edit_details(comment: Comment, **fields: str) -> dict[str, Any]:
    """Return the audit details of an edit: the old values of the fields it changes, so the
    trail keeps what was there (an insult edited away after a report stays on record)."""
    return {"before": {name: getattr(comment, name) for name, value in fields.items()
                       if getattr(comment, name) != value}}


def check_token(comment: Comment, token: str | None) -> bool:
    """Return whether the token is this comment's edit token."""
    if not token or not comment.edit_token_hash:
        return False
    return hmac.compare_digest(hash_token(token), comment.edit_token_hash)


def editable_until(comment: Comment, pipeline: Pipeline) -> datetime:
    """Return the end of the author's edit window."""
    return comment.created_at + pipeline.edit_window


def _own_comment(comment: Comment, token: str | None, pipeline: Pipeline) -> None:
    if not check_token(comment, token):
        raise Forbidden("a valid edit token is required", code="invalid_token")
    if comment.status not in (Status.PUBLISHED, Status.PENDING):
        raise Forbidden("this comment can no longer be changed", code="not_editable")
    if utcnow() > editable_until(comment, pipeline):
        raise Forbidden("the edit window has closed", code="edit_window_closed")


def edit(
    comment: Comment,
    token: str | None,
    payload: Mapping[str, Any],
    client: Client,
    pipeline: Pipeline,
) -> policy.Decision:
    """Apply an author's edit, then sanitise, score and decide again."""
    _own_comment(comment, token, pipeline)
    reject_unknown(payload, EDIT_FIELDS)
    if not payload:
        raise InvalidField("text", "nothing to change")
    text, html = comment.text, comment.html
    if "text" in payload:
        text, html = sanitising.clean_text(payload["text"])
    author = (
        sanitising.clean_author(payload["author"]) if "author" in payload else comment.author
    )
    website = (
        sanitising.clean_website(payload["website"]) if "website" in payload else comment.website
    )
    scores, decision = _evaluate(
        comment.site, pipeline, text=text, html=html, author=author, email=comment.email,
        website=website, addr=comment.client_addr, key=comment.author_key,
    )
    before = comment.status
    replaced = edit_details(comment, text=text, author=author, website=website)
    comment.text, comment.html, comment.author, comment.website = text, html, author, website
    comment.edited_at = utcnow()
    _apply_scores(comment, scores, decision)
    db.session.add(
        ModerationEvent(
            site_id=comment.site_id,
            comment_id=comment.id,
            actor="author",
            action="edit",
            from_status=before,
            to_status=comment.status,
            reason="; ".join(decision.reasons),
            details=replaced,
        )
    )
    db.session.commit()
    comment_submitted.send(comment, decision=decision)
    return decision


def delete_own(comment: Comment, token: str | None, pipeline: Pipeline) -> None:
    """Delete a comment at its author's request, within the edit window."""
    _own_comment(comment, token, pipeline)
    _set_status(comment, Status.DELETED, actor="author", action="delete", reason="by its author")
    db.session.commit()


# -- moderation -----------------------------------------------------------------------------

MODERATION_ACTIONS = {
    "approve": Status.PUBLISHED,
    "reject": Status.REJECTED,
    "spam": Status.SPAM,
    "delete": Status.DELETED,
}
# What a moderator's decision teaches the model, kept for retraining.
ACTION_LABELS = {"approve": "ham", "reject": "toxic", "spam": "spam"}


def _set_status(
    comment: Comment, status: str, *, actor: str, action: str, reason: str = ""
) -> ModerationEvent:
    event = ModerationEvent(
        site_id=comment.site_id,
        comment_id=comment.id,
        actor=actor,
        action=action,
        from_status=comment.status,
        to_status=status,
        reason=reason,
    )
    comment.status = status
    comment.decided_at = utcnow()
    db.session.add(event)
    return event


def moderate(comment: Comment, action: str, actor: str, reason: str = "",
             batch: str = "") -> ModerationEvent:
    """Apply a moderator's action to one comment and record it (caller commits).

    ``batch`` marks the audit rows of one click, so the click can be undone (undo_batch).
    """
    if action not in MODERATION_ACTIONS:
        raise InvalidField("action", "must be one of " + ", ".join(MODERATION_ACTIONS))
    decided_before = comment.decided_at
    event = _set_status(comment, MODERATION_ACTIONS[action], actor=actor, action=action,
                        reason=reason)
    label = ACTION_LABELS.get(action)
    if label:
        db.session.add(
            Label(
                site_id=comment.site_id,
                comment_id=comment.id,
                text=comment.text,
                author=comment.author,
                website=comment.website,
                email=comment.email,
                label=label,
                source=actor,
                scores=dict(comment.scores or {}),
                model_version=comment.model_version,
            )
        )
    dismissed: list[int] = []
    if action in ("approve", "reject", "spam", "delete"):
        now = utcnow()
        for open_report in db.session.execute(
            select(Report).where(Report.comment_id == comment.id, Report.resolved_at.is_(None))
        ).scalars():
            open_report.resolved_at = now
            dismissed.append(open_report.id)
    if batch:
        # What undo_batch needs: the click, the reports this action dismissed, and the decision
        # time the comment had (None: held, undecided), which Undo puts back.
        event.details = {"batch": batch, "reports": dismissed, "decided_at": iso(decided_before)}
    return event


def changed_by(comments: Sequence[Comment], action: str) -> list[Comment]:
    """Return the comments an action would tell something new about: those not yet in its
    status; those in it with open reader reports (approving dismisses them); and those the
    model put there that no one has yet given this action (approving a published comment
    confirms the model, a training label).

    Repeating an action (a double click, a stale page) then writes no second audit row,
    training label or webhook.
    """
    if action not in MODERATION_ACTIONS:
        raise InvalidField("action", "must be one of " + ", ".join(MODERATION_ACTIONS))
    same = [c.id for c in comments if c.status == MODERATION_ACTIONS[action]]
    done = set(db.session.execute(
        select(Comment.id).where(Comment.id.in_(same), already_done(action))
    ).scalars()) if same else set()
    return [c for c in comments if c.id not in done]


def already_done(action: str) -> ColumnElement[bool]:
    """Whether an action would tell nothing new about a comment (changed_by): it is in the
    action's status, was already given this action (and not undone), and has no open report."""
    reports = Report.__table__
    return and_(
        Comment.status == MODERATION_ACTIONS[action],
        exists().where(ModerationEvent.comment_id == Comment.id,
                       ModerationEvent.action == action,
                       ModerationEvent.details["undone"].as_boolean().is_not(True)),
        ~exists().where(reports.c.comment_id == Comment.id, reports.c.resolved_at.is_(None)),
    )


def moderate_many(
    comments: Sequence[Comment], action: str, actor: str, reason: str = "", batch: str = ""
) -> list[Comment]:
    """Apply one action to many comments in one transaction and notify listeners.

    Comments the action would not change are left alone; return those it changed.
    """
    changed = changed_by(comments, action)
    events = [moderate(c, action, actor, reason, batch) for c in changed]
    db.session.commit()
    for comment, event in zip(changed, events, strict=True):
        comment_moderated.send(comment, event=event)
    return changed


# How long after a moderator's click it may be undone.
UNDO_SECONDS = 3600


def undo_batch(batch: str, actor: str, allowed: Callable[[int], bool]) -> tuple[int, int]:
    """Undo one click of this moderator's (its audit rows share ``batch``): each comment goes
    back to the status and decision time it had, unless anything changed it since; the training
    label the click added is dropped and the reader reports it dismissed are open again. Return
    how many were undone and how many had changed since. A click is undone once.
    """
    since = utcnow() - timedelta(seconds=UNDO_SECONDS)
    events = db.session.execute(
        select(ModerationEvent).where(
            ModerationEvent.actor == actor, ModerationEvent.created_at >= since,
            ModerationEvent.action.in_(MODERATION_ACTIONS),
            ModerationEvent.details["batch"].as_string() == batch,
            ModerationEvent.details["undone"].as_boolean().is_not(True),
        ).order_by(ModerationEvent.id)
    ).scalars().all()
    undone: list[tuple[Comment, ModerationEvent]] = []
    threads: set[int] = set()
    moved_on = 0
    for event in events:
        comment = db.session.get(Comment, event.comment_id) if event.comment_id else None
        if comment is None or not allowed(comment.site_id) or event.from_status is None:
            continue
        changed_since = db.session.execute(select(exists().where(
            ModerationEvent.comment_id == comment.id, ModerationEvent.id > event.id,
            ModerationEvent.to_status.is_not(None)))).scalar()
        if changed_since or comment.status != event.to_status:
            moved_on += 1
            continue
        label = ACTION_LABELS.get(event.action)
        if label:
            # Written in the same flush as the audit row, a moment apart (either may be first).
            near = timedelta(seconds=5)
            db.session.execute(delete(Label).where(
                Label.comment_id == comment.id, Label.source == actor, Label.label == label,
                Label.created_at.between(event.created_at - near, event.created_at + near)))
        dismissed = (event.details or {}).get("reports") or []
        if dismissed:
            db.session.execute(update(Report).where(Report.id.in_(dismissed))
                               .values(resolved_at=None))
        details = event.details = {**(event.details or {}), "undone": True}
        undone.append((comment, _set_status(comment, event.from_status, actor=actor,
                                            action="undo", reason=f"undo {event.action}")))
        # Clicks from before the decision time was kept did not record it: those comments keep
        # the time of the undo, as they always did.
        if "decided_at" in details:
            comment.decided_at = from_iso(details["decided_at"])
        threads.add(comment.thread_id)
    if threads:
        # The decision times went back, so the thread's latest decision may not have moved:
        # the count does, and with it the page cache's fingerprint (readcache).
        db.session.execute(update(Thread).where(Thread.id.in_(threads))
                           .values(undo_count=Thread.undo_count + 1))
    db.session.commit()
    for comment, event in undone:
        comment_moderated.send(comment, event=event)
    return len(undone), moved_on


def report(comment: Comment, payload: Mapping[str, Any], client: Client) -> Report:
    """Record a reader's flag on a published comment."""
    reject_unknown(payload, frozenset({"reason", "note"}))
    if comment.status != Status.PUBLISHED:
        raise NotFound("no such comment")
    reason = payload.get("reason", "other")
    if reason not in REPORT_REASONS:
        raise InvalidField("reason", "must be one of " + ", ".join(REPORT_REASONS))
    note = payload.get("note", "")
    if not isinstance(note, str):
        raise InvalidField("note", "must be a string")
    note = " ".join(sanitising.normalise(note).split())
    if len(note) > 500:
        raise InvalidField("note", "must be at most 500 characters")
    flag = Report(comment_id=comment.id, reason=reason, note=note,
                  client_addr=anonymise_addr(client.addr))
    db.session.add(flag)
    db.session.commit()
    return flag


# -- reading --------------------------------------------------------------------------------

PUBLIC_COLUMNS = (
    Comment.id,
    Comment.parent_id,
    Comment.root_id,
    Comment.author,
    Comment.website,
    Comment.html,
    Comment.status,
    Comment.created_at,
    Comment.edited_at,
)


def serialize(comment: Comment) -> dict[str, Any]:
    """Return the public fields of a comment."""
    return {
        "id": comment.id,
        "parent": comment.parent_id,
        "author": comment.author,
        "website": comment.website,
        "html": comment.html,
        "created": iso(comment.created_at),
        "edited": iso(comment.edited_at),
    }


def serialize_own(comment: Comment, pipeline: Pipeline) -> dict[str, Any]:
    """Return a comment as its author sees it: status, raw text and edit window included."""
    out = serialize(comment)
    out.update(
        status=comment.status,
        text=comment.text,
        uri=comment.thread.uri,
        editable_until=iso(editable_until(comment, pipeline)),
    )
    return out


def _row_dict(row: Any) -> dict[str, Any]:
    if row.status != Status.PUBLISHED:
        # A removed comment that still has published replies stays as an empty placeholder.
        return {"id": row.id, "parent": row.parent_id, "deleted": True, "replies": []}
    return {
        "id": row.id,
        "parent": row.parent_id,
        "author": row.author,
        "website": row.website,
        "html": row.html,
        "created": iso(row.created_at),
        "edited": iso(row.edited_at),
        "replies": [],
    }


def _tree(roots: Sequence[Any], replies: Sequence[Any]) -> list[dict[str, Any]]:
    """Return the root comments with their replies nested, placeholders pruned.

    Replies nested deeper than MAX_DEPTH are listed, in order, beside their ancestor at that
    depth (each keeps its real "parent"), so no reply chain can make a page too deep to send.
    A removed comment stays as an empty placeholder only while it has a published reply below.
    """
    nodes = {row.id: _row_dict(row) for row in (*roots, *replies)}
    depth = {row.id: 1 for row in roots}
    home: dict[int, int] = {}
    # A reply's id is above its parent's, so in id order every parent comes first.
    for row in sorted(replies, key=lambda r: r.id):
        parent = row.parent_id
        if parent not in depth:
            continue
        if depth[parent] < MAX_DEPTH:
            home[row.id], depth[row.id] = parent, depth[parent] + 1
        else:
            home[row.id], depth[row.id] = home[parent], MAX_DEPTH
    for row in replies:  # siblings in the order of the query
        if row.id in home:
            nodes[home[row.id]]["replies"].append(nodes[row.id])
    # Children before parents (by real parent, wherever a reply is listed): a placeholder
    # stays only while a published comment is below it.
    alive: set[int] = set()
    below: set[int] = set()
    for row in sorted((*roots, *replies), key=lambda r: r.id, reverse=True):
        if not nodes[row.id].get("deleted") or row.id in below:
            alive.add(row.id)
            below.add(row.parent_id)
    for node in nodes.values():
        node["replies"] = [child for child in node["replies"] if child["id"] in alive]
    return [nodes[row.id] for row in roots if row.id in alive]


# -- keyset cursors -------------------------------------------------------------------------


def encode_cursor(values: Sequence[Any]) -> str:
    """Return an opaque URL-safe cursor for keyset pagination."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    packed = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


def cursor_values(token: str) -> list[Any]:
    """Return the list of values a cursor holds (ValueError if it holds none)."""
    values = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    if not isinstance(values, list):
        raise ValueError("a cursor holds a list")
    return values


def cursor_time(value: Any) -> datetime:
    """Return a cursor's time: an aware ISO 8601 string, as encode_cursor writes it."""
    if not isinstance(value, str):
        raise TypeError("the time is not a string")
    created = datetime.fromisoformat(value)
    if created.tzinfo is None:
        raise ValueError("the time has no UTC offset")
    return created.astimezone(UTC)  # OverflowError near year 1 or 9999: refused too


def cursor_id(value: Any) -> int:
    """Return a cursor's row id: a whole number an id column can hold."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise ValueError("the id is out of range")
    return value


def thread_tag(site: Site, uri: str) -> str:
    """Return the short tag a thread's cursors carry: which site and page they belong to."""
    digest = hashlib.sha256(f"{site.id}\n{uri}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode()


@dataclass(frozen=True)
class ThreadCursor:
    """Where the next page of a thread listing starts: after this top-level comment.

    It names a place in the order (the comment's time and id), not a row: the page after it
    is the same whether that comment, or any before it, was removed or new ones came in. It
    also names its thread (``thread_tag``): a place in one thread means nothing in another.
    """

    sort: str
    created: datetime
    id: int
    thread: str

    def encode(self) -> str:
        """Return the opaque `next` value a listing sends."""
        return encode_cursor([self.sort, self.created, self.id, self.thread])

    def after(self) -> ColumnElement[bool]:
        """Return the keyset condition for top-level comments after this one in its order."""
        if self.sort == "newest":
            return or_(Comment.created_at < self.created,
                       and_(Comment.created_at == self.created, Comment.id < self.id))
        return or_(Comment.created_at > self.created,
                   and_(Comment.created_at == self.created, Comment.id > self.id))


def thread_cursor(token: str, site: Site, uri: str) -> ThreadCursor:
    """Return the place a `next` value of this thread names, or raise naming the field `cursor`.

    A cursor of another thread (another page, or the same path on another site) is refused:
    its place would silently answer a wrong or empty page.
    """
    try:
        if len(token) > MAX_THREAD_CURSOR:
            raise ValueError("too long")
        sort, created, ident, thread = cursor_values(token)
        if sort not in THREAD_SORTS:
            raise ValueError("unknown sort")
        if not isinstance(thread, str):
            raise TypeError("the thread tag is not a string")
        after = ThreadCursor(sort, cursor_time(created), cursor_id(ident), thread)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidField("cursor", "is not a `next` value of a thread listing") from None
    if thread != thread_tag(site, uri):  # a label, not a secret: a plain comparison
        raise InvalidField("cursor", "belongs to another thread: send it with the `site` and "
                           "`uri` of the listing that gave it")
    return after


def thread_page(
    site: Site, uri: str, sort: str = "oldest", page: int = 1, per_page: int = 50,
    after: ThreadCursor | None = None,
) -> dict[str, Any]:
    """Return one page of a thread's published comments as a tree, with totals.

    The page is the ``page``-th by offset, or, given ``after``, the top-level comments that
    follow that place in the cursor's order (which is then the page's). Either way ``next`` is
    the cursor of the page after this one, or None when no top-level comment follows.
    """
    if after is not None:
        sort = after.sort
    thread = db.session.execute(
        select(Thread.id, Thread.title).where(Thread.site_id == site.id, Thread.uri == uri)
    ).first()
    result: dict[str, Any] = {
        "uri": uri,
        "title": thread.title if thread else "",
        "total": 0,
        "roots": 0,
        "page": None if after else page,
        "per_page": per_page,
        "pages": 0,
        "next": None,
        "comments": [],
    }
    if thread is None:
        return result
    published = Comment.status == Status.PUBLISHED
    result["total"] = db.session.execute(
        select(func.count(Comment.id)).where(Comment.thread_id == thread.id, published)
    ).scalar_one()
    if not result["total"]:
        return result
    reply = aliased(Comment)
    has_published_reply = exists().where(
        reply.root_id == Comment.id, reply.status == Status.PUBLISHED
    )
    visible_root = and_(
        Comment.thread_id == thread.id,
        Comment.parent_id.is_(None),
        or_(published, has_published_reply),
    )
    result["roots"] = db.session.execute(
        select(func.count(Comment.id)).where(visible_root)
    ).scalar_one()
    result["pages"] = math.ceil(result["roots"] / per_page)
    order = (
        (Comment.created_at.desc(), Comment.id.desc())
        if sort == "newest"
        else (Comment.created_at, Comment.id)
    )
    query = select(*PUBLIC_COLUMNS).where(visible_root).order_by(*order).limit(per_page + 1)
    if after is not None:
        query = query.where(after.after())
    else:
        query = query.offset((page - 1) * per_page)
    roots = db.session.execute(query).all()
    if len(roots) > per_page:  # one more was read only to know whether a next page exists
        roots = roots[:per_page]
        last = roots[-1]
        tag = thread_tag(site, uri)
        result["next"] = ThreadCursor(sort, last.created_at, last.id, tag).encode()
    if not roots:
        return result
    replies = db.session.execute(
        select(*PUBLIC_COLUMNS)
        .where(
            Comment.thread_id == thread.id,
            Comment.root_id.in_([row.id for row in roots]),
        )
        .order_by(Comment.created_at, Comment.id)
    ).all()
    result["comments"] = _tree(roots, replies)
    return result


def _counts_statement(uris_match: Any) -> Any:
    thread, comment = Thread.__table__, Comment.__table__
    # A count per thread through the (thread_id, status, ...) index, whatever the planner
    # believes about the table's size: a join could scan every comment.
    published = (
        select(func.count())
        .where(comment.c.thread_id == thread.c.id, comment.c.status == Status.PUBLISHED.value)
        .scalar_subquery()
    )
    return select(thread.c.uri, published).where(thread.c.site_id == bindparam("site"), uris_match)


# Built once: counts are asked for on every page with a comment link, and run straight on the
# driver (read_direct). The URIs are one parameter, so the statement never changes: an array on
# PostgreSQL, a JSON list read with json_each on SQLite.
_COUNTS = _counts_statement(Thread.__table__.c.uri.in_(
    select(column("value")).select_from(func.json_each(bindparam("uris", type_=String)))
))
_COUNTS_PG = _counts_statement(
    Thread.__table__.c.uri == any_(bindparam("uris", type_=ARRAY(String)))
)


def counts_query(dialect: str, site_id: int, wanted: list[str]) -> tuple[Any, dict[str, Any]]:
    """Return the counts statement for a database dialect and its parameters."""
    if dialect == "postgresql":
        return _COUNTS_PG, {"site": site_id, "uris": wanted}
    return _COUNTS, {"site": site_id, "uris": json.dumps(wanted)}


def counts(site: Site, uris: Sequence[str]) -> dict[str, int]:
    """Return the number of published comments for each requested URI."""
    keys = {uri: normalise_uri(uri, "uris") for uri in uris}
    wanted = sorted(set(keys.values()))
    found = dict(read_direct(*counts_query(db.engine.dialect.name, site.id, wanted)))
    return {uri: int(found.get(key, 0)) for uri, key in keys.items()}
