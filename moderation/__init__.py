"""Self-hosted blog comments with a local spam and toxicity model and a moderation queue."""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import secrets
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

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
        raise RuntimeError(f"SECRET_KEY must be text (a str), not {type(secret).__name__}")
    weak = len(secret) < MIN_SECRET_LENGTH or secret == defaults.SECRET_KEY
    if weak and not (app.debug or app.testing):
        if serves_requests():
            raise RuntimeError(
                "Refusing to start without a SECRET_KEY of its own: set MODERATION_SECRET_KEY "
                f"(at least {MIN_SECRET_LENGTH} characters; the default 'dev' is public) or "
                "SECRET_KEY in instance/config.py (python3 dev.py serve writes one)."
            )
        # A command such as `flask model evaluate` signs nothing; a throwaway key keeps
        # anything that would sign from using the public default.
        app.config["SECRET_KEY"] = secrets.token_hex(32)


MIN_SECRET_LENGTH = 16
# Numeric settings Flask itself lets be None (no limit).
ALLOWS_NONE = frozenset({"MAX_CONTENT_LENGTH"})


def check_settings(app: Flask) -> None:
    """Refuse to start on a setting of the wrong kind, naming it, instead of failing later in
    every request that reads it (a limit written "30/dya", a window of "15m")."""
    from limits import parse_many

    problems = []
    for name in filter(str.isupper, dir(defaults)):
        default, value = getattr(defaults, name), app.config.get(name)
        if isinstance(default, bool):
            kind, ok = "true or false", value in (True, False)  # 1 and 0 too
        elif isinstance(default, int | float):
            kind = "a number, 0 or more"
            ok = (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
                  or value is None and name in ALLOWS_NONE
                  or isinstance(value, timedelta) and name == "PERMANENT_SESSION_LIFETIME")
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
        else:
            continue
        if not ok:
            problems.append(f"{name} must be {kind}, not {value!r}")
    for network in app.config.get("METRICS_ALLOW_NETWORKS") or []:
        try:
            ipaddress.ip_network(network, strict=False)
        except (TypeError, ValueError):
            problems.append(f"METRICS_ALLOW_NETWORKS: {network!r} is not a network")
    if problems:
        raise RuntimeError("Invalid settings (MODERATION_<NAME> in the environment, or "
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


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing bodies no handler could use: nesting too deep for the parser
    and escaped lone surrogates (\\ud800), which no database can store. Both raise
    ValueError, so a request's body reads as invalid JSON (400) instead of failing later."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            data = super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None
        raw = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s
        if b"\\ud" in raw or b"\\uD" in raw:  # a surrogate escape: paired, or not
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
    """Create the app: load config, initialise each subsystem, register blueprints."""
    app = App(
        __name__,
        instance_path=os.environ.get("MODERATION_INSTANCE_PATH", str(PROJECT_ROOT / "instance")),
        instance_relative_config=True,
        template_folder=str(PROJECT_ROOT / "templates"),
    )
    load_config(app, test_config)

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
    db.init_app(app)
    errors.init_app(app)
    limits.init_app(app)
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
