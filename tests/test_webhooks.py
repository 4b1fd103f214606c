"""Webhooks: events queued on comment changes, signed delivery, retries with backoff, the log."""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
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
        self.on_request: Callable[[], None] | None = None  # runs before the answer is sent
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                if receiver.on_request is not None:
                    receiver.on_request()
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
        timestamp = request["headers"]["X-Moderation-Timestamp"]
        signed = timestamp.encode() + b"." + request["body"]
        expected = hmac.new(hook["secret"].encode(), signed, hashlib.sha256).hexdigest()
        assert request["headers"]["X-Moderation-Signature"] == f"sha256={expected}"
        assert abs(int(timestamp) - time.time()) < 60
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
                        ({"url": "https://8.8.8.8/a b"}, "url"),
                        ({"url": "https://8.8.8.8/a\tb"}, "url"),
                        ({"url": "https://8.8.8.8/\x00"}, "url"),
                        ({"url": "https://8.8.8.8:99999/"}, "url"),
                        ({"url": receiver.url, "events": ["comment.lost"]}, "events"),
                        ({"url": receiver.url, "secret": "mine"}, "secret")):
        response = client.post("/api/v1/manage/webhooks", json=body, headers=headers)
        assert response.status_code == 400 and response.json["error"]["field"] == field
    response = client.post("/api/v1/manage/webhooks", json={"url": "https://8.8.8.8/a b"},
                           headers=headers)
    assert "spaces" in response.json["error"]["message"]
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
        huge = admin.post("/dashboard/webhooks/deliveries/99999999999999999999/retry",
                          data={"csrf_token": token})
        assert huge.status_code == 404
        assert deliver(app) == 1
        with app.app_context():
            states = db.session.execute(
                select(WebhookDelivery.state).order_by(WebhookDelivery.id)).scalars().all()
        assert states == ["delivered", "delivered"]
        assert len(receiver.requests) == 3
    finally:
        clear_tables(app)


# -- receivers that misbehave, DNS that changes its answer, TLS ------------------------------


class RawReceiver:
    """A TCP listener on 127.0.0.1 that reads each request and answers it with answer(conn)."""

    def __init__(self, answer: Callable[[socket.socket, threading.Event], None]) -> None:
        self.requests: list[bytes] = []
        self.answer = answer
        self.stopping = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    if self.read_request(conn):
                        self.answer(conn, self.stopping)
                except OSError:
                    pass  # the client gave up

    def read_request(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head = data.partition(b"\r\n\r\n")[0]
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        while length and len(data) < len(head) + 4 + int(length.group(1)):
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        self.requests.append(data)
        return True

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def raw_receivers() -> Iterator[Callable[..., RawReceiver]]:
    started: list[RawReceiver] = []

    def start(answer: Callable[[socket.socket, threading.Event], None]) -> RawReceiver:
        started.append(RawReceiver(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


def answer_garbage(conn: socket.socket, stopping: threading.Event) -> None:
    conn.sendall(b"garbage\r\n\r\n")


def answer_slowly(conn: socket.socket, stopping: threading.Event) -> None:
    """Send a 200 answer's head one byte every 0.2 s (about 8 s in all)."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
        if stopping.is_set():
            return
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def deliveries(app: Flask) -> list[WebhookDelivery]:
    with app.app_context():
        rows = db.session.execute(select(WebhookDelivery).order_by(WebhookDelivery.id))
        found = list(rows.scalars())
        for row in found:
            db.session.expunge(row)
        return found


def add_stored_hook(app: Flask, site_id: int, url: str) -> None:
    """Store a webhook directly, as an older version that accepted any such URL did."""
    from moderation.db import Webhook

    with app.app_context():
        db.session.add(Webhook(site_id=site_id, url=url, secret="whsec_old", events=[],
                               active=True))
        db.session.commit()


def test_a_broken_receiver_fails_its_own_deliveries_and_no_one_elses(
    hooked: Flask, receiver: Receiver, raw_receivers: Callable[..., RawReceiver]
) -> None:
    garbage = raw_receivers(answer_garbage)
    bad = add_site(hooked, name="Broken")
    key = issue_key(hooked, bad)
    client = hooked.test_client()
    add_stored_hook(hooked, bad.id, "http://127.0.0.1:1/a b")  # accepted before the fix
    add_hook(client, key, garbage.url)
    good_key, _ = setup_site(hooked)
    add_hook(client, good_key, receiver.url)
    post(client, key, "to the broken site")
    post(client, good_key, "to the good site")

    runner = hooked.test_cli_runner()
    result = runner.invoke(args=["webhooks", "deliver", "--once"])
    assert result.exit_code == 0, result.output
    assert "Attempted 3 deliveries" in result.output
    url_row, garbage_row, good_row = deliveries(hooked)
    assert (good_row.state, good_row.last_status) == ("delivered", 200)
    assert len(receiver.requests) == 1 and len(garbage.requests) == 1
    for row, reason in ((url_row, "InvalidURL"), (garbage_row, "BadStatusLine")):
        assert (row.state, row.attempts, row.last_status) == ("pending", 1, None)
        assert reason in row.last_error and len(row.last_error) <= 300
        assert row.next_attempt_at - utcnow() > timedelta(seconds=8)  # the usual backoff

    for _ in range(2):
        make_due(hooked)
        assert deliver(hooked) == 2
    assert [(row.state, row.attempts) for row in deliveries(hooked)] == [
        ("failed", 3), ("failed", 3), ("delivered", 1)]
    assert len(garbage.requests) == 3 and len(receiver.requests) == 1


def test_dns_rebinding_cannot_redirect_a_delivery_to_a_private_address(
    database_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import clear_tables

    public = "8.8.8.8"
    answers = [public]  # what rebind.test resolves to; the last answer repeats
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    connected: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        ip = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, int(port or 0)))]

    def connect(sock: socket.socket, address: Any) -> None:
        if address[0] == public:  # never leave the machine
            connected.append(address[0])
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused by the test")
        real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    app = make_app(database_url, WEBHOOK_TIMEOUT_SECONDS=2, WEBHOOK_MAX_ATTEMPTS=3)
    fakes.install(app)
    try:
        key, client = setup_site(app)
        port = receiver.server.server_address[1]
        add_hook(client, key, f"http://rebind.test:{port}/hook")  # public when added
        post(client, key, "hello")
        answers[:] = [public, "127.0.0.1"]  # public for the check, loopback right after
        assert deliver(app) == 1
        assert receiver.requests == []
        assert connected == [public]  # the request went to the address that was checked
        (row,) = deliveries(app)
        assert (row.state, row.attempts, row.last_status) == ("pending", 1, None)
        assert "refused" in row.last_error

        answers[:] = ["127.0.0.1"]  # now private from the start: refused, nothing sent
        make_due(app)
        assert deliver(app) == 1
        (row,) = deliveries(app)
        assert row.attempts == 2 and "public address" in row.last_error
        assert receiver.requests == []
    finally:
        clear_tables(app)


def test_a_slow_receiver_cannot_hold_an_attempt_past_the_timeout(
    hooked: Flask, raw_receivers: Callable[..., RawReceiver]
) -> None:
    slow = raw_receivers(answer_slowly)
    key, client = setup_site(hooked)
    add_hook(client, key, slow.url)  # WEBHOOK_TIMEOUT_SECONDS is 2
    post(client, key, "hello")
    started = time.monotonic()
    assert deliver(hooked) == 1
    assert time.monotonic() - started < 4
    (row,) = deliveries(hooked)
    assert (row.state, row.attempts, row.last_status) == ("pending", 1, None)
    assert "timed out" in row.last_error


def test_a_worker_starts_no_attempt_that_could_outlast_its_claim(
    hooked: Flask, raw_receivers: Callable[..., RawReceiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 5 s lease with a 1 s margin leaves room for one 2 s attempt, not for a second one.
    monkeypatch.setattr(webhooks, "CLAIM_SECONDS", 5)
    monkeypatch.setattr(webhooks, "CLAIM_MARGIN_SECONDS", 1, raising=False)
    slow = raw_receivers(answer_slowly)
    key, client = setup_site(hooked)
    add_hook(client, key, slow.url)
    post(client, key, "first")
    post(client, key, "second")
    assert deliver(hooked) == 1
    assert len(slow.requests) == 1
    first, second = deliveries(hooked)
    assert (first.attempts, second.attempts) == (1, 0)
    assert second.state == "pending" and second.next_attempt_at <= utcnow()  # due again now


def test_an_outcome_is_not_recorded_once_another_worker_took_the_delivery_over(
    hooked: Flask, receiver: Receiver
) -> None:
    key, client = setup_site(hooked)
    add_hook(client, key, receiver.url)
    post(client, key, "hello")
    their_lease = (utcnow() + timedelta(seconds=300)).replace(microsecond=0)

    def lease_taken_over() -> None:  # as if this attempt outlived its lease
        with hooked.app_context():
            db.session.execute(update(WebhookDelivery).values(next_attempt_at=their_lease))
            db.session.commit()
            db.session.remove()

    receiver.on_request = lease_taken_over
    assert deliver(hooked) == 1
    assert len(receiver.requests) == 1
    (row,) = deliveries(hooked)
    assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 0, their_lease)


def readme_verify() -> Callable[..., bool]:
    """Return the verify() function from the README's webhook section."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S)
                if "def verify(" in block)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


def test_the_signature_covers_the_timestamp_as_the_readme_verifies_it(
    hooked: Flask, receiver: Receiver
) -> None:
    verify = readme_verify()
    key, client = setup_site(hooked)
    secret = add_hook(client, key, receiver.url)["secret"]
    post(client, key, "hello")
    receiver.statuses = [500]
    assert deliver(hooked) == 1
    make_due(hooked)
    time.sleep(1.05)  # the retry's timestamp is a later second
    assert deliver(hooked) == 1
    first, retry = receiver.requests
    assert json.loads(first["body"])["id"] == json.loads(retry["body"])["id"]  # de-duplicate
    for request in (first, retry):
        headers, body = request["headers"], request["body"]
        timestamp = headers["X-Moderation-Timestamp"]
        assert verify(secret, body, headers["X-Moderation-Signature"], timestamp)
        # A captured request replayed with a fresh timestamp does not verify.
        assert not verify(secret, body, headers["X-Moderation-Signature"],
                          str(int(timestamp) + 1))
        assert not verify("whsec_other", body, headers["X-Moderation-Signature"], timestamp)
    assert first["headers"]["X-Moderation-Signature"] != retry["headers"][
        "X-Moderation-Signature"]
    # A request signed long ago is too old, even with its own signature.
    old = str(int(time.time()) - 3600)
    signed = old.encode() + b"." + first["body"]
    signature = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert not verify(secret, first["body"], signature, old)


def test_log_limit_must_be_positive(hooked: Flask) -> None:
    result = hooked.test_cli_runner().invoke(args=["webhooks", "log", "--limit", "-1"])
    assert result.exit_code == 2 and "Invalid value for '--limit'" in result.output


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """Make a test CA and a certificate it signs for hook.test; return (ca, cert, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "hook.pem", directory / "hook.key", directory / "hook.csr"
    ext = directory / "ext.cnf"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:hook.test\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=hook.test"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return ca, cert, key


def test_https_goes_to_the_checked_address_with_the_host_name_for_tls(
    hooked: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key_file = make_certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the receivers' CA is trusted
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("hook.test", "other.test"):
            host = "127.0.0.1"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    receiver = Receiver()
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key_file)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    try:
        port = receiver.server.server_address[1]
        key, client = setup_site(hooked)
        add_hook(client, key, f"https://hook.test:{port}/hook?x=1")
        add_hook(client, key, f"https://other.test:{port}/hook")  # not the certificate's name
        post(client, key, "hello")
        assert deliver(hooked) == 2
        good, wrong = deliveries(hooked)
        assert (good.state, good.last_status) == ("delivered", 200)
        assert (wrong.state, wrong.last_status) == ("pending", None)
        assert "certificate" in wrong.last_error.lower()
        (request,) = receiver.requests
        assert request["headers"]["Host"] == f"hook.test:{port}"
        assert request["path"] == "/hook?x=1"
        assert server_names[0] == "hook.test"
    finally:
        receiver.close()


# -- addresses that drop connections, idle transactions, crafted headers, odd URLs -----------


def test_an_address_that_drops_connections_leaves_time_for_the_next_one(
    hooked: Flask, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = "192.0.2.1"  # answers nothing, as an AAAA record does where IPv6 is broken
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    tried: list[tuple[str, float]] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "dual.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, int(port)))
                for ip in (silent, "127.0.0.1")]

    def connect(sock: socket.socket, address: Any) -> None:
        tried.append((address[0], sock.gettimeout() or 0.0))
        if address[0] == silent:  # the SYN is dropped: wait out the timeout, never leave
            time.sleep(sock.gettimeout() or 0.0)
            raise TimeoutError("timed out")
        real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    key, client = setup_site(hooked)
    add_hook(client, key, f"http://dual.test:{receiver.server.server_address[1]}/hook")
    post(client, key, "hello")
    started = time.monotonic()
    assert deliver(hooked) == 1  # WEBHOOK_TIMEOUT_SECONDS is 2 for both addresses together
    assert time.monotonic() - started < 3
    (row,) = deliveries(hooked)
    assert (row.state, row.attempts, row.last_status) == ("delivered", 1, 200)
    assert len(receiver.requests) == 1
    assert [ip for ip, _ in tried] == [silent, "127.0.0.1"]
    assert tried[0][1] <= 1.05  # its share: half of the attempt's time


def test_no_transaction_is_left_idle_during_an_attempt(
    pg_schema: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import clear_tables

    # PostgreSQL ends a session left idle in a transaction for 1 s; the receiver takes 1.5 s.
    url = f"{pg_schema}%20-cidle_in_transaction_session_timeout%3D1000"
    app = make_app(url, WEBHOOK_ALLOW_PRIVATE_TARGETS=True, WEBHOOK_TIMEOUT_SECONDS=3)
    fakes.install(app)
    receiver.delay = 1.5
    in_transaction: list[bool] = []
    real_post = webhooks.post

    def watched_post(*args: Any, **kwargs: Any) -> tuple[int | None, str]:
        in_transaction.append(db.session().in_transaction())
        return real_post(*args, **kwargs)

    monkeypatch.setattr(webhooks, "post", watched_post)
    try:
        key, client = setup_site(app)
        add_hook(client, key, receiver.url)
        post(client, key, "hello")
        assert deliver(app) == 1
        assert in_transaction == [False]
        assert len(receiver.requests) == 1
        (row,) = deliveries(app)
        assert (row.state, row.attempts, row.last_status) == ("delivered", 1, 200)
        assert deliver(app) == 0  # recorded: not sent again
    finally:
        clear_tables(app)


def test_the_readme_verify_rejects_crafted_headers_without_raising() -> None:
    verify = readme_verify()
    secret, body = "whsec_x", b'{"id":1}'
    timestamp = str(int(time.time()))
    signed = timestamp.encode() + b"." + body
    signature = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert verify(secret, body, signature, timestamp)
    # What a WSGI server hands over for header bytes outside ASCII (decoded as Latin-1), and
    # other strings that str.isdigit() accepts but int() does not, or cannot take in full.
    for bad_timestamp in ("\xb2", "\u0661\u0662", "\u2460", "9" * 5000, "", " 1", "-1"):
        assert verify(secret, body, signature, bad_timestamp) is False
    for bad_signature in ("sha256=\xe9", "sha256=\udcb2", signature + "\xe9", "", "sha256="):
        assert verify(secret, body, bad_signature, timestamp) is False


def test_a_huge_attempt_count_backs_off_at_most_a_day(database_url: str) -> None:
    from tests.conftest import clear_tables

    app = make_app(database_url, WEBHOOK_ALLOW_PRIVATE_TARGETS=True, WEBHOOK_MAX_ATTEMPTS=5000,
                   WEBHOOK_TIMEOUT_SECONDS=2)
    fakes.install(app)
    closed = Receiver()
    closed.close()  # nothing listens on that port now
    try:
        key, client = setup_site(app)
        add_hook(client, key, closed.url)
        post(client, key, "hello")
        for attempts in (35, 2000):  # 10 s * 2**35 overflows a date; 2.0**2000 a float
            with app.app_context():
                db.session.execute(update(WebhookDelivery).values(
                    attempts=attempts, next_attempt_at=utcnow()))
                db.session.commit()
            assert deliver(app) == 1
            (row,) = deliveries(app)
            assert (row.state, row.attempts, row.last_status) == ("pending", attempts + 1, None)
            assert row.last_error
            wait = row.next_attempt_at - utcnow()
            assert timedelta(hours=23, minutes=59) < wait <= timedelta(days=1)
    finally:
        clear_tables(app)


def test_malformed_urls_and_port_zero_are_refused_with_400(hooked: Flask) -> None:
    key, client = setup_site(hooked)  # private targets allowed: the URL's form alone decides
    for url in ("http://[::1/hook", "http://[v1.x/", "http://127.0.0.1:0/hook",
                "https://8.8.8.8:0/", "http://example.com:0/", "http://127.0.0.1:65536/"):
        response = client.post("/api/v1/manage/webhooks", json={"url": url},
                               headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 400, (url, response.status_code)
        assert response.json["error"]["field"] == "url"


def test_a_stored_url_with_port_zero_is_not_sent_to_the_default_port(
    hooked: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_connect = socket.socket.connect
    connected: list[Any] = []

    def connect(sock: socket.socket, address: Any) -> None:
        connected.append(address)
        real_connect(sock, address)

    site = add_site(hooked, name="Old")
    add_stored_hook(hooked, site.id, "http://127.0.0.1:0/hook")  # accepted before the fix
    key = issue_key(hooked, site)
    post(hooked.test_client(), key, "hello")
    monkeypatch.setattr(socket.socket, "connect", connect)
    assert deliver(hooked) == 1
    (row,) = deliveries(hooked)
    assert (row.state, row.attempts, row.last_status) == ("pending", 1, None)
    assert "port" in row.last_error
    assert connected == []  # not port 80


def test_ipv6_addresses_carrying_a_private_ipv4_address_are_refused(app: Flask) -> None:
    key, client = setup_site(app)
    headers = {"Authorization": f"Bearer {key}"}
    for host in ("64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
                 "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
                 "64:ff9b:1::808:808",  # local-use NAT64
                 "2002:7f00:1::1",  # 6to4 of 127.0.0.1
                 "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
                 "::7f00:1",  # IPv4-compatible 127.0.0.1
                 "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
                 "::ffff:127.0.0.1"):  # IPv4-mapped
        response = client.post("/api/v1/manage/webhooks", json={"url": f"http://[{host}]/h"},
                               headers=headers)
        assert response.status_code == 400, host
        assert response.json["error"]["field"] == "url"
        assert "public address" in response.json["error"]["message"]
        # And a delivery to such an address is refused before anything is sent.
        status, error = webhooks.post(f"http://[{host}]:1/h", b"{}", {}, 2)
        assert status is None and "public address" in error, host
    # The same forms around a public IPv4 address (NAT64 of 8.8.8.8, 6to4) are accepted.
    for host in ("64:ff9b::808:808", "2002:808:808::1"):
        response = client.post("/api/v1/manage/webhooks", json={"url": f"http://[{host}]/h"},
                               headers=headers)
        assert response.status_code == 201, host
