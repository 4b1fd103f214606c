"""Production concerns seen from outside: security headers, cookies, logs, metrics, probes."""

from __future__ import annotations

import gc
import io
import json
import logging
import re
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient
from sqlalchemy import select

from moderation import comments, create_app, observability
from moderation.db import Comment, Site, db
from moderation.observability import JsonFormatter
from tests import fakes
from tests.conftest import add_site, base_config, make_app

ORIGIN = "https://blog.example"


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Capture every log line the app writes, formatted as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def post(client: FlaskClient, site: Site, text: str = "Nice post", **extra: Any) -> Any:
    body = {"site": site.key, "uri": "/posts/hello", "text": text, **extra}
    return client.post("/api/v1/comments", json=body, headers=extra.pop("headers", {}))


def metric(text: str, name: str, **labels: str) -> float:
    """Return the value of one sample in a Prometheus text exposition (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


# -- security headers and cookies -------------------------------------------------------------


def test_html_pages_carry_a_strict_csp_whose_nonce_matches_the_inline_style(
    client: FlaskClient,
) -> None:
    response = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    nonce = re.search(r"'nonce-([^']+)'", directives["style-src"]).group(1)  # type: ignore[union-attr]
    assert f'<style nonce="{nonce}">' in response.text
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "camera=()" in response.headers["Permissions-Policy"]
    assert "Strict-Transport-Security" not in response.headers  # plain http
    other = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert other.headers["Content-Security-Policy"] != csp  # a fresh nonce per response


def test_json_answers_are_nosniff_without_html_only_headers(client: FlaskClient) -> None:
    response = client.get("/api/v1/health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in response.headers
    assert "X-Frame-Options" not in response.headers


def test_hsts_only_over_https(client: FlaskClient) -> None:
    response = client.get("/livez", base_url="https://comments.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def _cookie_app(**config: Any) -> Flask:
    app = create_app(base_config(**config))

    @app.get("/set-session")
    def set_session() -> str:
        session["moderator"] = 1
        return "ok"

    return app


def test_session_cookie_is_secure_httponly_and_lax_outside_testing() -> None:
    app = _cookie_app(TESTING=False, SECRET_KEY="a-real-secret-that-nobody-knows")
    cookie = app.test_client().get("/set-session", base_url="https://c.example")
    header = cookie.headers["Set-Cookie"]
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header
    # In tests and debug the cookie must also travel over plain http.
    assert _cookie_app().config["SESSION_COOKIE_SECURE"] is False
    assert _cookie_app(SESSION_COOKIE_SECURE=True).config["SESSION_COOKIE_SECURE"] is True


def test_session_survives_requests_and_a_forged_cookie_opens_an_empty_one() -> None:
    app = _cookie_app()

    @app.get("/who")
    def who() -> str:
        return str(session.get("moderator"))

    reader = app.test_client()
    assert reader.get("/who").text == "None"
    assert "Set-Cookie" not in reader.get("/livez").headers  # no cookie, none handed out
    moderator = app.test_client()
    moderator.get("/set-session")
    assert moderator.get("/who").text == "1"
    forger = app.test_client()
    forger.set_cookie("session", "eyJtb2RlcmF0b3IiOjF9.forged.signature")
    assert forger.get("/who").text == "None"


def test_gunicorn_workers_hide_their_startup_objects_from_the_collector() -> None:
    # A full collection over the app, model and modules paused a worker for ~80 ms; frozen,
    # they are no longer scanned.
    config = runpy.run_path(str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py"))
    make_app()
    before = gc.get_freeze_count()
    try:
        config["post_worker_init"](None)
        assert gc.get_freeze_count() - before > 10_000
    finally:
        gc.unfreeze()


def test_plain_views_and_hooks_run_as_they_are_and_coroutines_still_go_through_flask() -> None:
    app = make_app()

    def view() -> str:
        return "ok"

    async def coroutine() -> str:
        return "ok"

    class Hooks:
        def method(self) -> None:
            return None

    bound = Hooks().method
    assert app.ensure_sync(view) is view
    assert app.ensure_sync(bound) is bound
    try:
        wrapped = app.ensure_sync(coroutine)
    except RuntimeError as error:  # Flask without its async extra refuses coroutine views
        assert "async" in str(error)
    else:
        assert wrapped is not coroutine


def test_refuses_to_start_with_the_default_secret_outside_debug() -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY of its own"):
        create_app(base_config(TESTING=False, SECRET_KEY="dev"))


def test_settings_at_the_top_of_their_ranges_serve_requests() -> None:
    """The largest values the start-up check lets through are ones requests can use."""
    from moderation import TEN_YEARS

    app = make_app(EDIT_WINDOW_SECONDS=TEN_YEARS, PAGE_SIZE=10_000, MAX_PAGE_SIZE=10_000,
                   PERMANENT_SESSION_LIFETIME=TEN_YEARS, WTF_CSRF_TIME_LIMIT=TEN_YEARS)
    fakes.install(app)
    site = add_site(app, origins=[ORIGIN])
    client = app.test_client()
    created = post(client, site)
    assert created.status_code == 201, created.json
    edited = client.patch(f"/api/v1/comments/{created.json['comment']['id']}",
                          json={"text": "Nice post, edited"},
                          headers={"X-Edit-Token": created.json["edit_token"]})
    assert edited.status_code == 200, edited.json
    for query in ({}, {"per_page": "10000"}):
        listed = client.get("/api/v1/comments",
                            query_string={"site": site.key, "uri": "/posts/hello", **query})
        assert listed.status_code == 200 and listed.json["total"] == 1


# -- request ids and logs ---------------------------------------------------------------------


def test_request_id_is_echoed_when_sane_and_generated_otherwise(client: FlaskClient) -> None:
    sane = client.get("/livez", headers={"X-Request-ID": "edge-42.abc"})
    assert sane.headers["X-Request-ID"] == "edge-42.abc"
    for bad in ("x" * 200, "a b", "<script>", ""):
        response = client.get("/livez", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"]), bad
    assert client.get("/livez").headers["X-Request-ID"] != client.get("/livez").headers[
        "X-Request-ID"]


def test_logs_are_json_with_request_id_and_no_raw_address_or_secrets(
    logs: io.StringIO,
) -> None:
    app = make_app(PROXY_COUNT=1)
    fakes.install(app)
    key = add_site(app, origins=[ORIGIN]).key
    client = app.test_client()
    response = client.post(
        "/api/v1/comments",
        json={"site": key, "uri": "/p", "text": "Hello there", "email": "ann@mail.example"},
        headers={"X-Forwarded-For": "203.0.113.77", "X-Request-ID": "req-123"},
    )
    assert response.status_code == 201
    token = response.json["edit_token"]
    with app.test_request_context(headers={"X-Request-ID": "x"}):
        pass
    entries = lines(logs)
    mine = [e for e in entries if e.get("request_id") == "req-123"]
    assert mine, entries
    access = [e for e in mine if e["logger"] == "moderation.request"]
    assert access[0]["route"] == "/api/v1/comments"
    assert access[0]["status"] == 201
    assert access[0]["client"] == "203.0.113.0"
    raw = logs.getvalue()
    assert "203.0.113.77" not in raw
    assert "ann@mail.example" not in raw
    assert token not in raw
    assert "test-secret" not in raw


# -- metrics ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("steady_window")
def test_metrics_count_routes_decisions_queue_model_and_limit_hits(database_url: str) -> None:
    app = make_app(database_url, RATELIMIT_ENABLED=True, LIMIT_POST="3/minute")
    try:
        fakes.install(app)
        key = add_site(app, origins=[ORIGIN]).key
        client = app.test_client()
        body = {"site": key, "uri": "/p"}
        assert client.post("/api/v1/comments", json={**body, "text": "fine"}).status_code == 201
        held = client.post("/api/v1/comments", json={**body, "text": "borderline take"})
        assert held.status_code == 202
        assert client.post("/api/v1/comments", json={**body, "text": "viagra"}).status_code == 422
        assert client.post("/api/v1/comments", json={**body, "text": "more"}).status_code == 429
        comment_id = held.json["comment"]["id"]
        assert client.get(f"/api/v1/comments/{comment_id}").status_code == 404

        text = client.get("/metrics").text
        assert metric(text, "moderation_comment_decisions_total", outcome="publish") == 1
        assert metric(text, "moderation_comment_decisions_total", outcome="hold") == 1
        assert metric(text, "moderation_comment_decisions_total", outcome="reject") == 1
        assert metric(text, "moderation_rate_limited_total", route="/api/v1/comments") == 1
        assert metric(text, "moderation_http_requests_total", route="/api/v1/comments",
                      method="POST", status="429") == 1
        # The route is the URL rule, so ids do not explode the label set.
        assert metric(text, "moderation_http_requests_total",
                      route="/api/v1/comments/<int:comment_id>", status="404") == 1
        assert f"/api/v1/comments/{comment_id}" not in text
        assert metric(text, "moderation_http_request_duration_seconds_count",
                      route="/api/v1/comments", method="POST") == 4
        assert metric(text, "moderation_queue_pending", site=key) == 1
        assert metric(text, "moderation_model_info", version="test-keywords-1") == 1
        assert metric(text, "moderation_model_loaded") == 1

        with app.app_context():
            pending = db.session.execute(
                select(Comment).where(Comment.id == comment_id)
            ).scalars().all()
            comments.moderate_many(pending, "approve", actor="moderator:ann")
        after = client.get("/metrics").text
        assert metric(after, "moderation_moderation_actions_total", action="approve") == 1
        assert metric(after, "moderation_queue_pending", site=key) == 0
    finally:
        from tests.conftest import clear_tables

        clear_tables(app)


def test_made_up_http_methods_share_one_metrics_label() -> None:
    app = make_app()
    client = app.test_client()
    for n in range(20):
        client.open("/", method=f"M{n}")
    text = client.get("/metrics").text
    assert metric(text, "moderation_http_requests_total", method="OTHER") == 20
    assert 'method="M1"' not in text and 'method="M19"' not in text


def test_server_messages_lose_query_strings_and_raw_addresses() -> None:
    redact = observability.Redact()
    cases = {
        "Error handling request /v1alpha1/comments:analyze?key=mk_5abadb7a_secret":
            "Error handling request /v1alpha1/comments:analyze?[query removed]",
        "Invalid request from ip=203.0.113.77: Invalid HTTP Header: 'Bad'":
            "Invalid request from ip=203.0.113.0: Invalid HTTP Header: 'Bad'",
        "Invalid request from ip=2001:db8:1234:5678::1: bad": (
            "Invalid request from ip=2001:db8:1234::: bad"),
        "Error handling request /a?key='mk_secret' x": (
            "Error handling request /a?[query removed] x"),
        "Error handling request /a'?key=mk_secret": "Error handling request /a'?[query removed]",
        "Listening at: http://127.0.0.1:8000 (42)": "Listening at: http://127.0.0.1:8000 (42)",
    }
    for raw, shown in cases.items():
        record = logging.LogRecord("gunicorn.error", logging.ERROR, "", 0, raw, (), None)
        assert redact.filter(record) and record.getMessage() == shown


def test_metrics_are_not_served_to_the_public_internet() -> None:
    app = make_app(PROXY_COUNT=1)
    client = app.test_client()
    outside = client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.9"})
    assert outside.status_code == 404
    inside = client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
    assert inside.status_code == 200
    assert inside.mimetype == "text/plain"


# -- probes -----------------------------------------------------------------------------------


def test_readiness_follows_the_database_and_liveness_does_not() -> None:
    app = make_app()
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "ready"
    assert ready.json["checks"]["model"]["ok"] is False  # no model: held, degraded, ready

    down = create_app(base_config(
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:9/none",
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": 2}},
    ))
    client = down.test_client()
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert client.get("/livez").status_code == 200


def test_readiness_can_require_the_model() -> None:
    app = make_app(READY_REQUIRES_MODEL=True)
    client = app.test_client()
    assert client.get("/readyz").status_code == 503
    fakes.install(app)
    assert client.get("/readyz").status_code == 200
