"""A WSGI app that reads the request and answers a fixed JSON body: gunicorn's own ceiling.

bench/web.py runs it under the same gunicorn workers and wrk load as the real servers, so the
table can say how many requests per second no application can exceed on that machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"counts":{}}\n'


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Drain the request body and answer 200 with a small JSON object."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]
