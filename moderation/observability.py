"""Structured JSON logs with a request id, Prometheus metrics and health probes."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, has_request_context, jsonify, request
from flask.logging import default_handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, func, select, text

from . import classifier as model
from . import comments, limits
from .db import Comment, Site, Status, db

log = logging.getLogger(__name__)
request_log = logging.getLogger("moderation.request")

bp = Blueprint("observability", __name__)

REQUEST_ID_HEADER = "X-Request-ID"
# A proxy's request id is kept only if it is short and made of safe characters.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# Latency buckets in seconds: reads should land in the first few, posts below 50 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
# Attributes every LogRecord has; anything else passed with extra= is logged as a field.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


# -- logging --------------------------------------------------------------------------------


_QUERY_STRING = re.compile(r"(/[^\s?]*)\?\S*")
# Gunicorn names a client as "ip=<address>" (followed by ": reason" or the end).
_CLIENT_ADDRESS = re.compile(r"(?<=\bip=)[0-9A-Fa-f:.]+?(?=:?\s|:?$)")


class Redact(logging.Filter):
    """Keep secrets and raw addresses out of the HTTP server's own messages.

    Gunicorn logs the request line of a request it failed ("Error handling request
    /v1alpha1/comments:analyze?key=mk_...") and the peer of a malformed one ("Invalid request
    from ip=203.0.113.9"): query strings are cut (API keys may travel there) and addresses
    reduced to their network, as comments store them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _QUERY_STRING.sub(r"\1?[query removed]", message)
        cleaned = _CLIENT_ADDRESS.sub(lambda m: comments.anonymise_addr(m.group(0)) or "?",
                                      cleaned)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


class JsonFormatter(logging.Formatter):
    """Format a log record as one JSON object per line, with the request id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def current_request_id() -> str | None:
    """Return the id of the request being handled, if any."""
    if has_request_context():
        return g.get("request_id")
    return None


def configure_logging(fmt: str, level: str) -> None:
    """Send every logger's records to stderr, as JSON lines or plain text."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_moderation", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._moderation = True  # type: ignore[attr-defined]
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())


# -- metrics --------------------------------------------------------------------------------


@dataclass
class Metrics:
    """The counters and histograms one app updates while it serves requests."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    decisions: Counter
    moderation: Counter
    rate_limited: Counter
    # (route, method, status) -> its request counter and latency histogram children, so a
    # request skips prometheus_client's label validation after the first of its kind.
    children: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (route, method, status)
        pair = self.children.get(key)
        if pair is None:
            pair = (self.requests.labels(route, method, str(status)),
                    self.latency.labels(route, method))
            self.children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)


def _metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(
        registry=registry,
        requests=Counter(
            "moderation_http_requests", "HTTP requests by route (URL rule), method and status.",
            ["route", "method", "status"], registry=registry,
        ),
        latency=Histogram(
            "moderation_http_request_duration_seconds", "Time to answer a request, by route.",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=registry,
        ),
        decisions=Counter(
            "moderation_comment_decisions", "Pipeline decisions on submitted and edited comments.",
            ["outcome"], registry=registry,
        ),
        moderation=Counter(
            "moderation_moderation_actions", "Moderator and API-key actions on comments.",
            ["action"], registry=registry,
        ),
        rate_limited=Counter(
            "moderation_rate_limited", "Requests refused with 429 by the rate limiter, by route.",
            ["route"], registry=registry,
        ),
    )


class StateCollector(Collector):
    """Report values computed at scrape time: queue size, model version, limiter storage."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        """Yield the current queue size, model state and limiter storage state."""
        pending = GaugeMetricFamily(
            "moderation_queue_pending", "Comments held for a moderator, by site key.",
            labels=["site"],
        )
        try:
            rows = db.session.execute(
                select(Site.key, func.count(Comment.id))
                .outerjoin(Comment, and_(Comment.site_id == Site.id,
                                         Comment.status == Status.PENDING))
                .group_by(Site.key)
            ).all()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database did
            db.session.rollback()
            rows = []
        for key, count in rows:
            pending.add_metric([str(key)], count)
        yield pending
        state = model.status(self.app)
        info = InfoMetricFamily("moderation_model", "The loaded classifier.")
        version = state.classifier.version if state.classifier else "none"
        info.add_metric([], {"version": str(version)})
        yield info
        yield GaugeMetricFamily(
            "moderation_model_loaded", "1 when a classifier is loaded and scoring.",
            value=1 if state.ok else 0,
        )
        yield GaugeMetricFamily(
            "moderation_limiter_storage_ok", "1 when the shared rate-limit storage answers.",
            value=1 if limits.storage_ok() else 0,
        )


def metrics_of(app: Flask) -> Metrics:
    """Return the metrics of an app."""
    return app.extensions["metrics"]  # type: ignore[no-any-return]


def _count(counter: str, label: str) -> None:
    """Add one to a labelled counter of the current app; a metrics failure is only logged."""
    if "metrics" not in current_app.extensions:
        return
    try:
        metrics = metrics_of(current_app._get_current_object())  # type: ignore[attr-defined]
        getattr(metrics, counter).labels(label).inc()
    except Exception:  # a comment is stored already: never fail its request over a metric
        log.exception("could not update metric %s", counter)


def _on_submitted(sender: Any, decision: Any = None, **_: Any) -> None:
    if decision is not None:
        _count("decisions", str(getattr(decision.action, "value", decision.action)))


def _on_moderated(sender: Any, event: Any = None, **_: Any) -> None:
    if event is not None:
        _count("moderation", str(event.action))


# -- requests -------------------------------------------------------------------------------


def _start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()
    # The WSGI server's access log reads these, so it never needs the raw address.
    request.environ["moderation.request_id"] = g.request_id
    request.environ["moderation.client"] = comments.anonymise_addr(limits.client_addr())


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "(unmatched)"


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    started = g.get("request_started")
    if started is None:
        return response
    elapsed = time.perf_counter() - started
    route = _route()
    # Any token is a method to the HTTP server: unknown ones share one label value, so no
    # client can add series to /metrics at will.
    method = request.method if request.method in HTTP_METHODS else "OTHER"
    metrics = metrics_of(current_app._get_current_object())  # type: ignore[attr-defined]
    metrics.observe(route, method, response.status_code, elapsed)
    if response.status_code == 429:
        metrics.rate_limited.labels(route).inc()
    if current_app.config["LOG_REQUESTS"]:
        request_log.info(
            "%s %s %s", method, route, response.status_code,
            extra={
                "method": method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
                "client": request.environ.get("moderation.client", ""),
            },
        )
    return response


# -- endpoints ------------------------------------------------------------------------------


def _metrics_allowed() -> bool:
    import ipaddress

    try:
        addr = ipaddress.ip_address(limits.client_addr())
    except ValueError:
        return False
    networks = current_app.config["METRICS_ALLOW_NETWORKS"]
    return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)


@bp.get("/metrics")
def metrics() -> Response:
    """Serve Prometheus metrics to scrapers on the allowed networks."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.config["METRICS_ENABLED"] or not _metrics_allowed():
        return Response("Not Found\n", status=404, mimetype="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(StateCollector(app))
    else:
        registry = metrics_of(app).registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/livez")
def livez() -> Response:
    """Answer 200 while the process can serve requests at all."""
    return jsonify(status="alive")


def readiness() -> tuple[dict[str, Any], int]:
    """Return whether this worker should get traffic: database reachable, model settled."""
    try:
        db.session.execute(text("SELECT 1"))
        database: dict[str, Any] = {"ok": True}
    except Exception as error:  # noqa: BLE001 - report any failure as a state
        db.session.rollback()
        database = {"ok": False, "error": type(error).__name__}
    state = model.status(current_app)
    model_state = {"ok": state.ok, "error": state.error}
    # Without a model every comment is held: degraded, yet still able to take comments.
    model_ready = state.ok or (
        not current_app.config["READY_REQUIRES_MODEL"] and state.error != "not initialised"
    )
    ready = database["ok"] and model_ready
    body = {"status": "ready" if ready else "not ready",
            "checks": {"database": database, "model": model_state}}
    return body, 200 if ready else 503


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Answer 200 when the database answers and the model is settled, else 503."""
    body, status = readiness()
    return jsonify(body), status


def init_app(app: Flask) -> None:
    """Set up JSON logging, request ids and metrics, and register the probe endpoints."""
    if app.config["LOG_FORMAT"] in ("json", "text"):
        configure_logging(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
        app.logger.removeHandler(default_handler)
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # CLI commands run outside gunicorn, which creates it: samples need the folder.
        os.makedirs(directory, exist_ok=True)
    app.extensions["metrics"] = _metrics(CollectorRegistry())
    metrics_of(app).registry.register(StateCollector(app))
    comments.comment_submitted.connect(_on_submitted)
    comments.comment_moderated.connect(_on_moderated)
    # First, so that requests the limiter refuses with 429 still get an id and are counted.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)
    app.after_request(_finish_request)
    app.register_blueprint(bp)
