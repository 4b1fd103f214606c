"""Gunicorn settings for production: gunicorn -c gunicorn.conf.py wsgi:app.

Every setting can be changed from the environment, so one file serves one laptop and many hosts.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gunicorn import glogging

# Address to listen on; behind a proxy on the same host keep it on loopback.
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]
# Worker processes; each loads its own model (~100 MB) and database pool.
workers = int(os.environ.get("GUNICORN_WORKERS") or os.environ.get("WEB_CONCURRENCY")
              or (os.cpu_count() or 1) + 1)
# Threads per worker: 1 gives sync workers; more gives gthread workers with keep-alive.
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread" if threads > 1 else "sync")
# Seconds a request may run before its worker is killed and replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Seconds in-flight requests get to finish after SIGTERM before workers are killed.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Seconds to keep idle client connections open (gthread workers only).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Restart each worker after this many requests (with jitter), bounding slow memory growth.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "1000"))
# Each worker imports the app itself: its own model, database pool and Redis connections,
# none of them shared across fork.
preload_app = False
# Error log on stderr; the app logs one JSON line per request, so gunicorn's own access log is
# off unless GUNICORN_ACCESS_LOG names a file or "-" (it is JSON too, without client addresses).
errorlog = "-"
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Forwarded headers are handled by the app's ProxyFix (PROXY_COUNT), not by gunicorn.
forwarded_allow_ips = "127.0.0.1"
proc_name = "moderation"
# Gunicorn's control socket (a per-user path shared by every server of that user) is off unless
# GUNICORN_CONTROL_SOCKET names a path, so several servers can run side by side.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
if not control_socket:
    del control_socket

# Prometheus multiprocess mode: workers write their samples to files in this directory and
# /metrics merges them. It must be set before any worker imports prometheus_client.
METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


class JsonLogger(glogging.Logger):
    """Gunicorn logger writing JSON lines: its own messages and an access log without addresses."""

    def setup(self, cfg: Any) -> None:
        """Format gunicorn's own messages like the app's, one JSON object per line, without
        query strings or raw client addresses."""
        super().setup(cfg)
        from moderation.observability import JsonFormatter, Redact

        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
            handler.addFilter(Redact())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """Write one JSON line per request, keyed by the app's request id."""
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.syslog):
            return
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "logger": "gunicorn.access",
            "method": environ.get("REQUEST_METHOD", ""),
            "path": environ.get("PATH_INFO", ""),
            "status": int(str(resp.status).split()[0]) if resp.status else 0,
            "bytes": getattr(resp, "sent", 0),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
            "request_id": environ.get("moderation.request_id", ""),
            # The app's anonymised network (a /24 or /48), never the raw address.
            "client": environ.get("moderation.client", ""),
        }
        try:
            self.access_log.info(json.dumps(entry))
        except Exception:  # noqa: BLE001 - logging must never break a response
            self.error("failed to write the access log entry")


logger_class = JsonLogger


def on_starting(server: Any) -> None:
    """Start with an empty metrics directory, so counts from an earlier run do not linger."""
    if METRICS_DIR:
        path = Path(METRICS_DIR)
        if path.is_dir():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)


def post_worker_init(worker: Any) -> None:
    """Hide everything the worker loaded at start-up from the garbage collector.

    The app, the model and the imported modules are about 130,000 objects that live as long
    as the worker. A full collection scans them all and paused a worker for about 80 ms every
    few thousand requests, which showed up as p99 latency; frozen, it scans only what requests
    left behind (about 2 ms).
    """
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the merged metrics."""
    if METRICS_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def worker_exit(server: Any, worker: Any) -> None:
    """Close the worker's database connections when it stops."""
    app = getattr(worker, "wsgi", None)
    engine = None
    try:
        from moderation.db import db

        if app is not None:
            with app.app_context():
                engine = db.engine
    except Exception:  # noqa: BLE001 - the worker is leaving either way
        return
    if engine is not None:
        engine.dispose()
