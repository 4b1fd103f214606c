"""WSGI apps that answer the counts request with no framework: the ceilings of bench/web.py.

`app` reads the request and answers a fixed JSON body: gunicorn's own ceiling, which no
application under the same workers and load can pass.

`data_app` does only the work every counts request needs, straight on the libraries: parse the
JSON body, count the request against the per-address read limit with the limits library's
sliding window on the server's own counter storage (memory, or Redis), run our counts statement
on one open driver connection to the server's own database, and answer the counts. It has no
Flask, no request hooks, no pool and no validation: the ceiling for any server that reads both
stores on each request, set from the environment (FLOOR_DATABASE_URL, FLOOR_LIMIT_STORAGE,
FLOOR_LIMIT, FLOOR_KEY_PREFIX).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BODY = b'{"counts":{}}\n'

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Drain the request body and answer 200 with a small JSON object."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


class _Counts:
    """One worker's database connection, limiter and site ids, opened on its first request."""

    def __init__(self) -> None:
        from limits import parse
        from limits.storage import MemoryStorage, storage_from_string
        from limits.strategies import SlidingWindowCounterRateLimiter
        from sqlalchemy import create_engine, select

        from moderation.config import sqlalchemy_url
        from moderation.db import Site

        engine = create_engine(sqlalchemy_url(os.environ["FLOOR_DATABASE_URL"]))
        self.dialect = engine.dialect
        with engine.connect() as connection:
            self.sites = dict(connection.execute(select(Site.key, Site.id)).all())
        self.connection = engine.raw_connection()
        if self.dialect.name == "postgresql":
            self.connection.driver_connection.autocommit = True  # type: ignore[union-attr]
        from moderation.limits import sweep_lazily

        storage = storage_from_string(os.environ.get("FLOOR_LIMIT_STORAGE", "memory://"))
        if isinstance(storage, MemoryStorage):
            sweep_lazily(storage)  # as our server does: no timer thread walking every key
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.limit = parse(os.environ.get("FLOOR_LIMIT", "300/minute"))
        self.prefix = os.environ.get("FLOOR_KEY_PREFIX", "floor")

    def __call__(self, environ: dict[str, Any]) -> dict[str, int]:
        from moderation.comments import counts_query
        from moderation.db import driver_statement

        data = json.loads(environ["wsgi.input"].read())
        addr = environ.get("HTTP_X_FORWARDED_FOR", "")
        if not self.limiter.hit(self.limit, self.prefix, addr, "read"):
            raise RuntimeError("the floor's read limit refused a request")
        uris = data["uris"]
        statement, params = counts_query(self.dialect.name, self.sites[data["site"]],
                                         sorted(set(uris)))
        cursor = self.connection.cursor()
        try:
            cursor.execute(*driver_statement(statement, self.dialect, params))
            found = dict(cursor.fetchall())
        finally:
            cursor.close()
        return {uri: int(found.get(uri, 0)) for uri in uris}


# gunicorn imports the app in each worker after forking it: each opens its own connection.
_counts = _Counts() if "FLOOR_DATABASE_URL" in os.environ else None


def data_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer the counts request with one limit hit and one query, and nothing else."""
    if environ["REQUEST_METHOD"] == "GET" or _counts is None:  # the readiness probe
        return app(environ, start_response)
    body = json.dumps({"counts": _counts(environ)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
