"""Managing moderator accounts in the dashboard: the Moderators page (admins) and the Account
page (everyone): adding, role and sites, passwords, disabling, self-lockout and the audit."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
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
INVISIBLE = (f"must have at least {auth.MIN_PASSWORD_LENGTH} visible characters: spaces, "
             "control characters and invisible ones (such as zero-width spaces) do not count")


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
    # The audit log names each site with its key: two sites may have the same name.
    assert event.reason == f"added moderator carol@example.org for Alpha ({team['a'].key})"
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
    # Long enough, but made of characters that do not show.
    ({"password": " " * 12, "sites": ["A"]}, "password", INVISIBLE),
    ({"password": "\x00" * 10, "sites": ["A"]}, "password", INVISIBLE),
    ({"password": "\u200b" * 10, "sites": ["A"]}, "password", INVISIBLE),
    ({"password": "pass\u3000\u00a0\t\u2060\u202e\ufeffword", "sites": ["A"]}, "password",
     INVISIBLE),
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
    assert first.details == {"before": {"sites": [f"Alpha ({team['a'].key})"]},
                             "after": {"sites": [f"Beta ({team['b'].key})"]}}
    assert second.reason == "changed role of alice@example.org"
    assert second.details == {"before": {"role": "moderator"}, "after": {"role": "admin"}}


def test_moving_a_moderator_between_two_sites_of_the_same_name_is_saved(
    app: Flask, team: dict[str, Site], admin: FlaskClient
) -> None:
    first, second = add_site(app, "Blog"), add_site(app, "Blog")
    held(app.test_client(), second, "a borderline remark on the second blog")
    admin.post("/dashboard/moderators", data=add_form(sites=[first.id]))
    carol = account_id(app, "carol@example.org")
    # Each site's checkbox shows its key, and the card which Blog she moderates.
    page = card(admin.get("/dashboard/moderators").get_data(as_text=True), "carol@example.org")
    for site in (first, second):
        assert re.search(rf'name="sites" value="{site.id}"[^>]*> Blog <small[^>]*>'
                         rf"{re.escape(site.key)}</small>", page)
    assert f"Sites: Blog ({first.key})" in page

    moved = admin.post(f"/dashboard/moderators/{carol}/access", data={"sites": [second.id]})
    assert moved.status_code == 302
    listed = admin.get("/dashboard/moderators").get_data(as_text=True)
    assert "Nothing changed" not in listed
    assert f"carol@example.org is now a moderator of Blog ({second.key})." in listed
    assert f"Sites: Blog ({second.key})" in card(listed, "carol@example.org")
    queue = signed_in(app, "carol@example.org", NEW_PASSWORD).get(QUEUE).get_data(as_text=True)
    assert "remark on the second blog" in queue

    # Made an admin and moved back in one save: the audit row has both changes.
    both = admin.post(f"/dashboard/moderators/{carol}/access",
                      data={"admin": "yes", "sites": [first.id]})
    assert both.status_code == 302
    _, moved_row, both_row = account_events(app)
    assert moved_row.reason == "changed sites of carol@example.org"
    assert moved_row.details == {"before": {"sites": [f"Blog ({first.key})"]},
                                 "after": {"sites": [f"Blog ({second.key})"]}}
    assert both_row.reason == "changed role and sites of carol@example.org"
    assert both_row.details == {
        "before": {"role": "moderator", "sites": [f"Blog ({second.key})"]},
        "after": {"role": "admin", "sites": [f"Blog ({first.key})"]}}


# -- where a form leads ---------------------------------------------------------------------


def test_an_account_forms_page_opens_at_its_card(
    app: Flask, team: dict[str, Site], admin: FlaskClient
) -> None:
    alice = account_id(app, "alice@example.org")
    alice_card = card(admin.get("/dashboard/moderators").get_data(as_text=True),
                      "alice@example.org")
    assert f'id="m-{alice}"' in alice_card
    for form in ("access", "password", "disable"):
        assert f'action="/dashboard/moderators/{alice}/{form}#m-{alice}"' in alice_card
    # The password form names its account, so a password manager files it under hers.
    assert ('<input type="email" name="username" value="alice@example.org" '
            'autocomplete="username" hidden readonly>') in alice_card

    refused = admin.post(f"/dashboard/moderators/{alice}/access", data={})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert 'href="/dashboard/moderators" aria-current="page">Moderators</a>' in page
    assert "data-refused" in card(page, "alice@example.org")
    assert "data-refused" not in card(page, "bob@example.org")

    # Opening a form's URL (typed, bookmarked, from the history) leads to the card.
    for form in ("access", "password", "disable", "enable"):
        opened = admin.get(f"/dashboard/moderators/{alice}/{form}")
        assert opened.status_code == 302
        assert opened.headers["Location"] == f"/dashboard/moderators#m-{alice}"
    assert admin.get("/dashboard/moderators/999999/access").status_code == 404
    # A saved change goes back to the top, where the message saying what changed is.
    saved = admin.post(f"/dashboard/moderators/{alice}/access", data={"sites": [team["b"].id]})
    assert saved.headers["Location"] == "/dashboard/moderators#main"


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
    kept = admin.post(f"/dashboard/moderators/{erin}/disable")
    assert kept.status_code == 400
    page = kept.get_data(as_text=True)
    # No field to fix: the message says where the reason is, and the button names it.
    assert f'The account was not disabled: <a href="#m-{erin}">its card</a> says why.' in page
    assert "fix the field" not in page
    erin_card = card(page, "erin@example.org")
    assert f'<p class="field-error" id="m{erin}-status-error">This is the last' in erin_card
    assert f'aria-describedby="m{erin}-status-error"' in erin_card
    assert admin.post(f"/dashboard/moderators/{alice}/disable").status_code == 403
    assert stored_account(app, "erin@example.org")["admin"] is True  # type: ignore[index]
    assert stored_account(app, "alice@example.org")["disabled"] is False  # type: ignore[index]
    assert account_events(app) == []


@pytest.fixture(params=["sqlite-file", "postgres"])
def workers_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An app whose requests in two threads use two database connections, as two workers do
    (in-memory SQLite is one connection): a database file, or PostgreSQL."""
    url = (f"sqlite:///{tmp_path}/accounts.db" if request.param == "sqlite-file"
           else str(request.getfixturevalue("pg_schema")))
    app = make_app(url)
    yield app
    clear_tables(app)


def test_two_admins_disabling_each_other_at_once_leave_one_admin(
    workers_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two admins disable each other at the same moment: one is disabled, the other refused.

    After its check each request waits (at most a second) for the other to reach its own
    check too: without a lock both checks pass, and both accounts end up disabled. With it,
    the second check waits for the first request to commit, and sees its change.
    """
    app = workers_app
    add_moderator(app, "ann@example.org", admin=True)
    add_moderator(app, "ben@example.org", admin=True)
    ann, ben = signed_in(app, "ann@example.org"), signed_in(app, "ben@example.org")
    ids = {email: account_id(app, email) for email in ("ann@example.org", "ben@example.org")}
    check = auth.lock_enabled_admins
    both_checked = threading.Barrier(2)

    def check_then_wait() -> set[int]:
        admins = check()
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait(timeout=1)
        return admins

    monkeypatch.setattr(auth, "lock_enabled_admins", check_then_wait)
    answers: list[Any] = []

    def disable(client: FlaskClient, email: str) -> None:
        answers.append(client.post(f"/dashboard/moderators/{ids[email]}/disable"))

    threads = [threading.Thread(target=disable, args=(ann, "ben@example.org")),
               threading.Thread(target=disable, args=(ben, "ann@example.org"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [302, 400]
    [refused] = [a for a in answers if a.status_code == 400]
    assert "This is the last enabled admin" in refused.get_data(as_text=True)
    states = [stored_account(app, email) for email in ids]
    assert sorted(s["disabled"] for s in states if s) == [False, True]
    assert len(account_events(app)) == 1


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
        ((PASSWORD, " " * 16, None), "new_password", INVISIBLE),
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
    # An account change belongs to no site (not "every site").
    assert page.count('<td data-label="Site">—</td>') == 5
    assert '<td data-label="Site">every site</td>' not in page
    # What the sites change replaced.
    assert f'<span class="was">[&#34;Beta ({team["b"].key})&#34;]</span>' in page
    assert "scrypt" not in page and NEW_PASSWORD not in page
    with app.app_context():
        hashes = db.session.execute(select(Moderator.password_hash)).scalars().all()
    assert not any(h in page for h in hashes)

    # Moderators never see account rows, so their Action filter does not offer them.
    alice = signed_in(app, "alice@example.org").get("/dashboard/audit").get_data(as_text=True)
    assert "<option>account</option>" not in alice and "<option>approve</option>" in alice
    assert "<option>account</option>" in admin.get("/dashboard/audit").get_data(as_text=True)


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


def csrf_sign_in(app: Flask, email: str) -> FlaskClient:
    """Return a new browser signed in through the sign-in form, CSRF token and all."""
    client = app.test_client()
    token = token_from(client.get("/dashboard/login").get_data(as_text=True))
    assert client.post("/dashboard/login", data={
        "email": email, "password": PASSWORD, "csrf_token": token}).status_code == 302
    return client


def test_a_new_own_password_keeps_forms_open_in_other_tabs_working(csrf_app: Flask) -> None:
    site = add_site(csrf_app, "Alpha")
    add_moderator(csrf_app, "admin@example.org", admin=True)
    add_moderator(csrf_app, "alice@example.org", site)
    alice = account_id(csrf_app, "alice@example.org")
    browser = csrf_sign_in(csrf_app, "admin@example.org")
    laptop = csrf_sign_in(csrf_app, "admin@example.org")
    other_tab = token_from(browser.get("/dashboard/moderators").get_data(as_text=True))

    token = token_from(browser.get("/dashboard/account").get_data(as_text=True))
    changed = browser.post("/dashboard/account", data={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD, "csrf_token": token})
    assert changed.status_code == 302

    # The Moderators page opened before, in another tab of the same browser, still sends.
    done = browser.post(f"/dashboard/moderators/{alice}/disable", data={"csrf_token": other_tab})
    assert done.status_code == 302, done.get_data(as_text=True)
    assert stored_account(csrf_app, "alice@example.org")["disabled"] is True  # type: ignore[index]
    # Another browser is signed out all the same.
    assert sent_to_login(laptop.get(QUEUE))


def test_a_form_opened_before_signing_in_is_refused_after(csrf_app: Flask) -> None:
    """Signing in starts a new CSRF secret: a token planted before sign-in is worthless."""
    add_moderator(csrf_app, "admin@example.org", admin=True)
    add_moderator(csrf_app, "bob@example.org", admin=True)
    bob = account_id(csrf_app, "bob@example.org")
    client = csrf_app.test_client()
    before = token_from(client.get("/dashboard/login").get_data(as_text=True))
    assert client.post("/dashboard/login", data={
        "email": "admin@example.org", "password": PASSWORD, "csrf_token": before,
    }).status_code == 302
    refused = client.post(f"/dashboard/moderators/{bob}/disable", data={"csrf_token": before})
    assert refused.status_code == 400 and b"CSRF" in refused.data
    assert stored_account(csrf_app, "bob@example.org")["disabled"] is False  # type: ignore[index]


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
    for invisible in (" " * 10, "\x00" * 10, "\u200b" * 10, "\u3000" * 5 + "visible"):
        with pytest.raises(InvalidField, match=re.escape(INVISIBLE)):
            auth.check_password(invisible)
    auth.check_password("密码也可以是中文的句子")  # ten visible characters (and one more)
    auth.check_password("correct horse battery")  # inner spaces are fine
    with pytest.raises(InvalidField, match="at least one site"):
        auth.check_access(False, [])
    auth.check_access(True, [])


def test_the_cli_refuses_an_invisible_password(app: Flask) -> None:
    refused = app.test_cli_runner().invoke(args=[
        "moderator", "add", "--email", "root@example.org", "--admin", "--password-stdin"],
        input="\u200b" * 12 + "\n")
    assert refused.exit_code == 2
    assert f"the password must have at least {auth.MIN_PASSWORD_LENGTH} visible" in refused.output
    assert stored_account(app, "root@example.org") is None


def test_the_cli_warns_when_it_leaves_no_enabled_admin(
    app: Flask, team: dict[str, Site]
) -> None:
    """The CLI is how a locked-out team gets back in, so it makes such a change, but says so."""
    runner = app.test_cli_runner()
    warning = ("Warning: no enabled admin is left: `flask --app wsgi moderator add --admin "
               "--email EMAIL` creates one")

    def add(*flags: str) -> Any:
        return runner.invoke(args=[
            "moderator", "add", "--email", "admin@example.org", "--password-stdin", *flags],
            input=PASSWORD + "\n")

    demoted = add("--site", team["a"].key)
    assert demoted.exit_code == 0 and warning in demoted.stderr
    assert stored_account(app, "admin@example.org")["admin"] is False  # type: ignore[index]
    promoted = add("--admin")
    assert promoted.exit_code == 0 and "Warning" not in promoted.output

    quiet = runner.invoke(args=["moderator", "disable", "alice@example.org"])
    assert quiet.exit_code == 0 and "Warning" not in quiet.output
    last = runner.invoke(args=["moderator", "disable", "admin@example.org"])
    assert last.exit_code == 0 and warning in last.stderr
    assert "Disabled admin@example.org" in last.stdout
    assert "Warning" not in runner.invoke(args=["moderator", "enable", "admin@example.org"]).output
