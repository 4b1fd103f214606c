"""Migrations build the same schema as the tables, and the site CLI works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, inspect, text

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


def test_migrations_match_the_tables_on_postgres(pg_schema: str) -> None:
    engine = create_engine(pg_schema.split("?")[0])
    schema = pg_schema.rsplit("%3D", 1)[1] + "_mig"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = pg_schema.rsplit("%3D", 1)[0] + "%3D" + schema
        app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url))
        with app.app_context():
            upgrade()
            migrated = set(inspect(db.engine).get_table_names())
            db.engine.dispose()
        assert set(db.metadata.tables) <= migrated
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


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


def test_refuses_default_secret_outside_testing() -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"SECRET_KEY": "dev", "SQLALCHEMY_DATABASE_URI": "sqlite://"})


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
    assert "Refusing to start with the default SECRET_KEY" in served.stderr


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
