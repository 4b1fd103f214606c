"""Migrations build the same schema as the tables, and the site CLI works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import Engine, create_engine, inspect, text

from moderation import create_app
from moderation.comments import anonymise_addr, normalise_uri
from moderation.config import PROJECT_ROOT
from moderation.db import db
from tests.conftest import base_config


def test_migrations_match_the_tables_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url))
    with app.app_context():
        upgrade()
        migrated = set(inspect(db.engine).get_table_names())
    assert set(db.metadata.tables) <= migrated
    assert "alembic_version" in migrated


@contextmanager
def empty_schema(pg_schema: str, suffix: str) -> Iterator[tuple[Engine, str, str]]:
    """Create an empty schema beside the test's own; yield (engine, schema name, its URL)."""
    engine = create_engine(pg_schema.split("?")[0])
    schema = pg_schema.rsplit("%3D", 1)[1] + suffix
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield engine, schema, pg_schema.rsplit("%3D", 1)[0] + "%3D" + schema
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def test_migrations_match_the_tables_on_postgres(pg_schema: str) -> None:
    with empty_schema(pg_schema, "_mig") as (_, _, url):
        app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url))
        with app.app_context():
            upgrade()
            migrated = set(inspect(db.engine).get_table_names())
            db.engine.dispose()
        assert set(db.metadata.tables) <= migrated


def test_hosts_upgrading_at_once_take_turns(pg_schema: str, tmp_path: Path) -> None:
    """A deploy's `flask db upgrade` waits while another host's upgrade holds the lock."""
    from moderation.db import MIGRATION_LOCK

    with empty_schema(pg_schema, "_race") as (engine, schema, url):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODERATION_", "FLASK_"))}
        env.update(DATABASE_URL=url.replace("+psycopg", ""),
                   MODERATION_INSTANCE_PATH=str(tmp_path / "instance"))
        with engine.connect() as other_host:
            other_host.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            run = subprocess.Popen([str(Path(sys.executable).parent / "flask"), "--app", "wsgi",
                                    "db", "upgrade"], cwd=PROJECT_ROOT, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            with pytest.raises(subprocess.TimeoutExpired):
                run.wait(timeout=8)  # it started, and waits for the lock
            assert not inspect(other_host).get_table_names(schema=schema)
            other_host.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            other_host.commit()
        output = run.communicate(timeout=120)[0]
        assert run.returncode == 0, output
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names(schema=schema))
        assert set(db.metadata.tables) <= tables


def test_site_add_and_list(tmp_path: Path) -> None:
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'c.db'}"))
    with app.app_context():
        db.create_all()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["site", "add", "--name", "My blog", "--origin",
                                 "https://blog.example/", "--json"])
    assert result.exit_code == 0, result.output
    added = json.loads(result.output)
    assert added["origins"] == ["https://blog.example"]
    assert added["key"].startswith("s_")
    listed = runner.invoke(args=["site", "list"])
    assert added["key"] in listed.output and "My blog" in listed.output
    bad = runner.invoke(args=["site", "add", "--name", "x", "--origin", "blog.example/path"])
    assert bad.exit_code != 0
    assert "not an origin" in bad.output
    for name in ["", "   ", "x" * 201]:
        unnamed = runner.invoke(args=["site", "add", "--name", name])
        assert unnamed.exit_code == 2 and "--name" in unnamed.output
        assert "give a name of 1 to 200 characters" in unnamed.output
    assert runner.invoke(args=["site", "list"]).output.count("\n") == listed.output.count("\n")


@pytest.mark.parametrize("secret", ["dev", "", "short", 12345678901234567890])
def test_refuses_a_default_empty_or_short_secret_outside_testing(secret: object) -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"SECRET_KEY": secret, "SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_a_secret_of_digits_from_the_environment_is_a_string(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODERATION_SECRET_KEY", "12345678901234567890")
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["SECRET_KEY"] == "12345678901234567890"


def test_settings_of_every_kind_flask_accepts_still_start() -> None:
    app = create_app(base_config(
        PERMANENT_SESSION_LIFETIME=timedelta(days=7), MAX_CONTENT_LENGTH=None,
        METRICS_ALLOW_NETWORKS=("127.0.0.0/8",), DEMO=1, RATELIMIT_ENABLED=0,
        DB_PING_IDLE_SECONDS=0.5, WTF_CSRF_TIME_LIMIT=3600, SESSION_COOKIE_SECURE=None))
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(days=7)


@pytest.mark.parametrize(("name", "value", "said"), [
    ("MODERATION_LIMIT_POST", "3/minute;30/dya", "LIMIT_POST must be a rate limit"),
    ("MODERATION_LIMIT_LOGIN", "five per minute", "LIMIT_LOGIN must be a rate limit"),
    ("MODERATION_EDIT_WINDOW_SECONDS", "15m", "EDIT_WINDOW_SECONDS must be a number"),
    ("MODERATION_METRICS_ALLOW_NETWORKS", "10.0.0.0/8", "METRICS_ALLOW_NETWORKS must be a JSON"),
    ("MODERATION_METRICS_ALLOW_NETWORKS", '["10.0.0.0/33"]', "'10.0.0.0/33' is not a network"),
    ("MODERATION_LOG_REQUESTS", "maybe", "LOG_REQUESTS must be true or false"),
])
def test_a_setting_of_the_wrong_kind_stops_the_start_naming_it(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=re.escape(said)):
        create_app(base_config(SQLALCHEMY_DATABASE_URI="sqlite://"))


def _flask(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the flask CLI as an operator would on a fresh clone: no secret key anywhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODERATION_", "FLASK_")) and k != "SECRET_KEY"}
    env["MODERATION_INSTANCE_PATH"] = str(tmp_path / "instance")
    return subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", *args],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_commands_that_serve_nothing_need_no_secret_but_run_does(tmp_path: Path) -> None:
    data = tmp_path / "mine.csv"
    data.write_text("text,label\nThanks for the post,0\nYou are a stupid idiot,1\n")
    evaluated = _flask(tmp_path, "model", "evaluate", "--input", str(data), "--text-column",
                       "text", "--label-column", "label", "--score", "toxicity", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["positives"] == 1
    served = _flask(tmp_path, "run", "--port", "1")
    assert served.returncode != 0
    assert "Refusing to start without a SECRET_KEY of its own" in served.stderr


@pytest.mark.parametrize(
    ("raw", "anonymised"),
    [("203.0.113.77", "203.0.113.0"), ("2001:db8:1234:5678::1", "2001:db8:1234::"),
     ("::ffff:198.51.100.9", "198.51.100.0"), ("not-an-ip", "")],
)
def test_addresses_are_anonymised(raw: str, anonymised: str) -> None:
    assert anonymise_addr(raw) == anonymised


@pytest.mark.parametrize(
    ("raw", "uri"),
    [("/posts/a/", "/posts/a"), ("https://blog.example/posts/a?x=1#c", "/posts/a"),
     ("posts//a", "/posts/a"), ("/", "/")],
)
def test_uris_are_normalised(raw: str, uri: str) -> None:
    assert normalise_uri(raw) == uri
