"""Self-hosted blog comments with a local spam and toxicity model and a moderation queue."""

from __future__ import annotations

import inspect
import ipaddress
import json
import logging
import math
import os
import secrets
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from . import config as defaults
from .config import PROJECT_ROOT


def load_config(app: Flask, test_config: Mapping[str, Any] | None) -> None:
    """Layer the config: code defaults, instance file, environment, then test overrides."""
    app.config.from_object(defaults)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("MODERATION")
    if (secret := os.environ.get("MODERATION_SECRET_KEY")) is not None:
        app.config["SECRET_KEY"] = secret  # as written: "1234..." is a key, not a number
    if url := defaults.database_url_from_env():
        app.config["SQLALCHEMY_DATABASE_URI"] = url
    if storage := os.environ.get("RATELIMIT_STORAGE_URI"):
        app.config["RATELIMIT_STORAGE_URI"] = storage
    if test_config:
        app.config.update(test_config)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        path = Path(app.instance_path) / "moderation.sqlite3"
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
    check_settings(app)
    secret = app.config["SECRET_KEY"]
    if not isinstance(secret, str):
        raise SettingsError(f"SECRET_KEY must be text (a str), not {type(secret).__name__}")
    weak = len(secret) < MIN_SECRET_LENGTH or secret == defaults.SECRET_KEY
    if weak and not (app.debug or app.testing):
        if serves_requests():
            raise SettingsError(
                "Refusing to start without a SECRET_KEY of its own: set MODERATION_SECRET_KEY "
                f"(at least {MIN_SECRET_LENGTH} characters; the default 'dev' is public) or "
                "SECRET_KEY in instance/config.py (python3 dev.py serve writes one)."
            )
        # A command such as `flask model evaluate` signs nothing; a throwaway key keeps
        # anything that would sign from using the public default.
        app.config["SECRET_KEY"] = secrets.token_hex(32)


MIN_SECRET_LENGTH = 16
# Numeric settings that may be None: no limit (Flask, Flask-WTF).
ALLOWS_NONE = frozenset({"MAX_CONTENT_LENGTH", "WTF_CSRF_TIME_LIMIT"})
DAY = 24 * 3600
# Ten years in seconds: the longest edit window, session or CSRF token lifetime. Far longer
# ones would move a date past the year 9999, which Python's datetime cannot hold.
TEN_YEARS = 3653 * DAY
# The largest MAX_PAGE_SIZE: a page of 10,000 top-level comments is already a large answer.
MOST_PER_PAGE = 10_000


class SettingsError(RuntimeError):
    """A setting the app cannot run with; the message names it and what it may be."""


@dataclass(frozen=True)
class Span:
    """The values a numeric setting may take: from low (or above it) up to high."""

    low: float
    high: float | None = None  # None: no upper bound
    whole: bool = False  # a whole number (a count or a size), not any number
    above: bool = False  # low itself is not allowed ("more than low")
    unit: str = ""
    high_said: str = ""  # high in words, e.g. "a day"

    def allows(self, value: object, high: float | None = None) -> bool:
        """Return whether value is a number of the right kind within the span."""
        high = self.high if high is None else high
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False  # True and False are numbers to Python, not to an operator
        if isinstance(value, float) and (self.whole or not math.isfinite(value)):
            return False
        if value < self.low or self.above and value == self.low:
            return False
        return high is None or value <= high

    def describe(self, bound_by: str = "", bound: float | None = None) -> str:
        """Return what the setting must be, e.g. "a whole number from 1 to 200"; bound_by
        names another setting whose value (bound) is the upper bound instead of high."""
        kind = "a whole number" if self.whole else "a number"
        if self.unit:
            kind += f" of {self.unit}"
        if bound_by:
            top = f"{bound_by} ({bound:,})"
        elif self.high is None:
            return f"{kind}, " + (f"more than {self.low:,}" if self.above
                                  else f"{self.low:,} or more")
        else:
            top = f"{self.high:,}" + (f" ({self.high_said})" if self.high_said else "")
        if self.above:
            return f"{kind} more than {self.low:,} and at most {top}"
        return f"{kind} from {self.low:,} to {top}"


# What each numeric setting of config.py may be: what the code that reads it can handle.
SPANS: dict[str, Span] = {
    "DB_PING_IDLE_SECONDS": Span(0, DAY, unit="seconds", high_said="a day"),
    "DB_CONNECT_TIMEOUT_SECONDS": Span(0, 3600, above=True, unit="seconds",
                                       high_said="an hour"),
    "MAX_CONTENT_LENGTH": Span(1, whole=True, unit="bytes"),
    "EDIT_WINDOW_SECONDS": Span(0, TEN_YEARS, unit="seconds", high_said="ten years"),
    "PAGE_SIZE": Span(1, MOST_PER_PAGE, whole=True),  # and at most MAX_PAGE_SIZE
    "MAX_PAGE_SIZE": Span(1, MOST_PER_PAGE, whole=True),
    "MAX_COUNT_URIS": Span(1, whole=True),
    "MAX_LINKS": Span(0, whole=True),
    # An attempt gets at most 100 s (webhooks.CLAIM_SECONDS less two margins of 10 s).
    "WEBHOOK_TIMEOUT_SECONDS": Span(0, 100, above=True, unit="seconds"),
    "WEBHOOK_MAX_ATTEMPTS": Span(1, whole=True),
    # Retries are a day apart at most.
    "WEBHOOK_BACKOFF_SECONDS": Span(0, DAY, unit="seconds", high_said="a day"),
    "AKISMET_SPAM_PROBABILITY": Span(0, 1),
    "PROXY_COUNT": Span(0, whole=True),
    "READ_CACHE_ENTRIES": Span(0, whole=True),
    "READ_CACHE_MAX_BYTES": Span(0, whole=True, unit="bytes"),
    "SITE_CACHE_SECONDS": Span(0, DAY, unit="seconds", high_said="a day"),
    "HSTS_SECONDS": Span(0, whole=True, unit="seconds"),
    "PERMANENT_SESSION_LIFETIME": Span(1, TEN_YEARS, unit="seconds", high_said="ten years"),
    "WTF_CSRF_TIME_LIMIT": Span(1, TEN_YEARS, unit="seconds", high_said="ten years"),
    "MIN_FILL_MS": Span(0, unit="milliseconds"),
}
LOG_FORMATS = ("json", "text", "")


def _number_problem(name: str, value: object, config: Mapping[str, Any]) -> str | None:
    """Return what is wrong with a numeric setting's value, or None when it is usable."""
    span = SPANS.get(name, Span(0))
    if value is None and name in ALLOWS_NONE:
        return None
    if isinstance(value, timedelta) and name == "PERMANENT_SESSION_LIFETIME":
        value = value.total_seconds()  # Flask takes a timedelta here too
    bound_by, bound = "", None
    if name == "PAGE_SIZE" and SPANS["MAX_PAGE_SIZE"].allows(config.get("MAX_PAGE_SIZE")):
        bound_by, bound = "MAX_PAGE_SIZE", config["MAX_PAGE_SIZE"]
    if span.allows(value, bound):
        return None
    return f"{name} must be {span.describe(bound_by, bound)}, not {_shown(value)}"


def _shown(value: object) -> str:
    """Return a setting's value as written in Python, cut short when it is long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_settings(app: Flask) -> None:
    """Refuse to start on a setting of the wrong kind or out of range, naming it and what it
    may be, instead of failing later in every request that reads it (a limit written
    "30/dya", a window of "15m", a page size of 0)."""
    from limits import parse_many

    problems = []
    for name in filter(str.isupper, dir(defaults)):
        default, value = getattr(defaults, name), app.config.get(name)
        if name in SPANS or isinstance(default, int | float) and not isinstance(default, bool):
            if problem := _number_problem(name, value, app.config):
                problems.append(problem)
            continue
        if isinstance(default, bool):
            kind, ok = "true or false", value in (True, False)  # 1 and 0 too
        elif isinstance(default, list):
            kind, ok = "a JSON list", isinstance(value, list | tuple)
        elif isinstance(default, dict):
            kind, ok = "a JSON object", isinstance(value, dict)
        elif name.startswith("LIMIT_"):
            kind = 'a rate limit such as "3/minute;30/day"'
            try:
                ok = isinstance(value, str) and bool(parse_many(value))
            except ValueError:
                ok = False
        elif name == "LOG_FORMAT":
            kind, ok = '"json", "text" or "" (leave logging alone)', value in LOG_FORMATS
        elif name == "LOG_LEVEL":
            kind = "a logging level such as INFO or DEBUG"
            ok = isinstance(value, str) and value.upper() in logging.getLevelNamesMapping()
        else:
            continue
        if not ok:
            problems.append(f"{name} must be {kind}, not {_shown(value)}")
    for network in app.config.get("METRICS_ALLOW_NETWORKS") or []:
        try:
            ipaddress.ip_network(network, strict=False)
        except (TypeError, ValueError):
            problems.append(f"METRICS_ALLOW_NETWORKS: {network!r} is not a network")
    if problems:
        raise SettingsError("Invalid settings (MODERATION_<NAME> in the environment, or "
                            "instance/config.py): " + "; ".join(problems))


def serves_requests() -> bool:
    """Return whether this process may serve requests: anything but a non-serving flask command.

    The flask CLI sets FLASK_RUN_FROM_CLI before it loads the app; its `run` command serves,
    the others (model, db, site, ...) do not. gunicorn and WSGI imports never set it.
    """
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return True
    context = click.get_current_context(silent=True)
    return context is None or context.command.name == "run"


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"the JSON holds {name}, which standard JSON has no word for")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise ValueError(f"the JSON holds a number too large for a float: {text[:40]}")
    return value


# One decoder for every body: json.loads with hooks would build a decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing bodies no handler could use: nesting too deep for the parser,
    escaped lone surrogates (\\ud800), which no database can store, and NaN, Infinity or
    numbers too large for a float (1e400), which are not standard JSON and compare false
    with every number. Each raises ValueError, so a request's body reads as invalid JSON
    (400) instead of failing or slipping through later."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        # Strict: bytes that are no text in their encoding (a surrogate encoded raw in UTF-8)
        # are invalid JSON, as UnicodeDecodeError is a ValueError.
        text = s if isinstance(s, str) else s.decode(json.detect_encoding(s))
        try:
            if kwargs:
                data = super().loads(text, **{"parse_constant": _refuse_constant,
                                              "parse_float": _finite_float, **kwargs})
            else:
                data = _DECODER.decode(text)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None
        if "\\ud" in text or "\\uD" in text:  # a surrogate escape: paired, or not
            try:
                json.dumps(data, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("the JSON holds a lone surrogate") from None
        return data


class App(Flask):
    """Flask, with the check for coroutine views and hooks made cheap for plain functions.

    Flask asks ``inspect.iscoroutinefunction`` of every hook and view on every request (a
    dozen per request here, several microseconds in all); a plain function or method says so
    in its code flags.
    """

    json_provider_class = JSONProvider

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        code = getattr(func, "__code__", None)
        if (code is not None and not code.co_flags & inspect.CO_COROUTINE
                and not hasattr(func, "_is_coroutine_marker")):
            return func
        return super().ensure_sync(func)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the app: load config, initialise each subsystem, register blueprints.

    Run by a `flask` command, a setting the app cannot start with stops the command with a
    one-line error naming it, and so does a database the command cannot reach; anywhere else
    (gunicorn, tests) the exception is raised as it is.
    """
    context = _flask_command()
    if context is None:
        return _create_app(test_config)
    try:
        app = _create_app(test_config)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    context.find_root().with_resource(_database_errors(app.config["SQLALCHEMY_DATABASE_URI"]))
    return app


def _flask_command() -> click.Context | None:
    """Return the click context of the `flask` command creating the app, if one is."""
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return None
    return click.get_current_context(silent=True)


def _url_shown(url: str) -> str:
    """Return a URL without what may hold credentials: user name, password and query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _database_problem(error: Exception, database_url: str) -> str:
    """Return a database error as one line for an operator, without credentials."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import DBAPIError

    url = make_url(database_url)
    shown = URL.create(url.get_backend_name(), host=url.host, port=url.port,
                       database=url.database).render_as_string()
    if url.username or url.password or url.query:
        shown += " (credentials hidden)"
    cause = error.orig if isinstance(error, DBAPIError) else error
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if url.password:
        reason = reason.replace(url.password, "***")
    if isinstance(error, DBAPIError) and error.statement is None:  # while connecting
        # psycopg says 'connection failed: connection to server at "h", port 1 failed: why'
        reason = reason.rsplit(" failed: ", 1)[-1]
        return f"cannot reach the database at {shown}: {reason}"
    hint = ""
    if "no such table" in reason or getattr(cause, "sqlstate", "") == "42P01":
        hint = " (has `flask --app wsgi db upgrade` been run?)"
    return f"the database at {shown} failed: {reason}{hint}"


@contextmanager
def _database_errors(database_url: str) -> Iterator[None]:
    """Turn a database a command cannot reach or use into a one-line error (exit status 1)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        yield
    except OperationalError as error:
        raise click.ClickException(_database_problem(error, database_url)) from None
    except ProgrammingError as error:
        if getattr(error.orig, "sqlstate", "") != "42P01":  # undefined table
            raise
        raise click.ClickException(_database_problem(error, database_url)) from None


def _create_app(test_config: Mapping[str, Any] | None) -> Flask:
    """Build the app; a setting it cannot use raises SettingsError naming it."""
    app = App(
        __name__,
        instance_path=os.environ.get("MODERATION_INSTANCE_PATH", str(PROJECT_ROOT / "instance")),
        instance_relative_config=True,
        template_folder=str(PROJECT_ROOT / "templates"),
    )
    load_config(app, test_config)

    from limits.errors import ConfigurationError
    from sqlalchemy.exc import ArgumentError

    from . import (
        api,
        auth,
        classifier,
        cli,
        compat,
        dashboard,
        db,
        demo,
        embed,
        errors,
        limits,
        observability,
        readcache,
        security,
        server_api,
        sitecache,
        webhooks,
        webhooks_admin,
    )

    observability.init_app(app)
    security.init_app(app)
    try:
        db.init_app(app)
    except ArgumentError as error:  # an unknown kind of database, or a URL that is none
        raise SettingsError("DATABASE_URL (or SQLALCHEMY_DATABASE_URI, SQLALCHEMY_ENGINE_OPTIONS)"
                            f" is not usable: {error}") from error
    errors.init_app(app)
    try:
        limits.init_app(app)
    except ConfigurationError as error:
        storage = str(app.config.get("RATELIMIT_STORAGE_URI") or "")
        message = str(error).replace(storage, _url_shown(storage)) if storage else str(error)
        raise SettingsError(f"RATELIMIT_STORAGE_URI is not usable: {message}") from error
    readcache.init_app(app)
    sitecache.init_app(app)
    classifier.init_app(app)
    auth.init_app(app)
    cli.init_app(app)
    webhooks.init_app(app)

    app.register_blueprint(api.bp)
    app.register_blueprint(server_api.bp)
    app.register_blueprint(compat.perspective)
    app.register_blueprint(compat.akismet)
    app.register_blueprint(webhooks_admin.bp)
    app.register_blueprint(embed.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(dashboard.root)
    if app.config["DEMO"]:
        app.register_blueprint(demo.bp)
    return app
