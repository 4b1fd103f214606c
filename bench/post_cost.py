"""Where the time of one comment POST goes, in-process (no HTTP server, no network).

Run: .venv/bin/python -P bench/post_cost.py [--posts 2000] [--postgres] [--counts]

Builds the app on a temporary SQLite file (WAL, as in production), or with --postgres on a
private schema in the machine's PostgreSQL with rate limits in its Redis, with the shipped model
and rate limits on, posts comments through the WSGI app the way gunicorn calls it, and prints the
mean wall time per post split into stages by timing the functions that do each, and the CPU time
this process spent (the rest of the wall time is waiting on the database and Redis). With
--counts it sends counts requests for 20 pages instead and prints their mean time. Figures are
printed, not asserted; run it on a quiet machine. Under valgrind --tool=callgrind, the
difference between two runs of different lengths, divided by the difference in requests, is
the instruction count per request, whatever the machine's load.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from werkzeug.test import EnvironBuilder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import TEXT  # noqa: E402 - the comment bench/web.py posts
from moderation import api, comments, limits, sanitising  # noqa: E402
from moderation.config import sqlalchemy_url  # noqa: E402
from tests.conftest import add_site, base_config  # noqa: E402

WARM_UP = 200


def timed(spent: Counter[str], stage: str, owner: Any, name: str) -> None:
    """Replace owner.name with a wrapper adding its wall time to spent[stage]."""
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[stage] += time.perf_counter() - started

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000, help="requests to time")
    parser.add_argument("--postgres", action="store_true",
                        help="PostgreSQL and Redis on 127.0.0.1 instead of SQLite and memory")
    parser.add_argument("--counts", action="store_true",
                        help="time counts requests for 20 pages instead of posts")
    args = parser.parse_args()
    with ExitStack() as cleanup:
        run(args.posts, backends(cleanup) if args.postgres else {}, args.counts)


def backends(cleanup: ExitStack) -> dict[str, Any]:
    """Create a private PostgreSQL schema and Redis key prefix, removed when the run ends."""
    from bench.servers import REDIS_BASE, private_backends

    private = private_backends("post_cost")
    cleanup.callback(private.cleanup)
    return {"SQLALCHEMY_DATABASE_URI": sqlalchemy_url(private.database_url),
            "RATELIMIT_STORAGE_URI": REDIS_BASE, "RATELIMIT_KEY_PREFIX": private.prefix}


def run(posts: int, backend: dict[str, Any], counts: bool = False) -> None:
    """Post through the app in-process and print where the time went."""
    from moderation import create_app

    tmp = tempfile.mkdtemp(prefix="post-cost-")
    app = create_app(base_config(**{
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/bench.db", **backend},
        TESTING=False,
        MODEL_DIR=str(ROOT / "models"),
        RATELIMIT_ENABLED=True,
        PROXY_COUNT=1,
        LIMIT_THREAD="10000000/minute",
        LIMIT_SITE="10000000/minute",
        LIMIT_READ="10000000/minute",
        LOG_REQUESTS=False,
    ))
    with app.app_context():
        from moderation.db import db

        db.create_all()
    site = add_site(app, "Bench")

    def environ(i: int) -> dict[str, Any]:
        if counts:
            path = "/api/v1/counts"
            body = json.dumps({"site": site.key, "uris": [f"/page/{n}" for n in range(20)]})
        else:
            path = "/api/v1/comments"
            body = json.dumps({"site": site.key, "uri": "/posted", "text": f"{TEXT} {i}-{i * 7}"})
        return EnvironBuilder(
            path=path, method="POST", data=body,
            headers={"Content-Type": "application/json",
                     "X-Forwarded-For": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255 or 1}"},
        ).get_environ()

    def post(env: dict[str, Any]) -> str:
        status: list[str] = []
        body = app(env, lambda s, _h, _e=None: status.append(s))
        b"".join(body)
        body.close()  # type: ignore[attr-defined]
        return status[0]

    for i in range(WARM_UP):
        status = post(environ(i))
    if not status.startswith("20"):
        sys.exit(f"the app refused the benchmark's requests: {status}")

    spent: Counter[str] = Counter()
    if not counts:
        timed(spent, "sanitise + render (markdown, bleach)", sanitising, "clean_text")
        timed(spent, "model scores", comments, "_score")
        timed(spent, "lookups (standing, thread; on the driver)", comments, "_lookup_direct")
        timed(spent, "store (INSERTs and commit; on the driver)", comments, "_store_direct")
        timed(spent, "SQL statements (session)", Connection, "execute")
        timed(spent, "commit (session)", Session, "commit")
        timed(spent, "rate limits", limits, "check")
        timed(spent, "request hooks (id, metrics, headers, CORS)", Flask, "preprocess_request")
        timed(spent, "request hooks (id, metrics, headers, CORS)", Flask, "process_response")
        timed(spent, "answer (JSON body, Location)", api, "_submitted")
    envs = [environ(WARM_UP + i) for i in range(posts)]
    started, cpu = time.perf_counter(), time.process_time()
    for env in envs:
        post(env)
    total = (time.perf_counter() - started) / posts * 1000
    cpu = (time.process_time() - cpu) / posts * 1000

    where = "PostgreSQL + Redis" if backend else "SQLite"
    if counts:
        print(f"{posts} counts requests (20 pages) in-process on {where}: "
              f"{total * 1000:.0f} µs per request, {cpu * 1000:.0f} µs of it CPU")
        return
    print(f"{posts} POSTs in-process on {where}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}: {total:.2f} ms per post ({1000 / total:.0f} posts/s), "
          f"{cpu:.2f} ms of it CPU in this process")
    print(f"| {'stage':<44} | {'ms/post':>7} | {'share':>5} |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 7}|")
    rest = total
    for stage, seconds in spent.most_common():
        ms = seconds / posts * 1000
        rest -= ms
        print(f"| {stage:<44} | {ms:>7.3f} | {ms / total:>5.0%} |")
    print(f"| {'rest: Flask, validation, policy, ORM':<44} | {rest:>7.3f} | {rest / total:>5.0%} |")


if __name__ == "__main__":
    main()
