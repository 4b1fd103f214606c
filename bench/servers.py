"""Start, seed and stop the servers the HTTP benchmark compares: ours and Isso 0.14."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moderation.config import sqlalchemy_url

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ISSO_VENV = ROOT / "bench" / ".isso-venv"
ISSO_VERSION = "0.14.0"
PG_BASE = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")

# Thread shapes: (uri, top-level comments, replies under each), so one response holds them all.
THREADS = {"/t50": (10, 4), "/t500": (100, 4)}
COUNT_URIS = [f"/counted/{i}" for i in range(20)]
# Pages the benchmark posts to; their comments are removed between rounds (Server.reset).
POSTED_URIS = ("/posted", "/paced")
# Comments both servers hold after seeding.
SEEDED = (sum(roots * (1 + replies) for roots, replies in THREADS.values())
          + sum(1 + i % 4 for i in range(len(COUNT_URIS))))
# The page that Server.grow fills with copies of the 500-comment thread: a site with history.
ARCHIVE_URI = "/archive"
TEXT = ("I read the whole article and I think the point about the committee vote is fair, "
        "though the numbers for 2019 deserve a second look. 我同意这个观点。 **Thanks** for "
        "writing it, and see https://example.org/report for the data.")


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 60) -> tuple[int, Any]:
    """Send one request with a JSON body and return (status, parsed JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_ready(url: str, timeout: float = 60) -> None:
    """Wait until url answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http("GET", url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


@dataclass
class Server:
    """A running gunicorn master and what the benchmark needs to address it."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    workers: int
    tmp: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_rss_mb(self) -> list[float]:
        """Return the resident memory of each worker process in MB."""
        out = []
        for child in Path("/proc").glob("[0-9]*"):
            try:
                status = (child / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{self.process.pid}\n" not in status:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]) / 1024)
        return sorted(out)

    def reset(self) -> None:
        """Delete what the benchmark posted, so that every round starts from the seeded data.

        Isso's count query groups its whole comment table, so it slows down as the table
        grows; without this, each round would compare against a larger Isso database.
        """
        self.extra["reset"]()

    def grow(self, copies: int) -> None:
        """Store ``copies`` copies of the 500-comment thread on another page, in SQL."""
        self.extra["grow"](copies)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM) and remove the temporary files."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        cleanup = self.extra.get("cleanup")
        if cleanup:
            cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class Private:
    """A private PostgreSQL schema and Redis key prefix, and how to remove them."""

    database_url: str
    prefix: str
    cleanup: Callable[[], None]


def private_backends(tag: str) -> Private:
    """Create a schema of its own in the machine's PostgreSQL and a Redis key prefix."""
    from sqlalchemy import create_engine, text

    schema = f"{tag}_{os.getpid()}_{secrets.token_hex(3)}"
    prefix = f"{tag}-{secrets.token_hex(4)}"
    engine = create_engine(sqlalchemy_url(PG_BASE))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def cleanup() -> None:
        import redis

        store = redis.Redis.from_url(REDIS_BASE)
        for key in store.scan_iter(f"*{prefix}*"):
            store.delete(key)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    return Private(f"{PG_BASE}?options=-csearch_path%3D{schema}", prefix, cleanup)


# -- ours -----------------------------------------------------------------------------------


def start_ours(name: str, backend: str, workers: int, model_dir: str,
               extra_env: dict[str, str] | None = None) -> Server:
    """Start our app under gunicorn on SQLite (one file) or PostgreSQL + Redis, and seed it."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "MODERATION_SECRET_KEY": secrets.token_hex(16),
        "MODERATION_INSTANCE_PATH": str(tmp / "instance"),
        "MODERATION_MODEL_DIR": model_dir,
        "MODERATION_PROXY_COUNT": "1",
        # The flood breakers (per thread, per site) would turn a load test into a 429 test:
        # they are raised; per-address limits stay on and every request comes from a new address.
        "MODERATION_LIMIT_THREAD": "10000000/minute",
        "MODERATION_LIMIT_SITE": "10000000/minute",
        "MODERATION_LOG_REQUESTS": "false",
        "MODERATION_LOG_LEVEL": "WARNING",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
        "GUNICORN_LOG_LEVEL": "warning",
        "GUNICORN_MAX_REQUESTS": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        **(extra_env or {}),
    }
    cleanup = None
    if backend == "postgres":
        private = private_backends("bench")
        cleanup = private.cleanup
        env["DATABASE_URL"] = private.database_url
        env["RATELIMIT_STORAGE_URI"] = REDIS_BASE
        env["MODERATION_RATELIMIT_KEY_PREFIX"] = private.prefix

    flask = [str(VENV_BIN / "flask"), "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    created = subprocess.run([*flask, "site", "add", "--name", "Bench", "--json"], cwd=ROOT,
                             env=env, check=True, capture_output=True, text=True)
    site_key = json.loads(created.stdout.strip().splitlines()[-1])["key"]
    _seed_ours(env)
    process = _spawn([str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], env,
                     tmp / "server.log", ROOT)
    database_url = env.get("DATABASE_URL") or f"sqlite:///{tmp / 'instance' / 'moderation.sqlite3'}"
    server = Server(name, process, port, workers, tmp,
                    {"site": site_key, "env": env, "cleanup": cleanup,
                     "database_url": database_url,
                     "reset": lambda: _reset_ours(database_url),
                     "grow": lambda copies: _grow_ours(database_url, copies)})
    wait_ready(server.url + "/readyz")
    return server


SEED_SCRIPT = r"""
import json, sys
from sqlalchemy import update
from moderation import create_app, comments
from moderation.db import Comment, Site, db
from moderation.api import pipeline
spec = json.loads(sys.argv[1])
app = create_app()
with app.app_context():
    site = db.session.query(Site).one()
    pipe = pipeline(app)
    plain = comments.Pipeline(classifier=None, default_thresholds=pipe.default_thresholds)
    n = 0
    def add(uri, parent=None):
        global n
        n += 1
        body = {"site": site.key, "uri": uri, "title": "Bench", "text": spec["text"] + f" #{n}"}
        if parent:
            body["parent"] = parent
        return comments.submit(body, comments.Client(f"10.9.{n // 250}.{n % 250}"), plain,
                               site=site).comment.id
    def publish():
        db.session.execute(update(Comment).where(Comment.status != "published")
                           .values(status="published"))
        db.session.commit()
    for uri, (roots, replies) in spec["threads"].items():
        for _ in range(roots):
            root = add(uri)
            publish()
            for _ in range(replies):
                add(uri, root)
    for i, uri in enumerate(spec["counts"]):
        for _ in range(1 + i % 4):
            add(uri)
    publish()
    if db.engine.dialect.name == "postgresql":
        # What autovacuum would do on a live server: drop the seed's dead row versions.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE comment, thread")
"""


def _reset_ours(database_url: str) -> None:
    """Delete the benchmark's posted comments and their audit rows from our database."""
    from sqlalchemy import bindparam, create_engine, text

    engine = create_engine(sqlalchemy_url(database_url))
    posted = ("SELECT c.id FROM comment c JOIN thread t ON t.id = c.thread_id "
              "WHERE t.uri IN :uris")
    try:
        with engine.begin() as conn:
            for statement in (f"DELETE FROM moderation_event WHERE comment_id IN ({posted})",
                              f"DELETE FROM comment WHERE id IN ({posted})"):
                conn.execute(text(statement).bindparams(bindparam("uris", expanding=True)),
                             {"uris": list(POSTED_URIS)})
    finally:
        engine.dispose()


def _grow_ours(database_url: str, copies: int) -> None:
    """Copy the 500-comment thread's rows ``copies`` times onto the archive page."""
    from sqlalchemy import create_engine, insert, text

    from moderation.db import Comment, Thread

    columns = ", ".join(c.name for c in Comment.__table__.columns
                        if c.name not in ("id", "thread_id", "parent_id", "root_id"))
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.begin() as conn:
            site, source = conn.execute(
                text("SELECT site_id, id FROM thread WHERE uri = :uri"), {"uri": "/t500"}).one()
            archive = conn.execute(insert(Thread.__table__).values(
                site_id=site, uri=ARCHIVE_URI, title="Archive")).inserted_primary_key[0]
            for _ in range(copies):
                conn.execute(text(f"INSERT INTO comment (thread_id, {columns}) "
                                  f"SELECT :archive, {columns} FROM comment "
                                  "WHERE thread_id = :source"),
                             {"archive": archive, "source": source})
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE comment, thread")
    finally:
        engine.dispose()


def _seed_ours(env: dict[str, str]) -> None:
    spec = {"threads": THREADS, "counts": COUNT_URIS, "text": TEXT}
    done = subprocess.run([sys.executable, "-c", SEED_SCRIPT, json.dumps(spec)], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError("seeding failed:\n" + done.stderr[-3000:])


# -- Isso -----------------------------------------------------------------------------------


def ensure_isso() -> Path:
    """Install Isso 0.14 and gunicorn into bench/.isso-venv once; return its bin directory."""
    bin_dir = ISSO_VENV / "bin"
    if not (bin_dir / "gunicorn").exists() or not list(
        ISSO_VENV.glob(f"lib/python*/site-packages/isso-{ISSO_VERSION}.dist-info")
    ):
        subprocess.run([sys.executable, "-m", "venv", str(ISSO_VENV)], check=True)
        subprocess.run([str(bin_dir / "pip"), "install", "-q", f"isso=={ISSO_VERSION}",
                        "gunicorn==23.0.0"], check=True)
    return bin_dir


ISSO_CONFIG = """[general]
dbpath = {db}
host = http://127.0.0.1:{port}
notify = stdout
max-age = 15m
[moderation]
enabled = false
[guard]
enabled = false
[server]
listen = http://127.0.0.1:{port}
[markup]
renderer = mistune
"""


def _reset_isso(path: Path) -> None:
    """Delete the benchmark's posted comments from Isso's SQLite database."""
    marks = ",".join("?" * len(POSTED_URIS))
    with sqlite3.connect(path, timeout=30) as conn:
        conn.execute("DELETE FROM comments WHERE tid IN "
                     f"(SELECT id FROM threads WHERE uri IN ({marks}))", POSTED_URIS)
    conn.close()


def _grow_isso(path: Path, copies: int) -> None:
    """Copy the 500-comment thread's rows ``copies`` times onto the archive page."""
    columns = ("created, modified, mode, remote_addr, text, author, email, website, likes, "
               "dislikes, voters, notification")
    with sqlite3.connect(path, timeout=30) as conn:
        archive = conn.execute("INSERT INTO threads (uri, title) VALUES (?, 'Archive')",
                               (ARCHIVE_URI,)).lastrowid
        source = conn.execute("SELECT id FROM threads WHERE uri = '/t500'").fetchone()[0]
        for _ in range(copies):
            conn.execute(f"INSERT INTO comments (tid, parent, {columns}) "
                         f"SELECT ?, NULL, {columns} FROM comments WHERE tid = ?",
                         (archive, source))
    conn.close()


def _gunicorn(bin_dir: Path, port: int, workers: int, threads: int, worker_class: str,
              app: str) -> list[str]:
    """Return the gunicorn command line both the peer and the fixed-answer app run under."""
    return [str(bin_dir / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", str(workers),
            "--threads", str(threads), "-k", worker_class, "--log-level", "warning", app]


def _plain_env(**extra: str) -> dict[str, str]:
    """Return a minimal environment for a benchmark server, plus extra variables."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"), **extra}


def start_floor(workers: int, threads: int = 1, worker_class: str = "sync",
                data_of: Server | None = None) -> Server:
    """Start bench/floor.py under the same gunicorn workers: a fixed answer, no application.

    With data_of (one of our servers), start its data_app instead: the counts request answered
    from that server's database and counted on its limit storage, without the framework.
    """
    tmp = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    port = free_port()
    env, app = _plain_env(), "floor:app"
    if data_of is not None:
        ours = data_of.extra["env"]
        app = "floor:data_app"
        env.update(FLOOR_DATABASE_URL=data_of.extra["database_url"],
                   FLOOR_LIMIT_STORAGE=ours.get("RATELIMIT_STORAGE_URI", "memory://"),
                   FLOOR_KEY_PREFIX=ours.get("MODERATION_RATELIMIT_KEY_PREFIX", "floor"))
    process = _spawn(_gunicorn(VENV_BIN, port, workers, threads, worker_class, app),
                     env, tmp / "server.log", ROOT / "bench")
    server = Server("gunicorn, no framework", process, port, workers, tmp)
    wait_ready(server.url + "/livez")
    return server


def start_isso(name: str, workers: int, threads: int = 1, worker_class: str = "sync") -> Server:
    """Start Isso 0.14 under gunicorn with its guard off, and seed the same threads."""
    bin_dir = ensure_isso()
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    port = free_port()
    config = tmp / "isso.cfg"
    config.write_text(ISSO_CONFIG.format(db=tmp / "comments.db", port=port), encoding="utf-8")
    process = _spawn(_gunicorn(bin_dir, port, workers, threads, worker_class, "isso.run"),
                     _plain_env(ISSO_SETTINGS=str(config)), tmp / "server.log", tmp)
    server = Server(name, process, port, workers, tmp,
                    {"reset": lambda: _reset_isso(tmp / "comments.db"),
                     "grow": lambda copies: _grow_isso(tmp / "comments.db", copies)})
    wait_ready(server.url + "/info")
    n = 0

    def add(uri: str, parent: int | None = None) -> int:
        nonlocal n
        n += 1
        body: dict[str, Any] = {"text": TEXT + f" #{n}", "title": "Bench", "author": "Ann"}
        if parent:
            body["parent"] = parent
        status, data = http("POST", f"{server.url}/new?uri={uri}", body)
        if status not in (201, 202):
            raise RuntimeError(f"Isso refused a seed comment: {status} {data}")
        return int(data["id"])

    for uri, (roots, replies) in THREADS.items():
        for _ in range(roots):
            root = add(uri)
            for _ in range(replies):
                add(uri, root)
    for i, uri in enumerate(COUNT_URIS):
        for _ in range(1 + i % 4):
            add(uri)
    return server
