"""Dashboard accounts: signing out everywhere, disabled accounts, sign-in limits, CSRF age."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from itsdangerous import TimestampSigner
from sqlalchemy import create_engine, inspect, select, text

from moderation import auth, create_app, limits
from moderation.db import Comment, ModerationEvent, Site, Status, db
from tests import fakes
from tests.conftest import (
    PASSWORD,
    add_moderator,
    add_site,
    base_config,
    clear_tables,
    make_app,
    token_from,
)

QUEUE = "/dashboard/queue/pending"


def login(client: FlaskClient, email: str, password: str = PASSWORD,
          addr: str = "192.0.2.10") -> Any:
    return client.post("/dashboard/login", data={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": addr})


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None, "not signed in"
    return cookie.value


def browser_with(app: Flask, cookie: str) -> FlaskClient:
    """Return a new client (another browser, or an attacker) holding a copied session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other


def sent_to_login(response: Any) -> bool:
    return response.status_code == 302 and "/dashboard/login" in response.headers["Location"]


def clock_ahead(monkeypatch: pytest.MonkeyPatch, seconds: int) -> None:
    """Make every signed timestamp (session cookie, CSRF token) look `seconds` old."""
    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp",
                        lambda self: real(self) + seconds)


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def held_comment(client: FlaskClient, site: Site) -> int:
    response = client.post("/api/v1/comments", json={
        "site": site.key, "uri": "/p", "text": "a borderline remark"})
    assert response.status_code == 202 and response.json is not None, response.json
    return int(response.json["comment"]["id"])


# -- signing out ends the session everywhere ------------------------------------------------


def test_a_cookie_copied_before_sign_out_no_longer_opens_the_dashboard(
    app: Flask, client: FlaskClient
) -> None:
    site = add_site(app)
    add_moderator(app, "alice@example.org", site)
    assert login(client, "alice@example.org").status_code == 302
    copied = session_cookie(client)
    laptop = app.test_client()  # the same moderator, signed in on another device
    assert login(laptop, "alice@example.org").status_code == 302
    assert browser_with(app, copied).get(QUEUE).status_code == 200

    signed_out = client.post("/dashboard/logout", follow_redirects=True)

    assert sent_to_login(browser_with(app, copied).get(QUEUE))
    assert sent_to_login(laptop.get(QUEUE))
    assert sent_to_login(client.get(QUEUE))
    assert b"signed out everywhere" in signed_out.data
    # Signing in again opens a new session that works.
    assert login(client, "alice@example.org").status_code == 302
    assert client.get(QUEUE).status_code == 200


def test_sign_out_on_one_worker_ends_the_session_on_another(
    database_url: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}" if database_url == "sqlite://" else database_url
    worker_a = make_app(url)
    worker_b = create_app(base_config(SQLALCHEMY_DATABASE_URI=url))
    try:
        add_moderator(worker_a, "alice@example.org", add_site(worker_a))
        client = worker_a.test_client()
        login(client, "alice@example.org")
        on_b = browser_with(worker_b, session_cookie(client))
        assert on_b.get(QUEUE).status_code == 200
        client.post("/dashboard/logout")
        assert sent_to_login(on_b.get(QUEUE))
    finally:
        with worker_b.app_context():
            db.engine.dispose()
        clear_tables(worker_a)


def test_sessions_end_after_fourteen_idle_days(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_moderator(app, "alice@example.org", add_site(app))
    login(client, "alice@example.org")
    copied = session_cookie(client)
    clock_ahead(monkeypatch, 13 * 24 * 3600)
    assert browser_with(app, copied).get(QUEUE).status_code == 200
    clock_ahead(monkeypatch, 2 * 24 * 3600)  # 15 days after the cookie was signed
    assert sent_to_login(browser_with(app, copied).get(QUEUE))


# -- disabling accounts ---------------------------------------------------------------------


def test_a_disabled_account_cannot_sign_in_and_its_sessions_end_at_once(
    app: Flask, client: FlaskClient
) -> None:
    fakes.install(app)
    site = add_site(app)
    add_moderator(app, "alice@example.org", site)
    add_moderator(app, "bob@example.org", site)
    comment_id = held_comment(client, site)
    assert login(client, "alice@example.org").status_code == 302
    copied = session_cookie(client)
    assert client.post(f"/dashboard/comments/{comment_id}/approve").status_code == 302
    other = app.test_client()
    login(other, "bob@example.org")

    result = cli(app, "moderator", "disable", "Alice@Example.org")
    assert result.exit_code == 0, result.output
    assert "Disabled alice@example.org" in result.output

    assert sent_to_login(client.get(QUEUE))
    refused = login(app.test_client(), "alice@example.org")
    assert refused.status_code == 403 and b"This account is disabled" in refused.data
    wrong = login(app.test_client(), "alice@example.org", "not the password")
    assert wrong.status_code == 401 and b"Wrong email or password." in wrong.data
    assert other.get(QUEUE).status_code == 200  # other accounts are untouched
    # The account and its audit trail stay.
    with app.app_context():
        actions = db.session.execute(select(ModerationEvent.action).where(
            ModerationEvent.actor == "moderator:alice@example.org")).scalars().all()
        assert "approve" in actions
        assert db.session.get(Comment, comment_id).status == Status.PUBLISHED  # type: ignore[union-attr]
    listed = cli(app, "moderator", "list").output
    assert re.search(r"alice@example\.org\s+moderator\s+disabled", listed)
    assert re.search(r"bob@example\.org\s+moderator\s+active", listed)
    again = cli(app, "moderator", "disable", "alice@example.org")
    assert again.exit_code == 0 and "already disabled" in again.output

    # A password reset leaves the account disabled, and says so.
    reset = app.test_cli_runner().invoke(args=[
        "moderator", "add", "--email", "alice@example.org", "--site", site.key,
        "--password-stdin"], input=PASSWORD + "\n")
    assert reset.exit_code == 0 and "moderator enable alice@example.org" in reset.output
    assert login(app.test_client(), "alice@example.org").status_code == 403

    enabled = cli(app, "moderator", "enable", "alice@example.org")
    assert enabled.exit_code == 0 and "Enabled alice@example.org" in enabled.output
    assert sent_to_login(browser_with(app, copied).get(QUEUE))  # old sessions stay ended
    fresh = app.test_client()
    assert login(fresh, "alice@example.org").status_code == 302
    assert fresh.get(QUEUE).status_code == 200


def test_add_if_missing_creates_an_account_once_and_signs_no_one_out(app: Flask) -> None:
    def add(password: str) -> Any:
        return app.test_cli_runner().invoke(args=[
            "moderator", "add", "--email", "demo@example.org", "--admin", "--password-stdin",
            "--if-missing"], input=password + "\n")

    assert "Added admin demo@example.org" in add(PASSWORD).output
    signed_in = app.test_client()
    assert login(signed_in, "demo@example.org").status_code == 302
    again = add("another password entirely")
    assert again.exit_code == 0 and "left as it is" in again.output
    assert signed_in.get(QUEUE).status_code == 200  # still signed in, same password
    assert login(app.test_client(), "demo@example.org").status_code == 302


@pytest.mark.parametrize(("args", "message"), [
    (["disable", "nobody@example.org"], "no moderator with email 'nobody@example.org'"),
    (["enable", "nobody@example.org"], "no moderator with email 'nobody@example.org'"),
    (["disable"], "Missing argument 'EMAIL'"),
])
def test_disable_and_enable_explain_bad_arguments(
    app: Flask, args: list[str], message: str
) -> None:
    result = cli(app, "moderator", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(("email", "why"), [
    ("@", "is missing the part before '@'"),
    ("root@", "is missing the domain after '@'"),
    ("root", "must contain exactly one '@'"),
    ("root@@example.org", "must contain exactly one '@'"),
    ("ro ot@example.org", "must not contain spaces or control characters"),
    ("root@example..org", "has an invalid domain name"),
    ("<root>@example.org", "has an invalid part before '@'"),
    ("rööt@example.org", "has characters the sign-in form does not accept"),
    ("   ", "is empty"),
])
def test_add_refuses_an_email_no_one_could_sign_in_with(
    app: Flask, email: str, why: str
) -> None:
    result = app.test_cli_runner().invoke(args=[
        "moderator", "add", "--email", email, "--admin", "--password-stdin"],
        input=PASSWORD + "\n")
    assert result.exit_code == 2
    assert f"Invalid value for --email: {email!r} is not an email address: it {why}" \
        in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert cli(app, "moderator", "list").output == ""  # no account was made


def test_add_takes_a_local_address_such_as_the_demo_admins(app: Flask) -> None:
    added = app.test_cli_runner().invoke(args=[
        "moderator", "add", "--email", " Admin@LocalHost ", "--admin", "--password-stdin"],
        input=PASSWORD + "\n")
    assert added.exit_code == 0 and "Added admin admin@localhost" in added.output
    assert login(app.test_client(), "admin@localhost").status_code == 302


# -- sign-in limits -------------------------------------------------------------------------


@pytest.fixture
def limited_app(database_url: str) -> Iterator[Flask]:
    app = make_app(database_url, RATELIMIT_ENABLED=True)
    yield app
    clear_tables(app)


@pytest.mark.usefixtures("steady_window")
def test_rotating_addresses_inside_an_ipv6_64_shares_one_sign_in_limit(
    limited_app: Flask,
) -> None:
    add_moderator(limited_app, "admin@example.org", admin=True)
    client = limited_app.test_client()
    statuses = [login(client, "admin@example.org", "guess", addr=f"2001:db8::{n:x}").status_code
                for n in range(1, 21)]
    assert statuses == [401] * 5 + [429] * 15
    # Even the right password from the same /64 waits; another /64 may sign in.
    assert login(client, "admin@example.org", addr="2001:db8::ff").status_code == 429
    assert login(client, "admin@example.org", addr="2001:db8:0:1::1").status_code == 302


@pytest.mark.usefixtures("steady_window")
def test_a_team_on_one_network_can_all_sign_in(limited_app: Flask) -> None:
    team = [f"mod{n}@example.org" for n in range(8)]
    for email in team:
        add_moderator(limited_app, email, admin=True)
    statuses = [login(limited_app.test_client(), email, addr=f"2001:db8:5:6::{n + 1:x}")
                .status_code for n, email in enumerate(team)]
    assert statuses == [302] * 8


@pytest.mark.parametrize(("one", "other", "same"), [
    ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", True),
    ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
    ("192.0.2.1", "192.0.2.2", False),
    ("::ffff:192.0.2.1", "192.0.2.1", True),
    ("unknown", "unknown", True),
])
def test_sign_ins_and_other_requests_are_counted_by_network(
    app: Flask, one: str, other: str, same: bool
) -> None:
    keys = []
    for addr in (one, other):
        with app.test_request_context("/dashboard/login", environ_base={"REMOTE_ADDR": addr}):
            keys.append(limits.client_key())
    assert (keys[0] == keys[1]) is same
    assert addr not in keys[1]


@pytest.mark.usefixtures("steady_window")
def test_failed_sign_ins_to_one_account_are_limited_across_addresses(
    limited_app: Flask,
) -> None:
    add_moderator(limited_app, "admin@example.org", admin=True)
    add_moderator(limited_app, "alice@example.org", admin=True)
    client = limited_app.test_client()
    for n in range(1, 11):  # ten networks, one guess each, spelling the email differently
        email = "Admin@Example.org " if n % 2 else "admin@example.org"
        assert login(client, email, f"guess {n}", addr=f"203.0.113.{n}").status_code == 401
    eleventh = login(client, "admin@example.org", addr="198.51.100.1")
    assert eleventh.status_code == 429
    assert b"Too many requests" in eleventh.data
    # Other accounts are not affected, and successful sign-ins are not counted.
    for n in range(1, 13):
        assert login(client, "alice@example.org", addr=f"198.51.100.{n + 1}").status_code == 302


# -- CSRF tokens last as long as the session ------------------------------------------------


def csrf_login(client: FlaskClient, email: str) -> None:
    page = client.get("/dashboard/login").get_data(as_text=True)
    response = client.post("/dashboard/login", data={
        "email": email, "password": PASSWORD, "csrf_token": token_from(page)})
    assert response.status_code == 302


def test_a_form_left_open_for_two_hours_still_works(
    csrf_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = add_site(csrf_app)
    add_moderator(csrf_app, "alice@example.org", site)
    client = csrf_app.test_client()
    comment_id = held_comment(client, site)
    csrf_login(client, "alice@example.org")
    token = token_from(client.get(QUEUE).get_data(as_text=True))

    clock_ahead(monkeypatch, 2 * 3600)
    done = client.post(f"/dashboard/comments/{comment_id}/approve",
                       data={"csrf_token": token, "reason": "fine after all"})
    assert done.status_code == 302, done.get_data(as_text=True)
    with csrf_app.app_context():
        assert db.session.get(Comment, comment_id).status == Status.PUBLISHED  # type: ignore[union-attr]


def test_a_form_from_an_ended_session_gets_a_readable_page(csrf_app: Flask) -> None:
    site = add_site(csrf_app)
    add_moderator(csrf_app, "alice@example.org", site)
    client = csrf_app.test_client()
    csrf_login(client, "alice@example.org")
    token = token_from(client.get(QUEUE).get_data(as_text=True))
    client.post("/dashboard/logout", data={"csrf_token": token})
    refused = client.post("/dashboard/comments/1/approve", data={"csrf_token": token})
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    page = refused.get_data(as_text=True)
    assert "CSRF" in page and "sign in again" in page and "Go back" in page


# -- migration ------------------------------------------------------------------------------


def _migrated_url(database_url: str, tmp_path: Path) -> tuple[str, Any]:
    """Return an empty database for migrations, and a function that drops it afterwards."""
    if database_url == "sqlite://":
        return f"sqlite:///{tmp_path / 'm.db'}", lambda: None
    engine = create_engine(database_url.split("?")[0])
    schema = database_url.rsplit("%3D", 1)[1] + "_auth"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    return database_url.rsplit("%3D", 1)[0] + "%3D" + schema, drop


def test_the_migration_keeps_existing_moderators_able_to_sign_in(
    database_url: str, tmp_path: Path
) -> None:
    url, drop = _migrated_url(database_url, tmp_path)
    try:
        app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url))
        with app.app_context():
            upgrade(revision="9c1f4e2ab7d0")
            with db.engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO moderator (email, password_hash, is_admin, created_at) "
                    "VALUES ('old@example.org', :hash, :admin, :now)"),
                    {"hash": auth.hash_password(PASSWORD), "admin": True,
                     "now": "2026-01-01 00:00:00"})
            upgrade()
            columns = {c["name"]: c for c in inspect(db.engine).get_columns("moderator")}
            assert not columns["session_epoch"]["nullable"]
            assert columns["disabled_at"]["nullable"]
        client = app.test_client()
        assert login(client, "old@example.org").status_code == 302
        assert client.get(QUEUE).status_code == 200
        client.post("/dashboard/logout")
        assert sent_to_login(client.get(QUEUE))
        with app.app_context():
            db.session.remove()
            downgrade(revision="9c1f4e2ab7d0")
            names = {c["name"] for c in inspect(db.engine).get_columns("moderator")}
            assert "session_epoch" not in names and "disabled_at" not in names
            db.engine.dispose()
    finally:
        drop()
