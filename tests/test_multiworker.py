"""Two gunicorn servers, two workers each, sharing the machine's PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, func, select, text

from moderation.db import Comment, Site, db
from tests.conftest import PG_BASE, make_app, need_service
from tests.services import free_port, listening, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis,
              pytest.mark.usefixtures("steady_window")]

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
REDIS_DB = 13


@dataclass
class Server:
    """One gunicorn master with its port, process and log file."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """Two servers over one database schema and one Redis key prefix."""

    servers: list[Server]
    database_url: str
    site_key: str
    env: dict[str, str]


def request(url: str, body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = 30) -> tuple[int, Any]:
    """Send a JSON request and return (status, parsed body or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def start_server(env: dict[str, str], tmp: Path, name: str) -> Server:
    port = free_port()
    metrics_dir = tmp / f"metrics-{name}"
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}",
                 "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            stdout=out, stderr=subprocess.STDOUT,
        )
    server = Server(port, process, log)
    wait_for(lambda: listening(port) and request(server.url + "/readyz")[0] == 200,
             timeout=40, what=f"gunicorn {name} to be ready")
    return server


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    need_service("PostgreSQL", "127.0.0.1", 5432)
    need_service("Redis", "127.0.0.1", 6379)
    schema = f"moderation_mw_{os.getpid()}_{secrets.token_hex(3)}"
    engine = create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    database_url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    app = make_app(database_url)
    with app.app_context():
        site = Site(name="Busy blog", origins=[], settings={})
        db.session.add(site)
        db.session.commit()
        site_key = site.key
        db.session.remove()
        db.engine.dispose()
    prefix = f"mw-{secrets.token_hex(4)}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": database_url.replace("postgresql+psycopg://", "postgresql://"),
        "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "MODERATION_RATELIMIT_KEY_PREFIX": prefix,
        # Every server must share the secret: limit keys are keyed hashes of the address.
        "MODERATION_SECRET_KEY": "multiworker-" + secrets.token_hex(8),
        "MODERATION_PROXY_COUNT": "1",
        "MODERATION_MODEL_DIR": "",
        "MODERATION_LIMIT_POST": "10/minute",
        "MODERATION_LIMIT_THREAD": "100000/minute",
        "MODERATION_LIMIT_SITE": "100000/minute",
        "MODERATION_LOG_REQUESTS": "false",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
        "GUNICORN_ACCESS_LOG": "",
    }
    tmp = Path(tempfile.mkdtemp(prefix="moderation-mw-"))
    servers: list[Server] = []
    try:
        servers = [start_server(env, tmp, "a"), start_server(env, tmp, "b")]
        yield Cluster(servers, database_url, site_key, env)
    finally:
        for server in servers:
            stop_server(server)
        store = redis.Redis(db=REDIS_DB)
        for key in store.scan_iter(f"*{prefix}*"):
            store.delete(key)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def post(server: Server, site_key: str, addr: str, uri: str, text_: str) -> tuple[int, Any]:
    return request(server.url + "/api/v1/comments",
                   {"site": site_key, "uri": uri, "text": text_},
                   headers={"X-Forwarded-For": addr})


def stored(cluster: Cluster, uri: str) -> list[str]:
    engine = create_engine(cluster.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(
                select(Comment.text).join(Comment.thread).where(text("thread.uri = :u")),
                {"u": uri},
            ).scalars())
    finally:
        engine.dispose()


def test_a_posting_limit_of_n_admits_exactly_n_across_both_servers(cluster: Cluster) -> None:
    a, b = cluster.servers
    uri = "/limit"
    statuses = [
        post((a, b)[i % 2], cluster.site_key, "203.0.113.50", uri, f"try {i}")[0]
        for i in range(24)
    ]
    counted = Counter(statuses)
    assert counted[201] + counted[202] == 10, counted
    assert counted[429] == 14, counted
    # Another address still gets its own ten.
    assert post(b, cluster.site_key, "203.0.113.51", uri, "someone else")[0] in (201, 202)
    assert len(stored(cluster, uri)) == 11


def test_a_thousand_concurrent_posts_are_stored_exactly_once(cluster: Cluster) -> None:
    uri = "/flood"
    servers = cluster.servers

    def one(i: int) -> tuple[int, str]:
        addr = f"10.{i // 250}.{i % 250}.{7 + i % 3}"
        body_text = f"comment number {i}"
        status, _ = post(servers[i % 2], cluster.site_key, addr, uri, body_text)
        return status, body_text

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(1000)))
    elapsed = time.monotonic() - started
    statuses = Counter(status for status, _ in results)
    assert not [s for s in statuses if s >= 500], statuses
    accepted = sorted(t for s, t in results if s in (201, 202))
    rows = stored(cluster, uri)
    assert len(accepted) == statuses[201] + statuses[202]
    assert sorted(rows) == accepted, "rows differ from accepted posts"
    assert len(set(rows)) == len(rows), "a comment was stored twice"
    assert len(rows) == 1000, statuses  # limits are raised: every post is accepted (held)
    engine = create_engine(cluster.database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM thread WHERE uri = '/flood'")).scalar() == 1
        events = conn.execute(
            select(func.count()).select_from(Comment).where(Comment.status == "pending")
        ).scalar()
        assert events is not None and events >= 1000
    engine.dispose()
    print(f"1000 posts through 2 servers x 2 workers in {elapsed:.1f} s")  # noqa: T201

    # Each server's /metrics merges its two workers (prometheus multiprocess mode).
    for index, server in enumerate(servers):
        status, body = request(server.url + "/metrics")
        assert status == 200
        total = sum(
            float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
            if line.startswith("moderation_http_requests_total{")
            and 'route="/api/v1/comments"' in line and 'method="POST"' in line
        )
        sent_here = 500 + 12 + (1 if index == 1 else 0)  # this test plus the limit test
        assert total == sent_here, (index, total)


def test_the_servers_own_messages_hold_no_raw_address(cluster: Cluster) -> None:
    server = cluster.servers[0]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    wait_for(lambda: "Invalid request" in server.log.read_text(), timeout=10,
             what="gunicorn to log the malformed request")
    [line] = [json.loads(entry) for entry in server.log.read_text().splitlines()
              if "Invalid request" in entry]
    assert line["message"].startswith("Invalid request from ip=127.0.0.0:")
    assert "127.0.0.1" not in line["message"]


def test_sigterm_lets_an_in_flight_request_finish(cluster: Cluster, tmp_path: Path) -> None:
    env = {**cluster.env, "GUNICORN_ACCESS_LOG": "-", "MODERATION_LOG_REQUESTS": "true"}
    server = start_server(env, tmp_path, "graceful")
    body = json.dumps({"site": cluster.site_key, "uri": "/graceful",
                       "text": "sent slowly"}).encode()
    head = (
        f"POST /api/v1/comments HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Forwarded-For: 192.0.2.9\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(head + body[:10])
            time.sleep(1.0)  # a worker is now reading this request's body
            server.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert server.process.poll() is None, "the master quit with a request in flight"
            sock.sendall(body[10:])
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 202"), reply[:200]
        assert server.process.wait(timeout=20) == 0
        assert not listening(server.port)
        assert stored(cluster, "/graceful") == ["sent slowly"]
    finally:
        stop_server(server)
    # Every log line is JSON; the request shows up in the app's and gunicorn's access lines
    # under one request id, with the anonymised network and never the raw address.
    raw = server.log.read_text()
    entries = [json.loads(line) for line in raw.splitlines() if line.strip()]
    posted = [e for e in entries if e.get("status") == 202]
    assert {e["logger"] for e in posted} == {"moderation.request", "gunicorn.access"}
    assert len({e["request_id"] for e in posted}) == 1
    assert {e["client"] for e in posted} == {"192.0.2.0"}
    assert "192.0.2.9" not in raw
