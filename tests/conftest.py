"""Shared fixtures: a fresh app per test, on SQLite or the machine's PostgreSQL."""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text

from moderation import auth, create_app
from moderation.db import Comment, Moderator, Site, db
from tests import fakes

IN_CI = os.environ.get("CI") == "true"
PG_BASE = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def reachable(host: str, port: int) -> bool:
    """Return whether a TCP service answers on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (outside CI) or fail (in CI) when a service the test is about is missing."""
    if reachable(host, port):
        return
    message = f"{name} is not running on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI must provide it: see .ci/run)")
    pytest.skip(message)


@pytest.fixture
def steady_window() -> None:
    """Start a test that counts requests up to a limit well inside one limiter window.

    The sliding-window-counter strategy weighs the previous window's count by how much of the
    current window is left, rounding down: a test whose requests straddle a minute boundary
    could see one extra request allowed. Windows are aligned to whole minutes of the epoch.
    """
    into_minute = time.time() % 60
    if into_minute > 50:
        time.sleep(60.05 - into_minute)


def base_config(**overrides: Any) -> dict[str, Any]:
    """Return the config every test app starts from."""
    config: dict[str, Any] = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-of-the-test-suite",
        "SQLALCHEMY_DATABASE_URI": "sqlite://",
        "RATELIMIT_ENABLED": False,
        "RATELIMIT_STORAGE_URI": "memory://",
        "MODEL_DIR": "",
        "WTF_CSRF_ENABLED": False,
        "WEBHOOKS_WORKER": False,
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    """Create a private schema in the shared PostgreSQL database for this test session."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"moderation_test_{os.getpid()}_{secrets.token_hex(3)}"
    engine = create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def make_app(database_url: str = "sqlite://", **overrides: Any) -> Flask:
    """Create a test app with its tables created."""
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=database_url, **overrides))
    with app.app_context():
        db.create_all()
    return app


def clear_tables(app: Flask) -> None:
    """Empty every table, so the next test on a shared database starts clean."""
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on in-memory SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return "sqlite://"
    return str(request.getfixturevalue("pg_schema"))


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    """Return a fresh app on the parametrised database."""
    app = make_app(database_url)
    yield app
    clear_tables(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Return a test client for the app."""
    return app.test_client()


def add_site(
    app: Flask, name: str = "Blog", origins: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> Site:
    """Store a site and return it detached, usable outside the app context."""
    with app.app_context():
        site = Site(name=name, origins=origins or [], settings=settings or {})
        db.session.add(site)
        db.session.commit()
        db.session.refresh(site)
        db.session.expunge(site)
    return site


PASSWORD = "correct horse battery"


def add_moderator(app: Flask, email: str, *sites: Site, admin: bool = False) -> None:
    """Store a moderator of these sites (or an admin) with the password PASSWORD."""
    with app.app_context():
        chosen = [db.session.get(Site, s.id) for s in sites]
        db.session.add(Moderator(email=email, password_hash=auth.hash_password(PASSWORD),
                                 is_admin=admin, sites=chosen))
        db.session.commit()


def stored(app: Flask) -> int:
    """Return how many comments the database holds."""
    with app.app_context():
        return db.session.execute(select(func.count(Comment.id))).scalar_one()


@pytest.fixture
def scored(app: Flask) -> Flask:
    """Return the app with the fake keyword classifier installed."""
    fakes.install(app)
    return app


@pytest.fixture
def csrf_app(database_url: str) -> Iterator[Flask]:
    """Return an app that checks CSRF tokens on the dashboard's forms, as in production."""
    app = make_app(database_url, WTF_CSRF_ENABLED=True)
    fakes.install(app)
    yield app
    clear_tables(app)


def token_from(html: str) -> str:
    """Return the CSRF token of a dashboard page's form."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def issue_key(app: Flask, site: Site, scopes: tuple[str, ...] | None = None) -> str:
    """Issue an API key for the site (all scopes unless given) and return its secret."""
    from moderation import keys

    with app.app_context():
        stored = db.session.get(Site, site.id)
        issued = keys.issue(stored) if scopes is None else keys.issue(stored, scopes)
        db.session.commit()
        return issued.key


@pytest.fixture
def site(app: Flask) -> Site:
    """Return a site that allows https://blog.example."""
    return add_site(app, origins=["https://blog.example"])


CHROMIUM = "/usr/bin/chromium"
# Headless flags for Debian's chromium in this sandbox: no sandbox (root), no background fetches.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
SCREENSHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Return a headless Debian chromium driven by Playwright (skips outside CI if missing)."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is not installed"
        if IN_CI:
            pytest.fail(message + " (CI must provide it: see .ci/run)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()
