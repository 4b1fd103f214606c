"""Webhooks: events queued on comment changes, signed delivery, retries with backoff, the log."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from moderation import webhooks
from moderation.db import Site, WebhookDelivery, db, utcnow
from tests import fakes
from tests.conftest import add_site, issue_key, make_app

READER = {"addr": "198.51.100.4", "user_agent": "test"}


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records requests and answers planned statuses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.requests.append({"headers": dict(self.headers), "body": body,
                                          "path": self.path})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def hooked(database_url: str) -> Iterator[Flask]:
    from tests.conftest import clear_tables

    app = make_app(database_url, WEBHOOK_ALLOW_PRIVATE_TARGETS=True, WEBHOOK_BACKOFF_SECONDS=10,
                   WEBHOOK_MAX_ATTEMPTS=3, WEBHOOK_TIMEOUT_SECONDS=2)
    fakes.install(app)
    yield app
    webhooks.stop_worker(app)
    clear_tables(app)


def setup_site(app: Flask) -> tuple[str, FlaskClient]:
    return issue_key(app, add_site(app)), app.test_client()


def add_hook(client: FlaskClient, key: str, url: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/v1/manage/webhooks", json={"url": url, **extra},
                           headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.json
    return response.json["webhook"]


def post(client: FlaskClient, key: str, text: str) -> Any:
    return client.post("/api/v1/manage/comments",
                       json={"uri": "/p", "text": text, "reader": READER},
                       headers={"Authorization": f"Bearer {key}"})


def deliver(app: Flask) -> int:
    with app.app_context():
        return webhooks.deliver_due()


def make_due(app: Flask) -> None:
    with app.app_context():
        db.session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
        db.session.commit()


def test_events_are_signed_and_delivered_outside_the_request(
    hooked: Flask, receiver: Receiver
) -> None:
    key, client = setup_site(hooked)
    hook = add_hook(client, key, receiver.url)
    assert hook["secret"].startswith("whsec_")
    assert set(hook["events"]) == set(webhooks.EVENTS)

    published = post(client, key, "lovely post").json["comment"]["id"]
    held = post(client, key, "a borderline reply").json["comment"]["id"]
    client.post(f"/api/v1/manage/comments/{held}/moderation", json={"action": "approve"},
                headers={"Authorization": f"Bearer {key}"})
    # Nothing was sent while the requests ran: the worker is off in tests.
    assert receiver.requests == []
    assert deliver(hooked) == 3

    events = [r["headers"]["X-Moderation-Event"] for r in receiver.requests]
    assert events == ["comment.created", "comment.held", "comment.moderated"]
    for request in receiver.requests:
        expected = hmac.new(hook["secret"].encode(), request["body"], hashlib.sha256).hexdigest()
        assert request["headers"]["X-Moderation-Signature"] == f"sha256={expected}"
        assert abs(int(request["headers"]["X-Moderation-Timestamp"]) - time.time()) < 60
        assert request["headers"]["Content-Type"] == "application/json"
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    assert bodies[0]["comment"]["id"] == published and bodies[0]["comment"]["status"] == "published"
    assert bodies[1]["decision"]["action"] == "hold"
    assert bodies[2]["moderation"]["to"] == "published"
    assert bodies[2]["moderation"]["actor"].startswith("api:")
    assert "email" not in bodies[0]["comment"] and "client_addr" not in bodies[0]["comment"]

    log = client.get(f"/api/v1/manage/webhooks/{hook['id']}/deliveries",
                     headers={"Authorization": f"Bearer {key}"}).json["deliveries"]
    assert [d["state"] for d in log] == ["delivered"] * 3
    assert all(d["attempts"] == 1 and d["last_status"] == 200 for d in log)
    assert deliver(hooked) == 0  # delivered events are not sent again


def test_failures_retry_with_exponential_backoff_then_fail(
    hooked: Flask, receiver: Receiver
) -> None:
    key, client = setup_site(hooked)
    hook = add_hook(client, key, receiver.url, events=["comment.created"])
    receiver.statuses = [500, 503, 502]
    post(client, key, "first")
    post(client, key, "a borderline one")  # held: not subscribed, so not queued

    before = utcnow()
    assert deliver(hooked) == 1
    with hooked.app_context():
        row = db.session.execute(select(WebhookDelivery)).scalar_one()
        assert (row.state, row.attempts, row.last_status) == ("pending", 1, 500)
        wait = row.next_attempt_at - before
        assert timedelta(seconds=9) < wait < timedelta(seconds=12)
    assert deliver(hooked) == 0  # not due yet

    make_due(hooked)
    before = utcnow()
    assert deliver(hooked) == 1
    with hooked.app_context():
        row = db.session.execute(select(WebhookDelivery)).scalar_one()
        assert (row.attempts, row.last_status, row.last_error) == (2, 503, row.last_error)
        assert "503" in row.last_error
        wait = row.next_attempt_at - before
        assert timedelta(seconds=19) < wait < timedelta(seconds=22)

    make_due(hooked)
    assert deliver(hooked) == 1
    with hooked.app_context():
        row = db.session.execute(select(WebhookDelivery)).scalar_one()
        assert (row.state, row.attempts, row.last_status) == ("failed", 3, 502)
    assert len(receiver.requests) == 3
    log = client.get(f"/api/v1/manage/webhooks/{hook['id']}/deliveries",
                     query_string={"state": "failed"},
                     headers={"Authorization": f"Bearer {key}"}).json["deliveries"]
    assert len(log) == 1 and log[0]["attempts"] == 3 and "502" in log[0]["last_error"]


def test_unreachable_receiver_is_recorded_and_retried(hooked: Flask) -> None:
    key, client = setup_site(hooked)
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # nothing listens on that port now
    add_hook(client, key, url)
    post(client, key, "hello there")
    assert deliver(hooked) == 1
    with hooked.app_context():
        row = db.session.execute(select(WebhookDelivery)).scalar_one()
        assert row.state == "pending" and row.last_status is None
        assert "refused" in row.last_error.lower() or "error" in row.last_error.lower()


def test_background_worker_delivers_without_blocking_the_request(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    from tests.conftest import clear_tables

    if database_url == "sqlite://":
        # A file, not the one shared in-memory connection: the worker thread uses its own.
        database_url = f"sqlite:///{tmp_path / 'worker.sqlite3'}"
    receiver.delay = 3.0  # a slow receiver must not slow down the request that caused the event
    app = make_app(database_url, WEBHOOKS_WORKER=True, WEBHOOK_ALLOW_PRIVATE_TARGETS=True,
                   WEBHOOK_TIMEOUT_SECONDS=10)
    fakes.install(app)
    try:
        key, client = setup_site(app)
        add_hook(client, key, receiver.url)
        started = time.monotonic()
        assert post(client, key, "hello from the worker").status_code == 201
        assert time.monotonic() - started < 2.0
        deadline = time.monotonic() + 15
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r["headers"]["X-Moderation-Event"] for r in receiver.requests] == [
            "comment.created"]
    finally:
        webhooks.stop_worker(app, timeout=10)
        clear_tables(app)


def test_cli_delivers_once_and_shows_the_log(hooked: Flask, receiver: Receiver) -> None:
    key, client = setup_site(hooked)
    add_hook(client, key, receiver.url)
    post(client, key, "hello there")
    runner = hooked.test_cli_runner()
    result = runner.invoke(args=["webhooks", "deliver", "--once"])
    assert result.exit_code == 0 and "Attempted 1 deliveries" in result.output
    assert len(receiver.requests) == 1
    log = runner.invoke(args=["webhooks", "log"])
    assert "comment.created" in log.output and "delivered" in log.output


def test_webhook_management_validates_and_deletes(hooked: Flask, receiver: Receiver) -> None:
    key, client = setup_site(hooked)
    headers = {"Authorization": f"Bearer {key}"}
    for body, field in (({"url": "ftp://x.example/"}, "url"), ({}, "url"),
                        ({"url": receiver.url, "events": ["comment.lost"]}, "events"),
                        ({"url": receiver.url, "secret": "mine"}, "secret")):
        response = client.post("/api/v1/manage/webhooks", json=body, headers=headers)
        assert response.status_code == 400 and response.json["error"]["field"] == field
    hook = add_hook(client, key, receiver.url)
    listed = client.get("/api/v1/manage/webhooks", headers=headers).json["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    post(client, key, "queued then dropped")
    assert client.delete(f"/api/v1/manage/webhooks/{hook['id']}",
                         headers=headers).status_code == 204
    assert client.get("/api/v1/manage/webhooks", headers=headers).json["webhooks"] == []
    assert deliver(hooked) == 0 and receiver.requests == []


def test_private_targets_are_refused_unless_allowed(app: Flask) -> None:
    key, client = setup_site(app)
    response = client.post("/api/v1/manage/webhooks", json={"url": "http://127.0.0.1:6379/"},
                           headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 400
    assert "public address" in response.json["error"]["message"]


def test_concurrent_workers_deliver_each_event_exactly_once(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    from tests.conftest import clear_tables

    if database_url == "sqlite://":
        database_url = f"sqlite:///{tmp_path / 'workers.sqlite3'}"
    app = make_app(database_url, WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    fakes.install(app)
    try:
        key, client = setup_site(app)
        add_hook(client, key, receiver.url)
        for number in range(30):
            assert post(client, key, f"comment number {number}").status_code == 201

        def work() -> None:
            with app.app_context():
                while webhooks.deliver_due(limit=4):
                    pass
                db.session.remove()

        workers = [threading.Thread(target=work) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        ids = [r["headers"]["X-Moderation-Delivery"] for r in receiver.requests]
        assert len(ids) == 30 and len(set(ids)) == 30
        with app.app_context():
            states = db.session.execute(select(WebhookDelivery.state)).scalars().all()
        assert states == ["delivered"] * 30
    finally:
        clear_tables(app)


def test_admins_see_every_delivery_in_the_dashboard_and_retry_failed_ones(
    database_url: str, receiver: Receiver
) -> None:
    import re

    from moderation import auth
    from moderation.db import Moderator
    from tests.conftest import clear_tables

    app = make_app(database_url, WEBHOOK_ALLOW_PRIVATE_TARGETS=True, WEBHOOK_MAX_ATTEMPTS=1,
                   WTF_CSRF_ENABLED=True)
    fakes.install(app)
    try:
        key, api = setup_site(app)
        add_hook(api, key, receiver.url)
        receiver.statuses = [500]
        post(api, key, "first comment")
        post(api, key, "a borderline one")
        assert deliver(app) == 2
        with app.app_context():
            site = db.session.execute(select(Site)).scalar_one()
            for email, admin in (("admin@example.org", True), ("mod@example.org", False)):
                db.session.add(Moderator(email=email, password_hash=auth.hash_password("pw-pw-pw"),
                                         is_admin=admin, sites=[site]))
            db.session.commit()

        def signed_in(email: str) -> FlaskClient:
            client = app.test_client()
            page = client.get("/dashboard/login").get_data(as_text=True)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            client.post("/dashboard/login", data={"email": email, "password": "pw-pw-pw",
                                                  "csrf_token": token})
            return client

        assert app.test_client().get("/dashboard/webhooks/").status_code == 302
        assert signed_in("mod@example.org").get("/dashboard/webhooks/").status_code == 403
        admin = signed_in("admin@example.org")
        page = admin.get("/dashboard/webhooks/")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert receiver.url in html and "HTTP 500" in html
        assert "comment.created" in html and "comment.held" in html
        failed = admin.get("/dashboard/webhooks/", query_string={"state": "failed"})
        rows = re.findall(r'action="/dashboard/webhooks/deliveries/(\d+)/retry"',
                          failed.get_data(as_text=True))
        assert len(rows) == 1
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        assert admin.post(f"/dashboard/webhooks/deliveries/{rows[0]}/retry").status_code == 400
        retried = admin.post(f"/dashboard/webhooks/deliveries/{rows[0]}/retry",
                             data={"csrf_token": token})
        assert retried.status_code == 302
        assert deliver(app) == 1
        with app.app_context():
            states = db.session.execute(
                select(WebhookDelivery.state).order_by(WebhookDelivery.id)).scalars().all()
        assert states == ["delivered", "delivered"]
        assert len(receiver.requests) == 3
    finally:
        clear_tables(app)
