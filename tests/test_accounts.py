"""Managing moderator accounts in the dashboard: the Moderators page (admins) and the Account
page (everyone): adding, role and sites, passwords, disabling, self-lockout and the audit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from moderation import auth
from moderation.db import ModerationEvent, Moderator, Site, db
from moderation.exceptions import InvalidField
from tests import fakes
from tests.conftest import (
    PASSWORD,
    add_moderator,
    add_site,
    clear_tables,
    make_app,
    token_from,
)

QUEUE = "/dashboard/queue/pending"
NEW_PASSWORD = "a fresh long passphrase"


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    return client.post("/dashboard/login", data={"email": email, "password": password})


def signed_in(app: Flask, email: str, password: str = PASSWORD) -> FlaskClient:
    """Return a new browser signed in to the account."""
    client = app.test_client()
    assert login(client, email, password).status_code == 302
    return client


def sent_to_login(response: Any) -> bool:
    return response.status_code == 302 and "/dashboard/login" in response.headers["Location"]


def account_id(app: Flask, email: str) -> int:
    with app.app_context():
        found = auth.find_account(email)
        assert found is not None
        return found.id


def stored_account(app: Flask, email: str) -> dict[str, Any] | None:
    """Return what is stored about an account (None: no such account)."""
    with app.app_context():
        found = auth.find_account(email)
        if found is None:
            return None
        return {"admin": found.is_admin, "sites": sorted(s.name for s in found.sites),
                "disabled": found.disabled_at is not None, "hash": found.password_hash}


def card(page: str, email: str) -> str:
    """Return the Moderators page's card of one account."""
    return next(c for c in page.split("<article")[1:] if f'-h">{email}' in c)


def account_events(app: Flask) -> list[ModerationEvent]:
    with app.app_context():
        rows = db.session.execute(
            select(ModerationEvent).where(ModerationEvent.action == "account")
            .order_by(ModerationEvent.id)
        ).scalars().all()
        db.session.expunge_all()
        return list(rows)


def held(client: FlaskClient, site: Site, text: str) -> int:
    response = client.post("/api/v1/comments", json={
        "site": site.key, "uri": "/posts/one", "text": text})
    assert response.status_code == 202, response.json
    return int(response.json["comment"]["id"])


@pytest.fixture
def team(app: Flask) -> dict[str, Site]:
    """Two sites, an admin, and a moderator of each site."""
    fakes.install(app)
    alpha = add_site(app, "Alpha")
    beta = add_site(app, "Beta")
    add_moderator(app, "admin@example.org", admin=True)
    add_moderator(app, "alice@example.org", alpha)
    add_moderator(app, "bob@example.org", beta)
    return {"a": alpha, "b": beta}


@pytest.fixture
def admin(app: Flask, team: dict[str, Site]) -> FlaskClient:
    return signed_in(app, "admin@example.org")


def add_form(**fields: Any) -> dict[str, Any]:
    return {"email": "carol@example.org", "password": NEW_PASSWORD, **fields}


# -- adding accounts ------------------------------------------------------------------------


def test_an_admin_adds_a_moderator_who_signs_in_and_sees_only_their_sites(
    app: Flask, team: dict[str, Site], admin: FlaskClient
) -> None:
    on_alpha = held(app.test_client(), team["a"], "a borderline remark on alpha")
    held(app.test_client(), team["b"], "a borderline remark on beta")
    page = admin.get("/dashboard/moderators").get_data(as_text=True)
    assert "Add a moderator" in page and 'name="password"' in page

    added = admin.post("/dashboard/moderators",
                       data=add_form(email=" Carol@Example.org ", sites=[team["a"].id]))
    assert added.status_code == 302
    listed = admin.get("/dashboard/moderators").get_data(as_text=True)
    assert "Added moderator carol@example.org for Alpha: they can sign in now." in listed
    assert "carol@example.org" in listed

    carol = signed_in(app, "carol@example.org", NEW_PASSWORD)
    queue = carol.get(QUEUE).get_data(as_text=True)
    assert "remark on alpha" in queue and "remark on beta" not in queue
    sites = carol.get("/dashboard/sites").get_data(as_text=True)
    assert "Alpha" in sites and "Beta" not in sites
    assert carol.get(f"/dashboard/queue/pending?site={team['b'].id}").status_code == 403
    assert carol.get(f"/dashboard/comments/{on_alpha}").status_code == 200
    assert carol.get("/dashboard/moderators").status_code == 403
    assert login(app.test_client(), "carol@example.org").status_code == 401  # not PASSWORD

    [event] = account_events(app)
    assert event.actor == "moderator:admin@example.org" and event.site_id is None
    assert event.reason == "added moderator carol@example.org for Alpha"
    stored = stored_account(app, "carol@example.org")
    assert stored is not None and stored["sites"] == ["Alpha"] and not stored["admin"]
    assert NEW_PASSWORD not in str(event.details) and "scrypt" not in str(event.details)


def test_an_added_admin_sees_every_site_and_manages_accounts(
    app: Flask, team: dict[str, Site], admin: FlaskClient
) -> None:
    assert admin.post("/dashboard/moderators", data=add_form(admin="yes")).status_code == 302
    carol = signed_in(app, "carol@example.org", NEW_PASSWORD)
    sites = carol.get("/dashboard/sites").get_data(as_text=True)
    assert "Alpha" in sites and "Beta" in sites
    assert carol.get("/dashboard/moderators").status_code == 200
    assert account_events(app)[0].reason == "added admin carol@example.org for every site"


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"email": "carol@", "sites": ["A"]}, "email",
     "is not an email address the sign-in form accepts: it is missing the domain after"),
    ({"email": "cärol@example.org", "sites": ["A"]}, "email",
     "has characters the sign-in form does not accept"),
    ({"email": "Alice@example.org", "sites": ["A"]}, "email",
     "already has an account: change it in the list below"),
    ({"password": "too short", "sites": ["A"]}, "password",
     f"must have at least {auth.MIN_PASSWORD_LENGTH} characters"),
    ({}, "sites", "a moderator needs at least one site (or the admin flag, for every site)"),
    ({"sites": ["999999"]}, "sites", "names a site that no longer exists"),
    ({"sites": ["A", "x"]}, "sites", "is not a list of sites"),
])
def test_an_invalid_new_account_stores_nothing_and_keeps_what_was_typed(
    app: Flask, team: dict[str, Site], admin: FlaskClient,
    fields: dict[str, Any], field: str, message: str,
) -> None:
    if "sites" in fields:
        fields["sites"] = [team["a"].id if s == "A" else s for s in fields["sites"]]
    before = stored_account(app, "alice@example.org")
    refused = admin.post("/dashboard/moderators", data=add_form(**fields))
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    page = refused.get_data(as_text=True)
    assert "Nothing was saved" in page
    assert f'id="add-{field}-error"' in page and message in page
    # What was typed is still there, except the password.
    typed_email = fields.get("email", "carol@example.org")
    assert f'value="{typed_email}"' in page
    assert NEW_PASSWORD not in page and "too short" not in page
    if "sites" in fields and team["a"].id in fields["sites"]:
        assert f'name="sites" value="{team["a"].id}" checked' in page
    # Nothing was stored: no new account, the existing one untouched, no audit row.
    with app.app_context():
        assert db.session.execute(select(func.count(Moderator.id))).scalar_one() == 3
    assert stored_account(app, "alice@example.org") == before
    assert account_events(app) == []


# -- who may use these forms ----------------------------------------------------------------


@pytest.mark.parametrize("action", ["access", "password", "disable", "enable"])
def test_non_admins_get_403_on_the_account_forms(
    app: Flask, team: dict[str, Site], action: str
) -> None:
    alice = signed_in(app, "alice@example.org")
    bob = account_id(app, "bob@example.org")
    before = stored_account(app, "bob@example.org")
    refused = alice.post(f"/dashboard/moderators/{bob}/{action}", data={
        "admin": "yes", "sites": [team["a"].id], "password": NEW_PASSWORD})
    assert refused.status_code == 403 and b"Only administrators" in refused.data
    added = alice.post("/dashboard/moderators", data=add_form(admin="yes"))
    assert added.status_code == 403
    assert stored_account(app, "bob@example.org") == before
    assert stored_account(app, "carol@example.org") is None
    assert account_events(app) == []
    assert alice.get(QUEUE).status_code == 200  # still signed in, nothing else happened


def test_anonymous_account_forms_lead_to_sign_in(app: Flask, team: dict[str, Site]) -> None:
    client = app.test_client()
    assert sent_to_login(client.get("/dashboard/account"))
    assert sent_to_login(client.post("/dashboard/account", data={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD}))
    assert sent_to_login(client.post(
        f"/dashboard/moderators/{account_id(app, 'bob@example.org')}/disable"))
    assert stored_account(app, "bob@example.org")["disabled"] is False  # type: ignore[index]


def test_an_unknown_account_is_not_found(team: dict[str, Site], admin: FlaskClient) -> None:
    for action in ("access", "password", "disable", "enable"):
        missing = admin.post(f"/dashboard/moderators/999999/{action}")
        assert missing.status_code == 404 and b"No such moderator account" in missing.data


# -- role and sites -------------------------------------------------------------------------


def test_an_admin_changes_a_moderators_sites_and_role(
    app: Flask, team: dict[str, Site], admin: FlaskClient
) -> None:
    held(app.test_client(), team["b"], "a borderline remark on beta")
    alice = signed_in(app, "alice@example.org")
    alice_id = account_id(app, "alice@example.org")
    assert "remark on beta" not in alice.get(QUEUE).get_data(as_text=True)

    moved = admin.post(f"/dashboard/moderators/{alice_id}/access",
                       data={"sites": [team["b"].id]})
    assert moved.status_code == 302
    # Her session goes on, with the new sites.
    assert "remark on beta" in alice.get(QUEUE).get_data(as_text=True)
    assert alice.get(f"/dashboard/sites/{team['a'].id}/settings").status_code == 403

    # A moderator without sites is refused; what is stored stays, the form keeps the choice.
    refused = admin.post(f"/dashboard/moderators/{alice_id}/access", data={})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert f'id="m{alice_id}-sites-error"' in page and "at least one site" in page
    assert stored_account(app, "alice@example.org")["sites"] == ["Beta"]  # type: ignore[index]

    promoted = admin.post(f"/dashboard/moderators/{alice_id}/access",
                          data={"admin": "yes", "sites": [team["b"].id]})
    assert promoted.status_code == 302
    assert alice.get("/dashboard/moderators").status_code == 200
    same = admin.post(f"/dashboard/moderators/{alice_id}/access",
                      data={"admin": "yes", "sites": [team["b"].id]})
    assert same.status_code == 302
    assert "Nothing changed for alice@example.org." in admin.get(
        "/dashboard/moderators").get_data(as_text=True)

    first, second = account_events(app)  # the unchanged save wrote no row
    assert first.reason == "changed sites of alice@example.org"
    assert first.details == {"before": {"sites": ["Alpha"]}, "after": {"sites": ["Beta"]}}
    assert second.reason == "changed role of alice@example.org"
    assert second.details == {"before": {"role": "moderator"}, "after": {"role": "admin"}}


# -- passwords and sessions -----------------------------------------------------------------


def test_an_admin_sets_a_new_password_and_the_accounts_sessions_end(
    app: Flask, team: dict[str, Site], admin: FlaskClient
) -> None:
    alice = signed_in(app, "alice@example.org")
    alice_id = account_id(app, "alice@example.org")
    short = admin.post(f"/dashboard/moderators/{alice_id}/password", data={"password": "short"})
    assert short.status_code == 400
    assert f'id="m{alice_id}-password-error"' in short.get_data(as_text=True)
    assert alice.get(QUEUE).status_code == 200  # a refused form changes nothing

    done = admin.post(f"/dashboard/moderators/{alice_id}/password",
                      data={"password": NEW_PASSWORD})
    assert done.status_code == 302
    assert sent_to_login(alice.get(QUEUE))
    assert login(app.test_client(), "alice@example.org").status_code == 401
    assert login(app.test_client(), "alice@example.org", NEW_PASSWORD).status_code == 302
    assert admin.get(QUEUE).status_code == 200  # the admin's own session goes on
    [event] = account_events(app)
    assert event.reason == "set a new password for alice@example.org (its sessions ended)"
    assert event.details == {}


def test_disabling_ends_the_accounts_sessions_and_enabling_lets_it_sign_in_again(
    app: Flask, team: dict[str, Site], admin: FlaskClient
) -> None:
    alice = signed_in(app, "alice@example.org")
    cookie = alice.get_cookie("session")
    assert cookie is not None
    bob = signed_in(app, "bob@example.org")
    alice_id = account_id(app, "alice@example.org")

    assert admin.post(f"/dashboard/moderators/{alice_id}/disable").status_code == 302
    page = admin.get("/dashboard/moderators").get_data(as_text=True)
    assert "Disabled alice@example.org: it can no longer sign in" in page
    alice_card = card(page, "alice@example.org")
    assert "<strong>disabled</strong>" in alice_card and ">Enable</button>" in alice_card
    assert sent_to_login(alice.get(QUEUE))
    refused = login(app.test_client(), "alice@example.org")
    assert refused.status_code == 403 and b"This account is disabled" in refused.data
    assert bob.get(QUEUE).status_code == 200  # other accounts go on

    again = admin.post(f"/dashboard/moderators/{alice_id}/disable")
    assert again.status_code == 302
    assert "was already disabled: nothing changed" in admin.get(
        "/dashboard/moderators").get_data(as_text=True)

    assert admin.post(f"/dashboard/moderators/{alice_id}/enable").status_code == 302
    stale = app.test_client()
    stale.set_cookie("session", cookie.value)
    assert sent_to_login(stale.get(QUEUE))  # enabling does not bring old sessions back
    assert signed_in(app, "alice@example.org").get(QUEUE).status_code == 200
    assert [e.reason for e in account_events(app)] == [
        "disabled alice@example.org (its sessions ended)", "enabled alice@example.org"]


def test_an_admin_cannot_lock_themselves_out(
    app: Flask, team: dict[str, Site], admin: FlaskClient
) -> None:
    me = account_id(app, "admin@example.org")
    before = stored_account(app, "admin@example.org")
    page = admin.get("/dashboard/moderators").get_data(as_text=True)
    own_card = card(page, "admin@example.org")
    assert ">Disable</button>" not in own_card and "(you)" in own_card
    assert "You cannot remove your own admin flag" in own_card
    assert "Account page" in own_card and 'name="password"' not in own_card

    disabled = admin.post(f"/dashboard/moderators/{me}/disable")
    assert disabled.status_code == 400
    assert "You cannot disable your own account" in disabled.get_data(as_text=True)
    demoted = admin.post(f"/dashboard/moderators/{me}/access", data={"sites": [team["a"].id]})
    assert demoted.status_code == 400
    assert "You cannot remove your own admin flag" in demoted.get_data(as_text=True)
    password = admin.post(f"/dashboard/moderators/{me}/password",
                          data={"password": NEW_PASSWORD})
    assert password.status_code == 400
    assert "change it on your Account page" in password.get_data(as_text=True)

    assert stored_account(app, "admin@example.org") == before
    assert admin.get("/dashboard/moderators").status_code == 200
    assert account_events(app) == []
    # Their own sites may change while they stay an admin.
    kept = admin.post(f"/dashboard/moderators/{me}/access",
                      data={"admin": "yes", "sites": [team["a"].id]})
    assert kept.status_code == 302


def test_two_admins_demoting_each_other_leave_one_admin(
    app: Flask, team: dict[str, Site], admin: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second of two crossing requests finds its own admin flag gone, and changes nothing.

    The request of admin@ was let in as an admin's, then erin@ took admin@'s flag away before
    it reached its change (simulated: the account the request checked is kept as it was).
    """
    add_moderator(app, "erin@example.org", admin=True)
    erin = account_id(app, "erin@example.org")
    alice = account_id(app, "alice@example.org")
    stale = auth.Account(account_id(app, "admin@example.org"), "admin@example.org", True, ())
    with app.app_context():
        found = db.session.get(Moderator, stale.id)
        assert found is not None
        found.is_admin = False
        db.session.commit()
    monkeypatch.setattr(auth, "current", lambda: stale)

    last = admin.post(f"/dashboard/moderators/{erin}/access", data={"sites": [team["a"].id]})
    assert last.status_code == 400
    assert "This is the last enabled admin" in last.get_data(as_text=True)
    assert admin.post(f"/dashboard/moderators/{erin}/disable").status_code == 400
    assert admin.post(f"/dashboard/moderators/{alice}/disable").status_code == 403
    assert stored_account(app, "erin@example.org")["admin"] is True  # type: ignore[index]
    assert stored_account(app, "alice@example.org")["disabled"] is False  # type: ignore[index]
    assert account_events(app) == []


# -- your own account -----------------------------------------------------------------------


def test_a_moderator_changes_their_own_password(app: Flask, team: dict[str, Site]) -> None:
    alice = signed_in(app, "alice@example.org")
    phone = signed_in(app, "alice@example.org")
    page = alice.get("/dashboard/account")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'href="/dashboard/account" aria-current="page">Account</a>' in text
    assert "a moderator of Alpha" in text

    def change(current: str, new: str, again: str | None = None) -> Any:
        return alice.post("/dashboard/account", data={
            "current_password": current, "new_password": new,
            "new_password_again": new if again is None else again})

    for (current, new, again), field, message in (
        (("not my password", NEW_PASSWORD, None), "current_password",
         "is not your current password"),
        ((PASSWORD, "short", None), "new_password",
         f"must have at least {auth.MIN_PASSWORD_LENGTH} characters"),
        ((PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!"), "new_password_again",
         "does not match the new password"),
    ):
        refused = change(current, new, again)
        assert refused.status_code == 400
        body = refused.get_data(as_text=True)
        assert f'id="{field}-error"' in body and message in body
        assert "Your password was not changed" in body
        assert NEW_PASSWORD not in body and PASSWORD not in body
        assert phone.get(QUEUE).status_code == 200  # nothing changed
    assert account_events(app) == []

    done = change(PASSWORD, NEW_PASSWORD)
    assert done.status_code == 302 and done.headers["Location"] == "/dashboard/account"
    after = alice.get("/dashboard/account").get_data(as_text=True)
    assert "Password changed. Every other browser signed in to this account" in after
    assert alice.get(QUEUE).status_code == 200  # this browser stays signed in
    assert sent_to_login(phone.get(QUEUE))  # the other one is signed out
    assert login(app.test_client(), "alice@example.org").status_code == 401
    assert login(app.test_client(), "alice@example.org", NEW_PASSWORD).status_code == 302

    [event] = account_events(app)
    assert event.actor == "moderator:alice@example.org"
    assert event.reason == "changed their own password (their other sessions ended)"
    assert NEW_PASSWORD not in str(event.details) and PASSWORD not in event.reason


def test_account_changes_show_on_the_audit_page(
    app: Flask, team: dict[str, Site], admin: FlaskClient
) -> None:
    admin.post("/dashboard/moderators", data=add_form(sites=[team["b"].id]))
    carol = account_id(app, "carol@example.org")
    admin.post(f"/dashboard/moderators/{carol}/access", data={"sites": [team["a"].id]})
    admin.post(f"/dashboard/moderators/{carol}/password", data={"password": NEW_PASSWORD + "2"})
    admin.post(f"/dashboard/moderators/{carol}/disable")
    admin.post(f"/dashboard/moderators/{carol}/enable")
    page = admin.get("/dashboard/audit?action=account").get_data(as_text=True)
    assert "<option selected>account</option>" in page
    for reason in ("added moderator carol@example.org for Beta",
                   "changed sites of carol@example.org",
                   "set a new password for carol@example.org (its sessions ended)",
                   "disabled carol@example.org (its sessions ended)",
                   "enabled carol@example.org"):
        assert reason in page
    assert page.count('<span class="pill action-account">account</span>') == 5
    assert '<span class="was">[&#34;Beta&#34;]</span>' in page  # what the sites change replaced
    assert "scrypt" not in page and NEW_PASSWORD not in page
    with app.app_context():
        hashes = db.session.execute(select(Moderator.password_hash)).scalars().all()
    assert not any(h in page for h in hashes)


# -- CSRF and guessing ----------------------------------------------------------------------


def test_account_forms_need_the_csrf_token(csrf_app: Flask) -> None:
    site = add_site(csrf_app, "Alpha")
    add_moderator(csrf_app, "admin@example.org", admin=True)
    add_moderator(csrf_app, "alice@example.org", site)
    client = csrf_app.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    assert client.post("/dashboard/login", data={
        "email": "admin@example.org", "password": PASSWORD,
        "csrf_token": token_from(page)}).status_code == 302
    alice = account_id(csrf_app, "alice@example.org")

    for path, data in (
        ("/dashboard/moderators", add_form(admin="yes")),
        (f"/dashboard/moderators/{alice}/disable", {}),
        (f"/dashboard/moderators/{alice}/password", {"password": NEW_PASSWORD}),
        (f"/dashboard/moderators/{alice}/access", {"admin": "yes"}),
        ("/dashboard/account", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                "new_password_again": NEW_PASSWORD}),
    ):
        for token in (None, "forged"):
            sent = dict(data, csrf_token=token) if token else data
            refused = client.post(path, data=sent)
            assert refused.status_code == 400 and b"CSRF" in refused.data, path
    assert stored_account(csrf_app, "carol@example.org") is None
    assert stored_account(csrf_app, "alice@example.org")["disabled"] is False  # type: ignore[index]
    assert account_events(csrf_app) == []

    token = token_from(client.get("/dashboard/moderators").get_data(as_text=True))
    done = client.post(f"/dashboard/moderators/{alice}/disable", data={"csrf_token": token})
    assert done.status_code == 302
    assert stored_account(csrf_app, "alice@example.org")["disabled"] is True  # type: ignore[index]


@pytest.fixture
def limited_app(database_url: str) -> Iterator[Flask]:
    app = make_app(database_url, RATELIMIT_ENABLED=True, LIMIT_LOGIN_ACCOUNT="3/hour")
    yield app
    clear_tables(app)


@pytest.mark.usefixtures("steady_window")
def test_guessing_the_current_password_is_limited(limited_app: Flask) -> None:
    add_moderator(limited_app, "alice@example.org", admin=True)
    add_moderator(limited_app, "bob@example.org", admin=True)
    alice = signed_in(limited_app, "alice@example.org")

    def change(current: str) -> Any:
        return alice.post("/dashboard/account", data={
            "current_password": current, "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD})

    # Other refusals (a short new password) are not guesses and are not counted.
    for _ in range(4):
        assert alice.post("/dashboard/account", data={
            "current_password": PASSWORD, "new_password": "short",
            "new_password_again": "short"}).status_code == 400
    for n in range(3):
        assert change(f"guess {n}").status_code == 400
    blocked = change(PASSWORD)
    assert blocked.status_code == 429 and b"Too many requests" in blocked.data
    assert login(limited_app.test_client(), "alice@example.org").status_code == 302  # unchanged
    # Other accounts are not affected.
    bob = signed_in(limited_app, "bob@example.org")
    assert bob.post("/dashboard/account", data={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD}).status_code == 302


def test_the_cli_and_the_dashboard_share_the_account_rules() -> None:
    """The checks the CLI and the dashboard both call (the CLI's own tests are in test_auth)."""
    assert auth.account_email(" Admin@LocalHost ") == "admin@localhost"
    with pytest.raises(InvalidField, match="is missing the domain"):
        auth.account_email("root@")
    with pytest.raises(InvalidField, match=re.escape(f"at least {auth.MIN_PASSWORD_LENGTH}")):
        auth.check_password("x" * (auth.MIN_PASSWORD_LENGTH - 1))
    auth.check_password("x" * auth.MIN_PASSWORD_LENGTH)
    with pytest.raises(InvalidField, match="at least one site"):
        auth.check_access(False, [])
    auth.check_access(True, [])
