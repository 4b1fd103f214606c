"""Failures of Redis, PostgreSQL and the model, against private servers stopped and started."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from moderation import create_app
from moderation.db import Comment, ModerationEvent, Thread, db
from moderation.limits import limiter
from moderation.observability import JsonFormatter
from tests import fakes
from tests.conftest import add_site, base_config, clear_tables, make_app
from tests.services import PrivatePostgres, PrivateRedis

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("steady_window")]


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Capture the app's log lines as JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)


def messages(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["message"] for line in stream.getvalue().splitlines() if line]


def post(client: FlaskClient, key: str, text: str = "Nice post", addr: str = "198.51.100.1",
         uri: str = "/p") -> Any:
    return client.post("/api/v1/comments", json={"site": key, "uri": uri, "text": text},
                       headers={"X-Forwarded-For": addr})


# -- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()
    # The limiter is one object per process: leave it healthy for the next test.
    limiter._storage_dead = False


def test_redis_down_falls_back_to_per_process_limits_and_recovers(
    private_redis: PrivateRedis, logs: io.StringIO
) -> None:
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=private_redis.url,
                   RATELIMIT_KEY_PREFIX="faults", LIMIT_POST="3/minute", PROXY_COUNT=1)
    fakes.install(app)
    key = add_site(app).key
    client = app.test_client()
    shared = redis.Redis.from_url(private_redis.url)

    assert post(client, key, addr="198.51.100.1").status_code == 201
    assert shared.keys("*faults*"), "the counter lives in Redis while it is up"
    assert client.get("/api/v1/health").json["status"] == "ok"

    private_redis.stop()
    # Posting continues, counted in this process's memory with the same limits.
    statuses = [post(client, key, addr="198.51.100.2").status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    assert post(client, key, addr="198.51.100.3").status_code == 201
    for _ in range(3):
        health = client.get("/api/v1/health")
        assert health.status_code == 200
        assert health.json["status"] == "degraded"
        assert health.json["checks"]["limiter"] == {"ok": False, "storage": "redis"}
    down = [m for m in messages(logs) if "unreachable" in m and "rate-limit storage" in m]
    assert len(down) == 1, messages(logs)

    private_redis.start()
    health = client.get("/api/v1/health")
    assert health.json["status"] == "ok"
    assert health.json["checks"]["limiter"]["ok"] is True
    back = [m for m in messages(logs) if "is back" in m]
    assert len(back) == 1
    # Counting is shared again: the fresh Redis counts this address from zero.
    assert post(client, key, addr="198.51.100.4").status_code == 201
    assert shared.keys("*faults*")
    with app.app_context():
        assert db.session.execute(select(func.count(Comment.id))).scalar_one() == 6


@pytest.fixture
def hung_server() -> Iterator[int]:
    """Return the port of a server that accepts connections and never answers (it hangs)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


def test_a_hung_redis_falls_back_instead_of_hanging_requests(hung_server: int) -> None:
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{hung_server}",
                   LIMIT_POST="3/minute", PROXY_COUNT=1)
    fakes.install(app)
    key, client = add_site(app).key, app.test_client()
    try:
        started = time.monotonic()
        statuses = [post(client, key, addr="198.51.100.7").status_code for _ in range(4)]
        assert statuses == [201, 201, 201, 429]
        assert client.get("/api/v1/health").json["status"] == "degraded"
        # Bounded by the client's timeouts, not by the worker's (30 s) or forever.
        assert time.monotonic() - started < 10
    finally:
        limiter._storage_dead = False  # noqa: SLF001


# -- PostgreSQL -------------------------------------------------------------------------------


def test_a_hung_postgres_answers_503_instead_of_hanging_requests(hung_server: int) -> None:
    app = create_app(base_config(
        SQLALCHEMY_DATABASE_URI=f"postgresql+psycopg://postgres@127.0.0.1:{hung_server}/test",
        DB_CONNECT_TIMEOUT_SECONDS=0.5))  # under a second: still a timeout, not "wait forever"
    client = app.test_client()
    started = time.monotonic()
    assert client.get("/readyz").status_code == 503
    response = client.post("/api/v1/comments", json={"site": "s_x", "uri": "/p", "text": "Hi"})
    assert response.status_code == 503
    assert response.json["error"]["code"] == "service_unavailable"
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    yield server
    server.remove()


def pg_app(server: PrivatePostgres, **overrides: Any) -> tuple[Flask, str, FlaskClient]:
    """Return an app on the private server with the production pool settings, a site, a client."""
    app = make_app(
        server.url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_recycle": 1800, "connect_args": {"connect_timeout": 3}},
        **overrides,
    )
    fakes.install(app)
    return app, add_site(app).key, app.test_client()


def test_postgres_down_answers_503_writes_nothing_and_recovers_without_restart(
    private_postgres: PrivatePostgres,
) -> None:
    app, key, client = pg_app(private_postgres)
    assert post(client, key, text="before").status_code == 201

    private_postgres.stop()
    for response in (
        post(client, key, text="during the outage"),
        client.get("/api/v1/comments", query_string={"site": key, "uri": "/p"}),
        client.post("/api/v1/counts", json={"site": key, "uris": ["/p"]}),
    ):
        assert response.status_code == 503, response.data
        assert response.json["error"]["code"] == "service_unavailable"
    assert client.get("/readyz").status_code == 503
    assert client.get("/api/v1/health").status_code == 503
    assert client.get("/livez").status_code == 200

    private_postgres.start()
    assert client.get("/readyz").status_code == 200
    assert post(client, key, text="after").status_code == 201
    listing = client.get("/api/v1/comments", query_string={"site": key, "uri": "/p"}).json
    assert [c["html"] for c in listing["comments"]] == ["<p>before</p>", "<p>after</p>"]
    with app.app_context():
        assert db.session.execute(select(func.count(Comment.id))).scalar_one() == 2
        assert db.session.execute(select(func.count(ModerationEvent.id))).scalar_one() == 2
        assert db.session.execute(select(func.count(Thread.id))).scalar_one() == 1
        db.session.remove()  # end the open transaction: DROP would wait for its locks
        db.drop_all()
        db.engine.dispose()


def test_a_restart_while_idle_costs_no_request(private_postgres: PrivatePostgres) -> None:
    """Pooled connections idle past DB_PING_IDLE_SECONDS are checked, so none fails a reader."""
    app, key, client = pg_app(private_postgres, DB_PING_IDLE_SECONDS=0.5)
    assert post(client, key, text="before the restart").status_code == 201

    private_postgres.stop()
    private_postgres.start()
    time.sleep(0.6)
    assert post(client, key, text="after the restart").status_code == 201
    listing = client.get("/api/v1/comments", query_string={"site": key, "uri": "/p"}).json
    assert len(listing["comments"]) == 2
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def test_reads_and_posts_after_an_idle_spell_succeed(pg_schema: str) -> None:
    """A pooled connection pinged after sitting idle serves the direct reads and posts."""
    app = make_app(pg_schema, DB_PING_IDLE_SECONDS=0.05)
    fakes.install(app)
    key, client = add_site(app).key, app.test_client()
    assert post(client, key, text="first").status_code == 201
    counts = {"site": key, "uris": ["/p"]}
    for _ in range(2):
        time.sleep(0.1)
        assert client.post("/api/v1/counts", json=counts).status_code == 200
        time.sleep(0.1)
        thread = client.get("/api/v1/comments", query_string={"site": key, "uri": "/p"})
        assert thread.status_code == 200
        time.sleep(0.1)
        assert post(client, key, text="again").status_code == 201
    assert client.post("/api/v1/counts", json=counts).json["counts"] == {"/p": 3}
    clear_tables(app)


def test_a_connection_killed_under_the_direct_reads_is_replaced(
    private_postgres: PrivatePostgres,
) -> None:
    """Counts and thread reads run straight on the driver: a dead connection leaves the pool."""
    app, key, client = pg_app(private_postgres, DB_PING_IDLE_SECONDS=3600)
    assert post(client, key, text="one").status_code == 201
    counts = {"site": key, "uris": ["/p", "/none"]}
    assert client.post("/api/v1/counts", json=counts).json["counts"] == {"/p": 1, "/none": 0}
    with app.app_context():
        db.session.remove()
        pooled = db.engine.raw_connection()
        pid = pooled.driver_connection.info.backend_pid  # type: ignore[union-attr]
        pooled.close()
    with psycopg.connect(private_postgres.url.replace("+psycopg", ""), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The pool hands out a killed connection (no ping within the hour): that one request fails
    # as an outage would, the connection is dropped, and the next request gets a fresh one.
    statuses = [client.post("/api/v1/counts", json=counts).status_code for _ in range(3)]
    assert statuses == [503, 200, 200]
    assert client.post("/api/v1/counts", json=counts).json["counts"] == {"/p": 1, "/none": 0}
    listing = client.get("/api/v1/comments", query_string={"site": key, "uri": "/p"})
    assert listing.status_code == 200 and len(listing.json["comments"]) == 1
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def test_postgres_down_in_the_middle_of_a_submission_leaves_no_partial_rows(
    private_postgres: PrivatePostgres,
) -> None:
    """Stop the server after the thread row is flushed but before the commit."""
    app = make_app(private_postgres.url)
    fakes.install(app)
    key = add_site(app).key
    client = app.test_client()
    fake = app.extensions["classifier"].classifier
    original = fake.score_one

    def stop_then_score(item: Any) -> Any:
        private_postgres.stop()  # the new thread row is flushed in the open transaction
        return original(item)

    fake.score_one = stop_then_score  # type: ignore[method-assign]
    response = post(client, key, text="cut off", uri="/new-thread")
    assert response.status_code == 503
    assert response.json["error"]["code"] == "service_unavailable"
    fake.score_one = original  # type: ignore[method-assign]

    private_postgres.start()
    with app.app_context():
        assert db.session.execute(select(func.count(Thread.id))).scalar_one() == 0
        assert db.session.execute(select(func.count(Comment.id))).scalar_one() == 0
    assert post(client, key, text="retried", uri="/new-thread").status_code == 201
    with app.app_context():
        assert db.session.execute(select(func.count(Thread.id))).scalar_one() == 1
        db.session.remove()  # end the open transaction: DROP would wait for its locks
        db.drop_all()
        db.engine.dispose()


# -- the model --------------------------------------------------------------------------------


def _model_dir(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    path.mkdir()
    if kind == "corrupt-manifest":
        (path / "manifest.json").write_text("{not json", encoding="utf-8")
    elif kind == "corrupt-artifact":
        import sklearn

        (path / "classifier.skops").write_bytes(b"PK\x03\x04 this is not a zip file")
        manifest = {"versions": {"sklearn": sklearn.__version__},
                    "artifacts": [{"file": "classifier.skops", "sha256": "0" * 64}]}
        (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("empty", "missing"), ("corrupt-manifest", "corrupt manifest"),
     ("corrupt-artifact", "sha256 mismatch")],
)
def test_missing_or_corrupt_model_holds_everything_and_degrades_health(
    tmp_path: Path, logs: io.StringIO, kind: str, reason: str
) -> None:
    app = make_app(MODEL_DIR=str(_model_dir(tmp_path, kind)))
    key = add_site(app).key
    client = app.test_client()
    for text in ("A thoughtful, friendly comment.", "viagra viagra cheap pills"):
        response = post(client, key, text=text)
        assert response.status_code == 202
        assert response.json["comment"]["status"] == "pending"
    health = client.get("/api/v1/health")
    assert health.status_code == 200
    assert health.json["status"] == "degraded"
    assert reason in health.json["checks"]["model"]["error"]
    assert client.get("/readyz").status_code == 200  # still taking comments, for moderators
    assert any("classifier not loaded" in m for m in messages(logs))
    assert 'moderation_model_loaded 0.0' in client.get("/metrics").text
