"""Migrations build the same schema as the tables, and the site CLI works."""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
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
    # Out of its range: the message names the range too.
    ("MODERATION_PAGE_SIZE", "0", "PAGE_SIZE must be a whole number from 1 to MAX_PAGE_SIZE "
                                  "(200), not 0"),
    ("MODERATION_PAGE_SIZE", "500", "PAGE_SIZE must be a whole number from 1 to MAX_PAGE_SIZE "
                                    "(200), not 500"),
    ("MODERATION_PAGE_SIZE", "20.5", "PAGE_SIZE must be a whole number"),
    ("MODERATION_MAX_PAGE_SIZE", "0", "MAX_PAGE_SIZE must be a whole number from 1 to 10,000"),
    ("MODERATION_MAX_COUNT_URIS", "0", "MAX_COUNT_URIS must be a whole number, 1 or more, not 0"),
    ("MODERATION_WEBHOOK_MAX_ATTEMPTS", "0", "WEBHOOK_MAX_ATTEMPTS must be a whole number, 1 or "
                                             "more, not 0"),
    ("MODERATION_EDIT_WINDOW_SECONDS", str(10**12), "EDIT_WINDOW_SECONDS must be a number of "
     "seconds from 0 to 315,619,200 (ten years), not 1000000000000"),
    ("MODERATION_MAX_CONTENT_LENGTH", "0", "MAX_CONTENT_LENGTH must be a whole number of bytes, "
                                          "1 or more, not 0"),
    ("MODERATION_WEBHOOK_TIMEOUT_SECONDS", "0", "WEBHOOK_TIMEOUT_SECONDS must be a number of "
                                                "seconds more than 0 and at most 100"),
    ("MODERATION_AKISMET_SPAM_PROBABILITY", "1.5", "AKISMET_SPAM_PROBABILITY must be a number "
                                                   "from 0 to 1, not 1.5"),
    ("MODERATION_MIN_FILL_MS", "Infinity", "MIN_FILL_MS must be a number of milliseconds, 0 or "
                                           "more, not inf"),
    ("MODERATION_PERMANENT_SESSION_LIFETIME", "0", "PERMANENT_SESSION_LIFETIME must be a number "
                                                   "of seconds from 1 to 315,619,200"),
    ("MODERATION_WTF_CSRF_TIME_LIMIT", "-5", "WTF_CSRF_TIME_LIMIT must be a number of seconds "
                                             "from 1 to 315,619,200"),
    ("MODERATION_PROXY_COUNT", "true", "PROXY_COUNT must be a whole number, 0 or more, not True"),
    ("MODERATION_LOG_LEVEL", "verbose", "LOG_LEVEL must be a logging level such as INFO"),
    ("MODERATION_LOG_FORMAT", "xml", 'LOG_FORMAT must be "json", "text" or ""'),
])
def test_a_setting_of_the_wrong_kind_or_out_of_range_stops_the_start_naming_it(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=re.escape(said)):
        create_app(base_config(SQLALCHEMY_DATABASE_URI="sqlite://"))


def test_settings_at_the_ends_of_their_ranges_start() -> None:
    create_app(base_config(PAGE_SIZE=1, MAX_PAGE_SIZE=1, EDIT_WINDOW_SECONDS=0, MIN_FILL_MS=0,
                           MAX_CONTENT_LENGTH=1, WEBHOOK_MAX_ATTEMPTS=1, MAX_COUNT_URIS=1))
    create_app(base_config(PAGE_SIZE=10_000, MAX_PAGE_SIZE=10_000, EDIT_WINDOW_SECONDS=3653 * 86400,
                           WEBHOOK_TIMEOUT_SECONDS=100, AKISMET_SPAM_PROBABILITY=1,
                           PERMANENT_SESSION_LIFETIME=timedelta(days=3653), LOG_LEVEL="debug",
                           LOG_FORMAT=""))


def _flask(tmp_path: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """Run the flask CLI as an operator would on a fresh clone: no secret key anywhere (and
    only the environment variables given in env)."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MODERATION_", "FLASK_"))
             and k not in ("SECRET_KEY", "DATABASE_URL", "RATELIMIT_STORAGE_URI")}
    clean["MODERATION_INSTANCE_PATH"] = str(tmp_path / "instance")
    return subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", *args],
                          cwd=PROJECT_ROOT, env={**clean, **(env or {})}, capture_output=True,
                          text=True, timeout=120)


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


# -- what an operator sees when a command cannot run ------------------------------------------


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Return a failed command's one line of error, checking that it is all it printed."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _closed_port() -> int:
    """Return a local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(("env", "said"), [
    ({"MODERATION_LIMIT_POST": "30/dya"},
     'LIMIT_POST must be a rate limit such as "3/minute;30/day", not \'30/dya\''),
    ({"MODERATION_PAGE_SIZE": "0"}, "PAGE_SIZE must be a whole number from 1 to MAX_PAGE_SIZE"),
    ({"RATELIMIT_STORAGE_URI": "foo://limiter:s3cret-pw@x"},
     "RATELIMIT_STORAGE_URI is not usable: unknown storage scheme : foo://x"),
    ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL (or SQLALCHEMY_DATABASE_URI, "
                                       "SQLALCHEMY_ENGINE_OPTIONS) is not usable"),
])
@pytest.mark.parametrize("command", [["site", "list"], ["db", "upgrade"]])
def test_a_bad_setting_stops_a_command_with_one_line_naming_it(
        tmp_path: Path, env: dict[str, str], said: str, command: list[str]) -> None:
    line = _one_error_line(_flask(tmp_path, *command, env=env))
    assert said in line
    assert "s3cret-pw" not in line


@pytest.mark.parametrize("command", [["site", "list"], ["db", "upgrade"],
                                     ["moderator", "list"], ["webhooks", "deliver", "--once"]])
def test_a_database_that_cannot_be_reached_is_one_line_without_its_password(
        tmp_path: Path, command: list[str]) -> None:
    port = _closed_port()
    url = f"postgresql://moderation:s3cret-pw@127.0.0.1:{port}/comments?sslmode=disable"
    line = _one_error_line(_flask(tmp_path, *command, env={"DATABASE_URL": url}))
    assert line == (f"Error: cannot reach the database at postgresql://127.0.0.1:{port}/comments"
                    " (credentials hidden): Connection refused")


def test_a_database_without_tables_says_to_run_the_migrations(tmp_path: Path) -> None:
    line = _one_error_line(_flask(tmp_path, "site", "list"))
    assert line.startswith("Error: the database at sqlite:///")
    assert line.endswith("failed: no such table: site "
                         "(has `flask --app wsgi db upgrade` been run?)")


def test_gunicorn_still_fails_loudly_on_a_bad_setting(tmp_path: Path) -> None:
    """A server (gunicorn imports wsgi:app) shows the whole traceback, as before."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODERATION_", "FLASK_"))}
    env.update(MODERATION_LIMIT_POST="30/dya", MODERATION_INSTANCE_PATH=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "Traceback" in run.stderr
    assert "moderation.SettingsError: Invalid settings" in run.stderr
    assert "LIMIT_POST must be a rate limit" in run.stderr


def _cli_app(tmp_path: Path) -> Flask:
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'c.db'}"))
    with app.app_context():
        db.create_all()
    return app


def _refused(result: Result, exit_code: int) -> str:
    """Return a refused command's output, checking it ended in a message, not a traceback."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return str(result.output)


def test_export_labels_to_a_place_it_cannot_write_says_so(tmp_path: Path) -> None:
    runner = _cli_app(tmp_path).test_cli_runner()
    target = tmp_path / "no" / "such" / "folder" / "labels.csv"
    output = _refused(runner.invoke(args=["model", "export-labels", "-o", str(target)]), 1)
    assert f"Error: cannot write {target}: No such file or directory" in output
    if Path("/proc/version").exists():
        output = _refused(runner.invoke(args=["model", "export-labels", "-o", "/proc/version"]),
                          1)
        assert "Error: cannot write /proc/version: " in output
    written = runner.invoke(args=["model", "export-labels", "-o", str(tmp_path / "l.csv")])
    assert written.exit_code == 0 and (tmp_path / "l.csv").read_text().startswith("text,")


def test_evaluate_explains_a_file_it_cannot_read(tmp_path: Path) -> None:
    runner = _cli_app(tmp_path).test_cli_runner()

    def evaluate(path: Path | str) -> Result:
        return runner.invoke(args=["model", "evaluate", "--input", str(path), "--text-column",
                                   "text", "--label-column", "label", "--score", "spam"])

    plain = tmp_path / "mine.csv.gz"
    plain.write_text("text,label\nThanks,0\n")
    assert f"Error: cannot read {plain}: it is not gzip-compressed, yet its name ends in .gz" \
        in _refused(evaluate(plain), 1)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(b"text,label\nThanks for the post,0\n" * 50)[:40])
    assert f"Error: cannot read {cut}: the gzip data is cut short or damaged" \
        in _refused(evaluate(cut), 1)
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert f"Error: cannot read {binary}: it holds binary data (NUL bytes), not CSV or TSV text" \
        in _refused(evaluate(binary), 1)
    utf16 = tmp_path / "excel.csv"
    utf16.write_text("text,label\nThanks,0\n", encoding="utf-16")
    assert "it is UTF-16 text; save it as UTF-8" in _refused(evaluate(utf16), 1)
    missing = tmp_path / "missing.csv"
    assert f"File '{missing}' does not exist" in _refused(evaluate(missing), 2)
    if Path("/proc/self/mem").exists():  # exists, yet reading it from the start fails
        assert "Error: cannot read /proc/self/mem: " in _refused(evaluate("/proc/self/mem"), 1)


@pytest.mark.parametrize(("option", "value"), [
    ("--origin", "http://[::1"), ("--origin", "http://localhost:99999"),
    ("--origin", "localhost:5000"), ("--api-origin", "http://[::1"),
])
def test_demo_seed_refuses_an_origin_it_cannot_use(
        tmp_path: Path, option: str, value: str) -> None:
    runner = _cli_app(tmp_path).test_cli_runner()
    output = _refused(runner.invoke(args=["demo", "seed", option, value]), 2)
    assert f"Invalid value for {option}: {value!r} is not an origin like" in output


def test_webhooks_log_of_an_unknown_site_says_so(tmp_path: Path) -> None:
    runner = _cli_app(tmp_path).test_cli_runner()
    output = _refused(runner.invoke(args=["webhooks", "log", "--site", "s_nonexistent"]), 2)
    assert "Invalid value for --site: no site with key 's_nonexistent'" in output
    added = json.loads(runner.invoke(args=["site", "add", "--name", "Blog", "--json"]).output)
    known = runner.invoke(args=["webhooks", "log", "--site", added["key"]])
    assert known.exit_code == 0 and known.output == ""
