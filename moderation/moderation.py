"""Moderator work beyond one status change: queues, bulk actions, bans, trust, edits, audit."""

from __future__ import annotations

import binascii
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import selectinload

from . import comments, sanitising
from .db import (
    Ban,
    Comment,
    ModerationEvent,
    Report,
    Status,
    Thread,
    TrustedAuthor,
    db,
    utcnow,
)
from .exceptions import InvalidField, NotFound

QUEUES = {
    "pending": "Pending",
    "reported": "Reported",
    "rejected": "Spam / rejected",
    "published": "Published",
    # Deleted comments stay stored: listed here, they can be found and restored (approved).
    "deleted": "Deleted",
}
SORTS = ("priority", "newest", "oldest")
SEARCH_FIELDS = ("all", "text", "author", "email", "website")
BAN_KINDS = {"email": "Email", "addr": "Address (anonymised)", "domain": "Website domain"}
# Comments loaded and moderated per transaction by "everything matching this filter".
BATCH_SIZE = 500
PAGE_SIZE = 25
_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9\u00a1-\uffff-]{1,63}\.)+[a-z\u00a1-\uffff-]{2,63}$"
)

# The higher of the two scores: what the priority sort and the score range look at.
priority = func.coalesce(
    case(
        (Comment.spam_score >= Comment.toxicity_score, Comment.spam_score),
        else_=Comment.toxicity_score,
    ),
    0.0,
)
open_report = exists().where(Report.comment_id == Comment.id, Report.resolved_at.is_(None))


@dataclass(frozen=True)
class QueueFilter:
    """What a moderator asked to see: queue, sites, filters, search and sort."""

    queue: str = "pending"
    # Sites the moderator may see (None: every site) and the one picked in the filter.
    allowed_sites: tuple[int, ...] | None = None
    site_id: int | None = None
    thread: str = ""
    reason: str = ""
    score_min: float | None = None
    score_max: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str = ""
    search_in: str = "all"
    sort: str = "priority"
    extra: dict[str, Any] = field(default_factory=dict)

    def conditions(self) -> list[ColumnElement[bool]]:
        """Return the WHERE clauses for this filter."""
        where: list[ColumnElement[bool]] = []
        if self.queue == "pending":
            where.append(Comment.status == Status.PENDING)
        elif self.queue == "reported":
            where += [Comment.status == Status.PUBLISHED, open_report]
        elif self.queue == "rejected":
            where.append(Comment.status.in_([Status.SPAM, Status.REJECTED]))
        elif self.queue == "deleted":
            where.append(Comment.status == Status.DELETED)
        else:
            where.append(Comment.status == Status.PUBLISHED)
        if self.allowed_sites is not None:
            where.append(Comment.site_id.in_(self.allowed_sites) if self.allowed_sites else false())
        if self.site_id is not None:
            where.append(Comment.site_id == self.site_id)
        if self.thread:
            threads = select(Thread.id).where(Thread.uri.like(_like(self.thread), escape="\\"))
            where.append(Comment.thread_id.in_(threads))
        if self.reason:
            where.append(_any_reason_like(self.reason))
        if self.score_min is not None:
            where.append(priority >= self.score_min)
        if self.score_max is not None:
            where.append(priority <= self.score_max)
        if self.since is not None:
            where.append(Comment.created_at >= self.since)
        if self.until is not None:
            where.append(Comment.created_at < self.until)
        if self.q:
            fold = _fold()
            pattern = fold(literal(_like(self.q)))
            columns = {
                "text": Comment.text,
                "author": Comment.author,
                "email": Comment.email,
                "website": Comment.website,
            }
            chosen = list(columns.values()) if self.search_in == "all" else [
                columns.get(self.search_in, Comment.text)
            ]
            where.append(or_(*(fold(c).like(pattern, escape="\\") for c in chosen)))
        return where

    def order(self) -> tuple[Any, ...]:
        """Return the ORDER BY columns: priority (highest score, then oldest) or time."""
        if self.sort == "newest":
            return (Comment.created_at.desc(), Comment.id.desc())
        if self.sort == "oldest":
            return (Comment.created_at, Comment.id)
        return (priority.desc(), Comment.created_at, Comment.id)

    def after(self, cursor: Sequence[Any]) -> ColumnElement[bool]:
        """Return the keyset condition for rows after the cursor's row in this order."""
        if self.sort == "newest":
            created, ident = cursor
            return or_(
                Comment.created_at < created,
                and_(Comment.created_at == created, Comment.id < ident),
            )
        if self.sort == "oldest":
            created, ident = cursor
            return or_(
                Comment.created_at > created,
                and_(Comment.created_at == created, Comment.id > ident),
            )
        score, created, ident = cursor
        return or_(
            priority < score,
            and_(
                priority == score,
                or_(
                    Comment.created_at > created,
                    and_(Comment.created_at == created, Comment.id > ident),
                ),
            ),
        )

    def cursor_of(self, comment: Comment) -> list[Any]:
        """Return the keyset cursor of a row in this order."""
        if self.sort in ("newest", "oldest"):
            return [comment.created_at, comment.id]
        spam, toxicity = comment.spam_score, comment.toxicity_score
        # Mirror the SQL expression exactly, NULLs included, so the keyset never skips rows.
        score = spam if spam is not None and toxicity is not None and spam >= toxicity else toxicity
        return [0.0 if score is None else score, comment.created_at, comment.id]


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _sqlite() -> bool:
    return db.session.get_bind().dialect.name == "sqlite"


def _fold() -> Callable[[Any], ColumnElement[str]]:
    """Return the SQL function that case-folds text in every script, for searches.

    SQLite's own lower() and LIKE fold ASCII letters only ("Иван" would never match "иван"),
    so there it is Python's str.casefold, registered on each connection (db.py); PostgreSQL's
    lower() follows the database's (UTF-8) locale.
    """
    return func.casefold if _sqlite() else func.lower


def _any_reason_like(term: str) -> ColumnElement[bool]:
    """Return whether one of a comment's reasons contains the term, ignoring case.

    Each reason is compared as text: the column holds JSON, where non-ASCII letters are
    written as \\u escapes, so matching the JSON text itself would miss them. The term's
    % and _ are literal.
    """
    fold = _fold()
    pattern = fold(literal(_like(term)))
    if _sqlite():
        each = func.json_each(Comment.reasons).table_valued("value").alias("reason")
    else:
        # Anything but an array (a JSON null) has no reasons, rather than failing the query.
        array = case((func.json_typeof(Comment.reasons) == "array", Comment.reasons),
                     else_=cast(literal("[]"), JSON))
        each = func.json_array_elements_text(array).table_valued("value").alias("reason")
    return exists(select(1).select_from(each)
                  .where(fold(each.c.value).like(pattern, escape="\\")))


def _cursor_score(value: Any) -> float:
    """Return a cursor's score: a finite number (no NaN, which matches nothing)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("the score is not a finite number")
    return float(value)


def decode_cursor(token: str, sort: str) -> list[Any] | None:
    """Return the values of a cursor, or None if it is malformed or was tampered with."""
    try:
        values = comments.cursor_values(token)
        if sort in ("newest", "oldest"):
            created, ident = values
            return [comments.cursor_time(created), comments.cursor_id(ident)]
        score, created, ident = values
        return [_cursor_score(score), comments.cursor_time(created), comments.cursor_id(ident)]
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error):
        return None


@dataclass(frozen=True)
class Page:
    """One page of a queue and the cursor of the next, if there is one."""

    comments: list[Comment]
    next_cursor: str | None
    total: int


def queue_page(flt: QueueFilter, cursor: str = "", size: int = PAGE_SIZE) -> Page:
    """Return one page of the queue, keyset-paginated so deep pages stay fast."""
    query = select(Comment.id).where(*flt.conditions())
    if cursor:
        values = decode_cursor(cursor, flt.sort)
        if values is None:
            raise InvalidField("cursor", "is not a cursor from this page")
        query = query.where(flt.after(values))
    # Sort and cut ids only, then load the page's rows: sorting whole rows (text and all) of a
    # large queue is what made deep queues slow.
    ids = list(db.session.execute(query.order_by(*flt.order()).limit(size + 1)).scalars())
    loaded = {
        c.id: c
        for c in db.session.execute(
            select(Comment)
            .where(Comment.id.in_(ids))
            .options(selectinload(Comment.site), selectinload(Comment.thread))
        ).scalars()
    }
    rows = [loaded[i] for i in ids if i in loaded]
    more = len(rows) > size
    rows = rows[:size]
    nxt = comments.encode_cursor(flt.cursor_of(rows[-1])) if more and rows else None
    return Page(rows, nxt, count_matching(flt))


def _bounds(upto: int | None, action: str | None) -> list[ColumnElement[bool]]:
    """Ids up to ``upto``; with an action, only the comments it would change (as
    ``comments.changed_by``), so a bulk action that stopped early carries on where it was."""
    where = [Comment.id <= upto] if upto is not None else []
    if action is not None:
        where.append(~comments.already_done(action))
    return where


def count_matching(flt: QueueFilter, upto: int | None = None, action: str | None = None) -> int:
    """Return how many comments match the filter (with ids up to ``upto``, if given; with an
    action, only those it would change)."""
    return db.session.execute(
        select(func.count(Comment.id)).where(*flt.conditions(), *_bounds(upto, action))
    ).scalar_one()


def queue_sizes(allowed_sites: tuple[int, ...] | None) -> dict[str, int]:
    """Return the number of comments waiting in the pending and reported queues."""
    return {
        name: count_matching(QueueFilter(queue=name, allowed_sites=allowed_sites))
        for name in ("pending", "reported")
    }


def newest_matching_id(flt: QueueFilter) -> int:
    """Return the highest id matching the filter (0 if none): the end of what a bulk covers."""
    return db.session.execute(
        select(func.coalesce(func.max(Comment.id), 0)).where(*flt.conditions())
    ).scalar_one()


def matching_ids(
    flt: QueueFilter, upto: int | None = None, batch: int | None = None,
    action: str | None = None,
) -> Iterator[list[int]]:
    """Yield the ids matching the filter in ascending batches, re-querying after each."""
    batch = batch or BATCH_SIZE
    bound = _bounds(upto, action)
    last = 0
    while True:
        ids = list(
            db.session.execute(
                select(Comment.id)
                .where(*flt.conditions(), *bound, Comment.id > last)
                .order_by(Comment.id)
                .limit(batch)
            ).scalars()
        )
        if not ids:
            return
        yield ids
        last = ids[-1]


def moderate_ids(
    ids: Sequence[int],
    action: str,
    actor: str,
    reason: str = "",
    allowed: Callable[[Comment], bool] = lambda c: True,
    batch: str = "",
) -> int:
    """Apply an action to the comments with these ids, in batches; return how many changed.
    ``batch`` marks the audit rows of one click (comments.undo_batch)."""
    done = 0
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start : start + BATCH_SIZE]
        rows = db.session.execute(select(Comment).where(Comment.id.in_(chunk))).scalars().all()
        targets = [c for c in rows if allowed(c)]
        if targets:
            done += len(comments.moderate_many(targets, action, actor, reason, batch))
        db.session.expunge_all()
    return done


def moderate_matching(
    flt: QueueFilter,
    action: str,
    actor: str,
    reason: str = "",
    upto: int | None = None,
    seconds: float | None = None,
    batch: str = "",
) -> tuple[int, bool]:
    """Apply an action to everything matching the filter, one audit row per comment.

    With ``upto``, comments that arrived after the moderator confirmed are left alone. With
    ``seconds``, stop after the batch that crosses that budget (each batch is committed), so
    a web request ends in time; return how many changed and whether all were done.
    """
    if action not in comments.MODERATION_ACTIONS:
        raise InvalidField("action", "must be one of " + ", ".join(comments.MODERATION_ACTIONS))
    deadline = None if seconds is None else time.monotonic() + seconds
    done = 0
    for ids in matching_ids(flt, upto, action=action):
        done += moderate_ids(ids, action, actor, reason, batch=batch)
        if deadline is not None and time.monotonic() >= deadline:
            return done, count_matching(flt, upto, action) == 0
    return done, True


# -- one comment ----------------------------------------------------------------------------


def author_history(site_id: int, key: str) -> dict[str, int]:
    """Return how many of this author's comments on the site are in each status."""
    rows = db.session.execute(
        select(Comment.status, func.count(Comment.id))
        .where(Comment.site_id == site_id, Comment.author_key == key)
        .group_by(Comment.status)
    ).all()
    return {status: int(n) for status, n in rows}


def open_reports(comment_ids: Sequence[int]) -> dict[int, list[Report]]:
    """Return the unresolved reader reports of these comments."""
    out: dict[int, list[Report]] = {}
    if not comment_ids:
        return out
    for flag in db.session.execute(
        select(Report)
        .where(Report.comment_id.in_(comment_ids), Report.resolved_at.is_(None))
        .order_by(Report.created_at)
    ).scalars():
        out.setdefault(flag.comment_id, []).append(flag)
    return out


def edit(comment: Comment, text: object, actor: str, reason: str = "") -> ModerationEvent:
    """Replace a comment's text as a moderator: re-sanitise it and record the edit."""
    clean, html = sanitising.clean_text(text)
    event = ModerationEvent(
        site_id=comment.site_id,
        comment_id=comment.id,
        actor=actor,
        action="edit",
        from_status=comment.status,
        to_status=comment.status,
        reason=reason or "edited by a moderator",
        details=comments.edit_details(comment, text=clean),
    )
    comment.text, comment.html, comment.edited_at = clean, html, utcnow()
    db.session.add(event)
    db.session.commit()
    return event


# -- bans and trust -------------------------------------------------------------------------


def normalise_ban(kind: str, value: str) -> str:
    """Return the stored form of a ban value, or raise InvalidField naming the field."""
    value = sanitising.normalise(value or "").strip()
    if kind not in BAN_KINDS:
        raise InvalidField("kind", "must be one of " + ", ".join(BAN_KINDS))
    if not value:
        raise InvalidField("value", "is required")
    if kind == "email":
        value = value.lower()
        if value.count("@") != 1 or " " in value or len(value) > 254:
            raise InvalidField("value", "must be an email address like name@example.org")
        return value
    if kind == "addr":
        network = comments.anonymise_addr(value)
        if not network:
            raise InvalidField("value", "must be an IP address, e.g. 203.0.113.0")
        return network
    host = value.lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    host = host.split(":", 1)[0].strip(".")
    if not _DOMAIN_RE.match(host):
        raise InvalidField("value", "must be a domain like spam.example")
    return host


def ban(
    site_id: int | None,
    kind: str,
    value: str,
    *,
    actor: str,
    reason: str = "",
    duration: timedelta | None = None,
    comment_id: int | None = None,
) -> Ban:
    """Ban an email, anonymised address or domain on a site (or everywhere), maybe for a time.

    A ban already in force on the same value and site is kept, not stacked: repeating it
    changes nothing, and one ending more than an hour later extends it; so lifting the ban
    ends it.
    """
    stored = normalise_ban(kind, value)
    now = utcnow()
    expires = now + duration if duration else None
    entry = db.session.execute(
        select(Ban).where(_same_ban(site_id, kind, stored), _in_force(now))
        .order_by(Ban.expires_at.is_not(None), Ban.expires_at.desc()).limit(1)
    ).scalar_one_or_none()
    if entry is not None:
        # The same ban again within the hour (a double click, a retried request) is a repeat.
        if entry.expires_at is None or (expires is not None
                                        and entry.expires_at + timedelta(hours=1) >= expires):
            return entry
        entry.expires_at = expires
    else:
        entry = Ban(site_id=site_id, kind=kind, value=stored, reason=reason, created_by=actor,
                    expires_at=expires)
        db.session.add(entry)
    until = f" until {expires:%Y-%m-%d %H:%M} UTC" if expires else ""
    db.session.add(
        ModerationEvent(
            site_id=site_id,
            comment_id=comment_id,
            actor=actor,
            action="ban",
            reason=f"{kind} {stored}{until}" + (f": {reason}" if reason else ""),
        )
    )
    db.session.commit()
    return entry


def _same_ban(site_id: int | None, kind: str, value: str) -> ColumnElement[bool]:
    site = Ban.site_id.is_(None) if site_id is None else Ban.site_id == site_id
    return and_(site, Ban.kind == kind, Ban.value == value)


def _in_force(now: datetime) -> ColumnElement[bool]:
    return or_(Ban.expires_at.is_(None), Ban.expires_at > now)


def lift_ban(entry: Ban, actor: str) -> None:
    """End a ban now, keeping it in the list as expired (with any copy of it in force, which
    versions before bans were merged could stack)."""
    now = utcnow()
    for same in db.session.execute(
        select(Ban).where(_same_ban(entry.site_id, entry.kind, entry.value), _in_force(now))
    ).scalars():
        same.expires_at = now
    entry.expires_at = now
    db.session.add(
        ModerationEvent(site_id=entry.site_id, actor=actor, action="unban",
                        reason=f"{entry.kind} {entry.value}")
    )
    db.session.commit()


def bans(allowed_sites: tuple[int, ...] | None, active_only: bool = False) -> list[Ban]:
    """Return the bans a moderator may see, newest first."""
    query = select(Ban).order_by(Ban.created_at.desc(), Ban.id.desc())
    if allowed_sites is not None:
        query = query.where(or_(Ban.site_id.in_(allowed_sites), Ban.site_id.is_(None)))
    if active_only:
        query = query.where(or_(Ban.expires_at.is_(None), Ban.expires_at > utcnow()))
    return list(db.session.execute(query.limit(500)).scalars())


def trust(comment: Comment, actor: str) -> TrustedAuthor:
    """Trust the author of a comment on its site: their comments skip the model's holds."""
    found = db.session.execute(
        select(TrustedAuthor).where(
            TrustedAuthor.site_id == comment.site_id,
            TrustedAuthor.author_key == comment.author_key,
        )
    ).scalar_one_or_none()
    if found is not None:
        return found
    label = " · ".join(p for p in (comment.author, comment.email, comment.website) if p)
    entry = TrustedAuthor(site_id=comment.site_id, author_key=comment.author_key,
                          label=label or comment.author_key, created_by=actor)
    db.session.add(entry)
    db.session.add(
        ModerationEvent(site_id=comment.site_id, comment_id=comment.id, actor=actor,
                        action="trust", reason=f"author {entry.label}")
    )
    db.session.commit()
    return entry


def untrust(entry: TrustedAuthor, actor: str) -> None:
    """Stop trusting an author."""
    db.session.add(
        ModerationEvent(site_id=entry.site_id, actor=actor, action="untrust",
                        reason=f"author {entry.label}")
    )
    db.session.delete(entry)
    db.session.commit()


def trusted(allowed_sites: tuple[int, ...] | None) -> list[TrustedAuthor]:
    """Return the trusted authors a moderator may see."""
    query = select(TrustedAuthor).order_by(TrustedAuthor.created_at.desc())
    if allowed_sites is not None:
        query = query.where(TrustedAuthor.site_id.in_(allowed_sites))
    return list(db.session.execute(query.limit(500)).scalars())


def is_trusted(site_id: int, key: str) -> bool:
    """Return whether an author is trusted on a site."""
    return db.session.execute(
        select(TrustedAuthor.id).where(TrustedAuthor.site_id == site_id,
                                       TrustedAuthor.author_key == key)
    ).first() is not None


# -- audit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Which audit entries to list."""

    allowed_sites: tuple[int, ...] | None = None
    site_id: int | None = None
    actor: str = ""
    action: str = ""
    comment_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_page(
    flt: AuditFilter, before: int | None = None, size: int = 50
) -> tuple[list[ModerationEvent], int | None]:
    """Return audit entries newest first and the id to continue before, if more exist."""
    query = select(ModerationEvent)
    if flt.allowed_sites is not None:
        query = query.where(ModerationEvent.site_id.in_(flt.allowed_sites))
    if flt.site_id is not None:
        query = query.where(ModerationEvent.site_id == flt.site_id)
    if flt.actor:
        query = query.where(ModerationEvent.actor.like(_like(flt.actor), escape="\\"))
    if flt.action:
        query = query.where(ModerationEvent.action == flt.action)
    if flt.comment_id is not None:
        query = query.where(ModerationEvent.comment_id == flt.comment_id)
    if flt.since is not None:
        query = query.where(ModerationEvent.created_at >= flt.since)
    if flt.until is not None:
        query = query.where(ModerationEvent.created_at < flt.until)
    if before is not None:
        query = query.where(ModerationEvent.id < before)
    rows = list(
        db.session.execute(query.order_by(ModerationEvent.id.desc()).limit(size + 1)).scalars()
    )
    more = len(rows) > size
    rows = rows[:size]
    return rows, (rows[-1].id if more and rows else None)


AUDIT_ACTIONS = ("submit", "approve", "reject", "spam", "delete", "undo", "edit", "ban",
                 "unban", "trust", "untrust", "settings", "account")


def get_comment_for(comment_id: int, allowed_sites: tuple[int, ...] | None) -> Comment:
    """Return a comment the moderator may see, or raise NotFound."""
    # Ids past the integer column's range cannot exist (and would make the driver raise).
    comment = db.session.get(Comment, comment_id) if 0 < comment_id <= comments.MAX_ID else None
    if comment is None or (allowed_sites is not None and comment.site_id not in allowed_sites):
        raise NotFound("no such comment")
    return comment
