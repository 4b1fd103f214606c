"""Database tables and the SQLAlchemy extension."""

from __future__ import annotations

import enum
import math
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect, IteratorResult, Result
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql import Executable, Select


class Base(DeclarativeBase):
    """Declarative base shared by every table."""


# Rows stay readable after commit: a request that just wrote a comment serialises it without
# reloading it from the database.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate(directory=str(Path(__file__).parent / "migrations"), render_as_batch=True)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Store naive UTC, return aware UTC, so SQLite and PostgreSQL behave alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Status(enum.StrEnum):
    """Where a comment stands in moderation."""

    PUBLISHED = "published"
    PENDING = "pending"
    SPAM = "spam"
    REJECTED = "rejected"
    DELETED = "deleted"


# PostgreSQL advisory lock key that makes concurrent `db upgrade` runs take turns.
MIGRATION_LOCK = 7_204_311_526


def new_site_key() -> str:
    """Return a fresh public site key for the embed."""
    return "s_" + secrets.token_urlsafe(12)


_SITE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_site_key(key: str) -> bool:
    """Tell whether a string has the shape of a site key, as a lookup needs first: a NUL byte
    or a lone surrogate in it would make the database driver raise."""
    return _SITE_KEY.fullmatch(key) is not None


class Site(db.Model):
    """A blog that embeds the comments, with its origins and moderation settings."""

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True, default=new_site_key)
    name: Mapped[str] = mapped_column(String(200))
    # Browser origins allowed to call the API for this site, e.g. ["https://blog.example"].
    origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Per-site policy and limits; see policy.SiteSettings for the keys.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Thread(db.Model):
    """One page of a site, identified by its normalised URI."""

    __table_args__ = (UniqueConstraint("site_id", "uri"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), index=True)
    uri: Mapped[str] = mapped_column(String(1024))
    title: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # How many times an Undo has put comments of this thread back. Undo restores their decision
    # times, so the latest decision may not move; the page cache's fingerprint counts this too.
    undo_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    site: Mapped[Site] = relationship()


class Comment(db.Model):
    """A reader's comment, its scores and where it stands in moderation."""

    __table_args__ = (
        Index("ix_comment_thread_status_created", "thread_id", "status", "created_at"),
        Index("ix_comment_site_status_created", "site_id", "status", "created_at"),
        Index("ix_comment_root", "root_id"),
        Index("ix_comment_author_key", "site_id", "author_key"),
        # Covers the thread fingerprint of every read (readcache): no table access for it.
        Index("ix_comment_thread_fingerprint", "thread_id", "id", "decided_at", "edited_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    thread_id: Mapped[int] = mapped_column(ForeignKey("thread.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("comment.id"), default=None)
    # Top-level ancestor (None for top-level comments), so a page of threads loads in one query.
    root_id: Mapped[int | None] = mapped_column(Integer, default=None)
    author: Mapped[str] = mapped_column(String(64), default="")
    email: Mapped[str] = mapped_column(String(254), default="")  # never published
    website: Mapped[str] = mapped_column(String(254), default="")
    # Hash of the lower-cased email, else of name + anonymised address: groups an author's history.
    author_key: Mapped[str] = mapped_column(String(64), default="")
    client_addr: Mapped[str] = mapped_column(String(64), default="")  # /24 IPv4, /48 IPv6
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=Status.PENDING)
    spam_score: Mapped[float | None] = mapped_column(Float, default=None)
    toxicity_score: Mapped[float | None] = mapped_column(Float, default=None)
    scores: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_version: Mapped[str | None] = mapped_column(String(64), default=None)
    edit_token_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    thread: Mapped[Thread] = relationship()
    site: Mapped[Site] = relationship()


class ModerationEvent(db.Model):
    """One entry of the audit trail: who did what to which comment, and why."""

    __table_args__ = (Index("ix_event_site_created", "site_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    comment_id: Mapped[int | None] = mapped_column(
        ForeignKey("comment.id", ondelete="SET NULL"), index=True
    )
    # "system", "author", "moderator:<email>", "api:<key prefix>".
    actor: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16), default=None)
    to_status: Mapped[str | None] = mapped_column(String(16), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    # What an edit replaced: {"before": {field: old value}, "after": {...}} for the changed
    # fields of a comment, of a site's settings or of an account's role and sites; for a
    # dashboard click, what Undo needs: {"batch", "reports", "decided_at", "undone"}
    # (comments.moderate and undo_batch). Empty for other actions, None on rows from before it
    # was kept; never a password or its hash.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


moderator_sites = db.Table(
    "moderator_site",
    db.Column("moderator_id", ForeignKey("moderator.id", ondelete="CASCADE"), primary_key=True),
    db.Column("site_id", ForeignKey("site.id", ondelete="CASCADE"), primary_key=True),
)


class Moderator(db.Model):
    """A dashboard account; admins see every site, moderators their own."""

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every session carries the value it was opened with; bumping it (sign-out, disable) ends
    # all of the account's sessions at once, in every worker and on every host.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the account was disabled (None: active): it cannot sign in; its audit rows stay.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    sites: Mapped[list[Site]] = relationship(secondary=moderator_sites)


class Ban(db.Model):
    """A ban by email, anonymised address or website domain, optionally until a time."""

    __table_args__ = (Index("ix_ban_lookup", "kind", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # email | addr | domain
    value: Mapped[str] = mapped_column(String(254))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class TrustedAuthor(db.Model):
    """An author whose comments skip the model's holds and new-commenter review (policy)."""

    __table_args__ = (UniqueConstraint("site_id", "author_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    author_key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(300), default="")  # what the moderator saw
    created_by: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Report(db.Model):
    """A reader's flag on a published comment."""

    id: Mapped[int] = mapped_column(primary_key=True)
    comment_id: Mapped[int] = mapped_column(
        ForeignKey("comment.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(String(500), default="")
    client_addr: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Label(db.Model):
    """A human judgement kept for retraining: moderator decisions and API feedback."""

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    comment_id: Mapped[int | None] = mapped_column(ForeignKey("comment.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64), default="")
    website: Mapped[str] = mapped_column(String(254), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    label: Mapped[str] = mapped_column(String(16))  # spam | ham | toxic | ok
    source: Mapped[str] = mapped_column(String(300))  # moderator:<email> | api:<key prefix>
    scores: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    model_version: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ApiKey(db.Model):
    """A server-to-server key for one site, stored as a hash, with scopes."""

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # shown in logs and the audit
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    site: Mapped[Site] = relationship()


class Webhook(db.Model):
    """A site's endpoint that is told about new, held and moderated comments."""

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(1000))
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(db.Model):
    """One event to deliver to one webhook, with its attempts."""

    __table_args__ = (Index("ix_delivery_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    webhook: Mapped[Webhook] = relationship()


@dataclass(frozen=True)
class _DriverSQL:
    """A statement compiled once for a dialect: its SQL text and how to pass its parameters."""

    statement: Executable  # kept, so that its id() is never reused while it is cached
    sql: str
    positions: tuple[str, ...] | None  # parameter names in order (qmark), or None (named)
    fixed: dict[str, Any]  # values bound in the statement itself
    binds: dict[str, Callable[[Any], Any]]  # each converted parameter's type processor
    keys: tuple[str, ...]  # the names of a SELECT's columns
    results: tuple[Callable[[Any], Any] | None, ...]  # each column's type processor


_driver_sql: dict[tuple[int, str, str], _DriverSQL] = {}


def _compiled(statement: Executable, dialect: Dialect) -> _DriverSQL:
    key = (id(statement), dialect.name, dialect.paramstyle)
    found = _driver_sql.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect)
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        fixed = {k: v for k, v in compiled.params.items() if v is not None}
        binds = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binds[name] = process
        columns = list(statement.selected_columns) if isinstance(statement, Select) else []
        found = _driver_sql[key] = _DriverSQL(
            statement, str(compiled), positions, fixed, binds,
            tuple(c.key for c in columns),
            tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns),
        )
    return found


def driver_statement(
    statement: Executable, dialect: Dialect, params: Mapping[str, Any]
) -> tuple[str, Any]:
    """Return the driver's SQL text and arguments for a fixed statement and its parameters.

    The statement is compiled once per dialect; parameters go through their column types'
    conversions (times, JSON) as SQLAlchemy's own execution would apply them.
    """
    driver = _compiled(statement, dialect)
    values = {**driver.fixed, **params}
    for name, process in driver.binds.items():
        values[name] = process(values[name])
    args: Any = values if driver.positions is None else [values[n] for n in driver.positions]
    return driver.sql, args


class DriverConnection:
    """A pooled driver connection that runs fixed statements compiled once per dialect.

    For the hottest reads and writes (comment counts, the read cache's fingerprint, a new
    comment's lookups and INSERTs), where SQLAlchemy's per-execution work (cache lookup,
    parameter and result processing, Result objects, the ORM session) costs several times the
    statement itself: on SQLite a counts query takes about 6 µs in the driver and about 75 µs
    through SQLAlchemy. Statements must be module-level constants with no expanding
    parameters. Driver errors are raised as SQLAlchemy's (so a database outage still answers
    503), and a connection the server dropped is removed from the pool.
    """

    def __init__(self, connection: Any, dialect: Dialect) -> None:
        self.connection = connection
        self.dialect = dialect
        self.error: type[Exception] = dialect.loaded_dbapi.Error

    def execute(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        """Run one statement and return the driver's cursor (read it before the next)."""
        sql, args = driver_statement(statement, self.dialect, params)
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, args)
        except self.error as error:
            cursor.close()
            if self.dialect.is_disconnect(error, self.connection.dbapi_connection, None):
                self.connection.invalidate(error)
            raise DBAPIError.instance(sql, args, error, self.error, dialect=self.dialect) from error
        return cursor

    def rows(self, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
        """Run a SELECT and return its rows as the driver gives them, without conversions."""
        cursor = self.execute(statement, params)
        try:
            return cursor.fetchall()  # type: ignore[no-any-return]
        finally:
            cursor.close()

    def result(self, statement: Executable, params: Mapping[str, Any]) -> Result[Any]:
        """Run a SELECT and return its rows converted by their column types, as a Result."""
        driver = _compiled(statement, self.dialect)
        rows = self.rows(statement, params)
        if any(driver.results):
            rows = [tuple(value if process is None else process(value)
                          for process, value in zip(driver.results, row, strict=True))
                    for row in rows]
        return IteratorResult(SimpleResultMetaData(driver.keys), iter(rows))


@contextmanager
def driver_connection(transaction: bool = False) -> Iterator[DriverConnection]:
    """Lend a pooled driver connection: outside any transaction, or in one that commits at the end.

    Outside a transaction each statement commits as it runs (psycopg in autocommit: no BEGIN
    and ROLLBACK round trips around a lone statement; sqlite3 opens no transaction for a
    SELECT). In a transaction, an error rolls everything back.
    """
    engine = db.engine
    dialect = engine.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()
    except dbapi_error as error:  # the database is down: as SQLAlchemy would raise it
        raise DBAPIError.instance(None, None, error, dbapi_error, dialect=dialect) from error
    autocommit = dialect.name == "postgresql" and not transaction
    try:
        if autocommit:
            connection.driver_connection.autocommit = True  # type: ignore[union-attr]
        direct = DriverConnection(connection, dialect)
        yield direct
        if transaction:
            try:
                connection.commit()
            except dbapi_error as error:
                if dialect.is_disconnect(error, connection.dbapi_connection, None):
                    connection.invalidate(error)
                raise DBAPIError.instance("COMMIT", None, error, dbapi_error,
                                          dialect=dialect) from error
    except BaseException:
        if transaction and connection.is_valid:
            try:
                connection.rollback()
            except dbapi_error as error:  # keep the first error; drop this connection
                connection.invalidate(error)
        raise
    finally:
        try:
            if autocommit and connection.is_valid:
                connection.driver_connection.autocommit = False  # type: ignore[union-attr]
        finally:
            connection.close()


def session_in_transaction() -> bool:
    """Return whether this context's session has a transaction open, without creating one.

    A request that never touches the session (a reader's new comment) skips building it.
    """
    registry = db.session.registry
    return registry.has() and registry().in_transaction()


def read_direct(statement: Executable, params: Mapping[str, Any]) -> list[Any]:
    """Run a fixed SELECT straight on the driver, outside any transaction; return its raw rows.

    See DriverConnection. The rows are as the driver returns them (no type conversion).
    """
    with driver_connection() as connection:
        return connection.rows(statement, params)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Use SQLite's write-ahead log: readers never block the writer and commits skip a sync."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only power loss can drop the
    # last commits, which is the usual trade for a laptop-sized deployment.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _casefold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _sqlite_functions(dbapi_connection: Any, _record: Any) -> None:
    """Give SQLite casefold(), for searches: its lower() and LIKE fold ASCII letters only."""
    dbapi_connection.create_function("casefold", 1, _casefold, deterministic=True)


def _ping_when_idle(seconds: float) -> tuple[Any, Any]:
    """Return pool listeners that ping a connection before use only if it sat idle a while.

    A ping on every checkout (pool_pre_ping) costs a round trip per request; a connection in
    steady use is known to be alive. One idle long enough to have outlived a database restart
    is checked first, and replaced if dead, so no request fails on a stale connection.
    """

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < seconds:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            # psycopg opened a transaction for the SELECT: end it, or the connection could
            # not be switched to autocommit for a direct read or post.
            dbapi_connection.rollback()
        except Exception as error:  # the pool retries with a fresh connection
            raise DisconnectionError(f"stale connection: {type(error).__name__}") from error

    return checkin, checkout


def init_app(app: Flask) -> None:
    """Bind the database and Alembic migrations to the app."""
    if str(app.config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        # Whole seconds, at least one: libpq reads 0 as "wait forever".
        seconds = max(1, math.ceil(app.config["DB_CONNECT_TIMEOUT_SECONDS"]))
        connect_args = {"connect_timeout": seconds,
                        **options.get("connect_args", {})}
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {**options, "connect_args": connect_args}
    db.init_app(app)
    migrate.init_app(app, db)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_functions)
            if engine.url.database not in (None, "", ":memory:"):
                event.listen(engine, "connect", _tune_sqlite)
        elif not app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("pool_pre_ping"):
            checkin, checkout = _ping_when_idle(float(app.config["DB_PING_IDLE_SECONDS"]))
            event.listen(engine, "checkin", checkin)
            event.listen(engine, "checkout", checkout)
