"""The moderator dashboard: accounts, permissions, CSRF, queues, bulk actions, bans, exports."""

from __future__ import annotations

import csv
import io
import re
import urllib.parse
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from moderation import dashboard, moderation
from moderation.classifier import CommentText
from moderation.comments import comment_moderated
from moderation.db import (
    Ban,
    Comment,
    Label,
    ModerationEvent,
    Moderator,
    Report,
    Site,
    Status,
    TrustedAuthor,
    db,
    utcnow,
)
from tests import fakes
from tests.conftest import (
    PASSWORD,
    add_moderator,
    clear_tables,
    issue_key,
    make_app,
    token_from,
)


class ExplainingClassifier(fakes.KeywordClassifier):
    """The keyword classifier, also telling which words drove each score."""

    def explain(self, item: CommentText, top: int = 8) -> dict[str, list[dict[str, object]]]:
        out: dict[str, list[dict[str, object]]] = {"spam": [], "toxicity": []}
        for head, word in (("spam", "viagra"), ("toxicity", "idiot"), ("toxicity", "borderline")):
            spans = [[m.start(), m.end()] for m in re.finditer(word, item.text.lower())]
            if spans:
                out[head].append({"term": word, "field": "text", "weight": 1.0, "spans": spans})
        return out


def add_site(app: Flask, name: str, **settings: Any) -> Site:
    with app.app_context():
        site = Site(name=name, origins=[], settings=settings)
        db.session.add(site)
        db.session.commit()
        db.session.refresh(site)
        db.session.expunge(site)
    return site


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    return client.post("/dashboard/login", data={"email": email, "password": password})


def post(client: FlaskClient, site: Site, text: str, addr: str = "198.51.100.7",
         **fields: Any) -> Any:
    body = {"site": site.key, "uri": "/posts/one", "text": text, **fields}
    return client.post("/api/v1/comments", json=body, environ_base={"REMOTE_ADDR": addr})


def status_of(app: Flask, comment_id: int) -> str:
    with app.app_context():
        comment = db.session.get(Comment, comment_id)
        assert comment is not None
        return comment.status


def events(app: Flask, action: str) -> list[ModerationEvent]:
    with app.app_context():
        rows = db.session.execute(
            select(ModerationEvent).where(ModerationEvent.action == action)
            .order_by(ModerationEvent.id)
        ).scalars().all()
        db.session.expunge_all()
        return list(rows)


@pytest.fixture
def world(app: Flask) -> dict[str, Any]:
    """Two sites, an admin, a moderator of each site, and the explaining classifier."""
    app.extensions["classifier"] = fakes.ModelStatus(ExplainingClassifier(), None)  # type: ignore[arg-type]
    a = add_site(app, "Alpha")
    b = add_site(app, "Beta")
    add_moderator(app, "admin@example.org", admin=True)
    add_moderator(app, "alice@example.org", a)
    add_moderator(app, "bob@example.org", b)
    return {"a": a, "b": b}


def held(client: FlaskClient, site: Site, text: str = "a borderline remark", **kw: Any) -> int:
    response = post(client, site, text, **kw)
    assert response.status_code == 202, response.json
    return int(response.json["comment"]["id"])


# -- accounts -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/dashboard/", "/dashboard/queue/pending", "/dashboard/audit", "/dashboard/stats",
    "/dashboard/bans", "/dashboard/sites", "/dashboard/labels.csv", "/dashboard/comments/1",
    "/dashboard/sites/1/settings", "/dashboard/moderators",
])
def test_anonymous_visitors_are_sent_to_login(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/dashboard/login?next=")


def test_anonymous_posts_change_nothing(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"])
    response = client.post(f"/dashboard/comments/{comment_id}/approve")
    assert response.status_code == 302
    assert "/dashboard/login" in response.headers["Location"]
    assert status_of(app, comment_id) == Status.PENDING


def test_login_logout_and_wrong_password(client: FlaskClient, world: dict[str, Any]) -> None:
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    assert b'<label for="email">Email</label>' in page.data
    wrong = login(client, "alice@example.org", "not the password")
    assert wrong.status_code == 401
    assert b"Wrong email or password." in wrong.data
    assert login(client, "nobody@example.org").status_code == 401
    ok = client.post("/dashboard/login", data={"email": "Alice@Example.org",
                                                "password": PASSWORD,
                                                "next": "/dashboard/audit"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/dashboard/audit"
    assert client.get("/dashboard/queue/pending").status_code == 200
    client.post("/dashboard/logout")
    assert client.get("/dashboard/queue/pending").status_code == 302


def test_login_never_redirects_off_site(client: FlaskClient, world: dict[str, Any]) -> None:
    response = client.post("/dashboard/login", data={
        "email": "alice@example.org", "password": PASSWORD, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/dashboard/"


def test_password_is_stored_as_scrypt_hash(app: Flask, world: dict[str, Any]) -> None:
    with app.app_context():
        stored = db.session.execute(
            select(Moderator.password_hash).where(Moderator.email == "alice@example.org")
        ).scalar_one()
    assert stored.startswith("scrypt:") and PASSWORD not in stored


def test_moderator_cli_adds_accounts(app: Flask, world: dict[str, Any]) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["moderator", "add", "--email", "Carol@Example.org",
                                 "--site", world["a"].key, "--password-stdin"],
                           input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "Added moderator carol@example.org for Alpha" in result.output
    short = runner.invoke(args=["moderator", "add", "--email", "dan@example.org", "--admin",
                                "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least" in short.output
    nosite = runner.invoke(args=["moderator", "add", "--email", "dan@example.org",
                                 "--password-stdin"], input="a long enough password\n")
    assert nosite.exit_code != 0 and "--site" in nosite.output
    client = app.test_client()
    assert login(client, "carol@example.org", "a long enough password").status_code == 302
    prompted = runner.invoke(args=["moderator", "add", "--email", "erin@example.org", "--admin"],
                             input="another long password\nanother long password\n")
    assert prompted.exit_code == 0 and "Added admin erin@example.org for every site" in \
        prompted.output
    assert login(app.test_client(), "erin@example.org", "another long password") \
        .status_code == 302
    listed = runner.invoke(args=["moderator", "list"])
    assert "carol@example.org" in listed.output and world["a"].key in listed.output


# -- permissions ----------------------------------------------------------------------------


def test_a_moderator_cannot_see_or_act_on_another_site(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    theirs = held(client, world["a"], "a borderline remark on alpha")
    mine = held(client, world["b"], "a borderline remark on beta")
    login(client, "bob@example.org")

    queue = client.get("/dashboard/queue/pending").get_data(as_text=True)
    assert "remark on beta" in queue and "remark on alpha" not in queue
    assert client.get(f"/dashboard/queue/pending?site={world['a'].id}").status_code == 403
    assert client.get(f"/dashboard/comments/{theirs}").status_code == 404
    assert client.post(f"/dashboard/comments/{theirs}/approve").status_code == 404
    assert client.post(f"/dashboard/comments/{theirs}/edit", data={"text": "x y"}).status_code \
        == 404
    bulk = client.post("/dashboard/bulk", data={"action": "approve", "ids": [theirs, mine],
                                                "confirmed": "yes"})
    assert bulk.status_code == 404
    assert status_of(app, theirs) == status_of(app, mine) == Status.PENDING
    assert client.get(f"/dashboard/sites/{world['a'].id}/settings").status_code == 403
    assert client.get(f"/dashboard/stats?site={world['a'].id}").status_code == 403
    assert client.get("/dashboard/moderators").status_code == 403
    banned = client.post("/dashboard/bans", data={"kind": "email", "value": "x@y.example",
                                                  "site": world["a"].id, "duration": ""})
    assert banned.status_code == 403
    nosite = client.post("/dashboard/bans", data={"kind": "email", "value": "x@y.example",
                                                  "site": "", "duration": ""})
    assert nosite.status_code == 400
    assert b"only admins ban on every site" in nosite.data
    # "Everything matching" only ever reaches the moderator's own sites.
    client.post("/dashboard/bulk", data={"action": "reject", "scope": "matching",
                                         "queue": "pending", "filter": "", "confirmed": "yes"})
    assert status_of(app, theirs) == Status.PENDING
    assert status_of(app, mine) == Status.REJECTED


def test_moderators_read_settings_and_only_admins_change_them(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "alice@example.org")
    page = client.get(f"/dashboard/sites/{world['a'].id}/settings")
    assert page.status_code == 200
    assert b"Only administrators change settings" in page.data
    assert b"<fieldset disabled>" in page.data
    response = client.post(f"/dashboard/sites/{world['a'].id}/settings",
                           data=settings_form(premoderation="all"))
    assert response.status_code == 403
    with app.app_context():
        assert db.session.get(Site, world["a"].id).settings == {}  # type: ignore[union-attr]


def test_dashboard_errors_are_readable_pages(client: FlaskClient, world: dict[str, Any]) -> None:
    login(client, "alice@example.org")
    missing = client.get("/dashboard/comments/999999")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert b"404" in missing.data and b"no such comment" in missing.data.lower()
    forbidden = client.get("/dashboard/moderators")
    assert forbidden.status_code == 403 and b"Only administrators" in forbidden.data


# -- CSRF -----------------------------------------------------------------------------------


def test_forms_without_a_csrf_token_are_refused(csrf_app: Flask) -> None:
    site = add_site(csrf_app, "Alpha")
    add_moderator(csrf_app, "alice@example.org", site)
    client = csrf_app.test_client()
    # The JSON API is exempt: readers post without any token.
    comment_id = held(client, site)

    assert login(client, "alice@example.org").status_code == 400  # no token on the login form
    page = client.get("/dashboard/login").get_data(as_text=True)
    signed_in = client.post("/dashboard/login", data={"email": "alice@example.org",
                                                      "password": PASSWORD,
                                                      "csrf_token": token_from(page)})
    assert signed_in.status_code == 302

    refused = client.post(f"/dashboard/comments/{comment_id}/approve")
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    assert b"CSRF" in refused.data
    forged = client.post(f"/dashboard/comments/{comment_id}/approve",
                         data={"csrf_token": "forged"})
    assert forged.status_code == 400
    assert status_of(csrf_app, comment_id) == Status.PENDING

    queue = client.get("/dashboard/queue/pending").get_data(as_text=True)
    done = client.post(f"/dashboard/comments/{comment_id}/approve",
                       data={"csrf_token": token_from(queue)})
    assert done.status_code == 302
    assert status_of(csrf_app, comment_id) == Status.PUBLISHED


# -- throttled login ------------------------------------------------------------------------


@pytest.mark.usefixtures("steady_window")
def test_login_attempts_are_throttled_per_address(database_url: str) -> None:
    app = make_app(database_url, RATELIMIT_ENABLED=True)
    try:
        add_moderator(app, "admin@example.org", admin=True)
        client = app.test_client()
        attacker = {"REMOTE_ADDR": "203.0.113.50"}
        for _ in range(5):
            response = client.post("/dashboard/login", environ_base=attacker,
                                   data={"email": "admin@example.org", "password": "guess"})
            assert response.status_code == 401
        sixth = client.post("/dashboard/login", environ_base=attacker,
                            data={"email": "admin@example.org", "password": PASSWORD})
        assert sixth.status_code == 429
        assert sixth.mimetype == "text/html"
        assert b"Too many requests" in sixth.data
        # Reading the form is not throttled, and another address may still sign in.
        assert client.get("/dashboard/login", environ_base=attacker).status_code == 200
        other = client.post("/dashboard/login", environ_base={"REMOTE_ADDR": "192.0.2.1"},
                            data={"email": "admin@example.org", "password": PASSWORD})
        assert other.status_code == 302
    finally:
        clear_tables(app)


# -- queues and single actions --------------------------------------------------------------


def test_approving_a_held_comment_publishes_it_and_records_a_label(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"], "a borderline but fair point", author="Reader",
                      email="reader@example.org")
    login(client, "alice@example.org")
    page = client.get("/dashboard/queue/pending").get_data(as_text=True)
    assert "Reader" in page and "toxicity 0.60 ≥ hold threshold 0.50" in page
    assert '<mark class="m-toxicity" title="raises toxicity">borderline</mark>' in page
    assert "198.51.100.0" in page  # the anonymised address, never the raw one
    assert "198.51.100.7" not in page

    response = client.post(f"/dashboard/comments/{comment_id}/approve",
                           data={"next": "/dashboard/queue/pending"})
    assert response.status_code == 302
    public = client.get("/api/v1/comments",
                        query_string={"site": world["a"].key, "uri": "/posts/one"}).json
    assert [c["id"] for c in public["comments"]] == [comment_id]
    [event] = events(app, "approve")
    assert event.actor == "moderator:alice@example.org"
    assert (event.from_status, event.to_status) == ("pending", "published")
    with app.app_context():
        label = db.session.execute(select(Label)).scalar_one()
        assert (label.label, label.email, label.model_version) == (
            "ham", "reader@example.org", "test-keywords-1")


def test_without_a_model_the_text_is_shown_unhighlighted(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    app.extensions["classifier"] = fakes.ModelStatus(None, "no model")
    held(client, world["a"], "*held* <script>alert(1)</script> text")
    login(client, "alice@example.org")
    page = client.get("/dashboard/queue/pending").get_data(as_text=True)
    assert "model unavailable" in page
    assert "<p><em>held</em>" in page
    assert "<script>alert(1)</script>" not in page


def test_highlighting_escapes_the_text(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    held(client, world["a"], "borderline `<img src=x onerror=alert(1)>` & more")
    login(client, "alice@example.org")
    page = client.get("/dashboard/queue/pending").get_data(as_text=True)
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<mark class=\"m-toxicity\"" in page


def test_reported_queue_and_dismissing_reports(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    response = post(client, world["a"], "A perfectly fine comment")
    comment_id = response.json["comment"]["id"]
    assert client.post(f"/api/v1/comments/{comment_id}/report",
                       json={"reason": "abuse", "note": "rude"}).status_code in (201, 202)
    login(client, "alice@example.org")
    page = client.get("/dashboard/queue/reported").get_data(as_text=True)
    assert "A perfectly fine comment" in page and "rude" in page
    assert "Keep (dismiss reports)" in page
    kept = client.post(f"/dashboard/comments/{comment_id}/approve", follow_redirects=True)
    page = client.get("/dashboard/queue/reported").get_data(as_text=True)
    assert "A perfectly fine comment" not in page
    assert status_of(app, comment_id) == Status.PUBLISHED
    # Undoing the Keep opens the reports again.
    batch = re.search(r'name="batch" value="([^"]+)"', kept.get_data(as_text=True))
    assert batch is not None
    client.post("/dashboard/undo", data={"batch": batch.group(1)})
    page = client.get("/dashboard/queue/reported").get_data(as_text=True)
    assert "A perfectly fine comment" in page and "rude" in page


def test_filters_search_sort_and_keyset_pages(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    for i in range(30):
        held(client, world["a"], f"borderline number {i:02d}", author=f"Author {i:02d}")
    spammy = post(client, world["a"], "buy viagra now").json
    assert spammy["error"]["code"] == "rejected"
    login(client, "admin@example.org")
    first = client.get("/dashboard/queue/pending?sort=oldest").get_data(as_text=True)
    assert "30 matching" in first
    ids_first = re.findall(r'data-id="(\d+)"', first)
    assert len(ids_first) == moderation.PAGE_SIZE
    after = re.search(r'rel="next" href="([^"]+)"', first)
    assert after
    second = client.get(after.group(1).replace("&amp;", "&")).get_data(as_text=True)
    ids_second = re.findall(r'data-id="(\d+)"', second)
    assert len(ids_second) == 5 and not set(ids_first) & set(ids_second)
    assert sorted(map(int, ids_first + ids_second)) == list(map(int, ids_first + ids_second))

    newest = client.get("/dashboard/queue/pending?sort=newest").get_data(as_text=True)
    assert re.findall(r'data-id="(\d+)"', newest)[0] == ids_second[-1]
    search = client.get("/dashboard/queue/pending?q=number+07").get_data(as_text=True)
    assert "1 matching" in search and "Author 07" in search
    by_author = client.get("/dashboard/queue/pending?q=author+1&in=author").get_data(as_text=True)
    assert "10 matching" in by_author
    rejected = client.get("/dashboard/queue/rejected?min=0.9&reason=spam").get_data(as_text=True)
    assert "1 matching" in rejected and "viagra" in rejected
    assert '<mark class="m-spam"' in rejected
    none = client.get("/dashboard/queue/pending?min=0.7").get_data(as_text=True)
    assert "0 matching" in none
    bad = client.get("/dashboard/queue/pending?min=2&since=yesterday").get_data(as_text=True)
    assert "must be between 0 and 1" in bad and "must be a date like" in bad
    thread = client.get("/dashboard/queue/pending?thread=/posts/none").get_data(as_text=True)
    assert "0 matching" in thread
    garbage = client.get("/dashboard/queue/pending?after=garbage")
    assert garbage.status_code == 200 and b"not a page of this list" in garbage.data


def test_moderator_edit_is_sanitised_and_audited(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"])
    login(client, "alice@example.org")
    response = client.post(f"/dashboard/comments/{comment_id}/edit",
                           data={"text": "Fixed <script>x()</script> **text**",
                                 "reason": "removed a slur"})
    assert response.status_code == 302
    with app.app_context():
        comment = db.session.get(Comment, comment_id)
        assert comment is not None
        assert "<script>" not in comment.html and "<strong>text</strong>" in comment.html
        assert comment.edited_at is not None
    [event] = events(app, "edit")
    assert event.actor == "moderator:alice@example.org" and event.reason == "removed a slur"
    # The comment's page, reached from a filtered queue, leads back there, after a refused
    # edit too.
    queue = "/dashboard/queue/published?q=hello"
    page = client.get(f"/dashboard/comments/{comment_id}", query_string={"next": queue})
    assert f'href="{queue}">« Back to the queue' in page.get_data(as_text=True)
    here = f"/dashboard/comments/{comment_id}?" + urllib.parse.urlencode({"next": queue})
    empty = client.post(f"/dashboard/comments/{comment_id}/edit",
                        data={"text": "", "next": here})
    assert empty.status_code == 400 and b'class="field-error"' in empty.data
    assert f'href="{queue}">« Back to the queue' in empty.get_data(as_text=True)


# -- bulk actions ---------------------------------------------------------------------------


def test_bulk_reject_asks_for_confirmation_first(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    ids = [held(client, world["a"], f"borderline {i}") for i in range(4)]
    login(client, "alice@example.org")
    chosen = ids[:3]
    confirm = client.post("/dashboard/bulk", data={"action": "reject", "ids": chosen,
                                                   "queue": "pending"})
    assert confirm.status_code == 200 and b"Reject 3 comments?" in confirm.data
    assert all(status_of(app, i) == Status.PENDING for i in ids)
    done = client.post("/dashboard/bulk", data={"action": "reject", "ids": chosen,
                                                "queue": "pending", "confirmed": "yes",
                                                "reason": "pile-on"})
    assert done.status_code == 302
    assert [status_of(app, i) for i in ids] == ["rejected"] * 3 + ["pending"]
    rejections = events(app, "reject")
    assert sorted(e.comment_id for e in rejections) == chosen
    assert {e.reason for e in rejections} == {"pile-on"}
    nothing = client.post("/dashboard/bulk", data={"action": "reject", "queue": "pending"})
    assert nothing.status_code == 302
    assert client.post("/dashboard/bulk", data={"action": "nuke", "ids": ids}).status_code == 400


def test_bulk_on_everything_matching_a_filter_works_in_batches(
    app: Flask, client: FlaskClient, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moderation, "BATCH_SIZE", 4)
    spam = [held(client, world["a"], f"borderline offer {i}", author="Promo") for i in range(11)]
    keep = [held(client, world["a"], f"borderline opinion {i}", author="Reader")
            for i in range(3)]
    login(client, "alice@example.org")
    confirm = client.post("/dashboard/bulk", data={
        "action": "spam", "scope": "matching", "queue": "pending", "filter": "q=offer"})
    assert b"Spam 11 comments?" in confirm.data and b"every comment matching" in confirm.data
    upto = re.search(r'name="upto" value="(\d+)"', confirm.get_data(as_text=True))
    assert upto and int(upto.group(1)) == spam[-1]
    # A comment that arrives after the confirmation is not swept up with the others.
    late = held(client, world["a"], "borderline offer, late", author="Promo")
    done = client.post("/dashboard/bulk", data={
        "action": "spam", "scope": "matching", "queue": "pending", "filter": "q=offer",
        "confirmed": "yes", "upto": upto.group(1)})
    assert done.status_code == 302 and done.headers["Location"].endswith("?q=offer")
    assert {status_of(app, i) for i in spam} == {"spam"}
    assert {status_of(app, i) for i in keep} == {"pending"}
    assert status_of(app, late) == "pending"
    assert sorted(e.comment_id for e in events(app, "spam")) == spam
    with app.app_context():
        assert db.session.execute(
            select(func.count(Label.id)).where(Label.label == "spam")).scalar_one() == 11
    bad = client.post("/dashboard/bulk", data={
        "action": "spam", "scope": "matching", "queue": "pending", "filter": "min=7",
        "confirmed": "yes"})
    assert bad.status_code == 400


def test_a_long_bulk_stops_in_time_and_says_how_many_are_left(
    app: Flask, client: FlaskClient, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moderation, "BATCH_SIZE", 4)
    monkeypatch.setattr(dashboard, "BULK_SECONDS", 0.0)
    ids = [held(client, world["a"], f"borderline {i}") for i in range(10)]
    login(client, "alice@example.org")
    form = {"action": "reject", "scope": "matching", "queue": "pending", "filter": "",
            "confirmed": "yes"}
    page = client.post("/dashboard/bulk", data=form, follow_redirects=True)
    text = page.get_data(as_text=True)
    assert "4 comments rejected." in text
    assert "6 more still match" in text
    assert [status_of(app, i) for i in ids] == ["rejected"] * 4 + ["pending"] * 6
    text = client.post("/dashboard/bulk", data=form, follow_redirects=True).get_data(
        as_text=True)
    assert "4 comments rejected." in text and "2 more still match" in text
    last = client.post("/dashboard/bulk", data=form, follow_redirects=True)
    text = last.get_data(as_text=True)
    assert "2 comments rejected." in text and "still match" not in text
    assert {status_of(app, i) for i in ids} == {"rejected"}
    # The three requests were one click: Undo puts all ten back.
    undone = client.post("/dashboard/undo", data={"batch": _undo_of(last)},
                         follow_redirects=True)
    assert "Undone: 10 comments back where they were." in undone.get_data(as_text=True)
    assert {status_of(app, i) for i in ids} == {"pending"}


def test_a_long_bulk_that_keeps_comments_in_their_queue_carries_on_where_it_stopped(
    app: Flask, client: FlaskClient, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reject on the Spam/rejected queue leaves the comments in that queue: each retry must
    # still reach the ones not yet done instead of redoing the first batch.
    monkeypatch.setattr(moderation, "BATCH_SIZE", 2)
    monkeypatch.setattr(dashboard, "BULK_SECONDS", 0.0)
    ids = [held(client, world["a"], f"borderline {i}") for i in range(6)]
    login(client, "alice@example.org")
    marked = client.post("/dashboard/bulk", data={"action": "spam", "ids": ids,
                                                  "queue": "pending", "confirmed": "yes"})
    assert marked.status_code == 302 and {status_of(app, i) for i in ids} == {"spam"}
    form = {"action": "reject", "scope": "matching", "queue": "rejected", "filter": "",
            "confirmed": "yes"}
    confirm = client.post("/dashboard/bulk", data={**form, "confirmed": ""})
    assert b"Reject 6 comments?" in confirm.data
    said = []
    for _ in range(3):
        page = client.post("/dashboard/bulk", data=form, follow_redirects=True)
        said.append(page.get_data(as_text=True))
    assert "2 comments rejected." in said[0] and "4 more still match" in said[0]
    assert "2 comments rejected." in said[1] and "2 more still match" in said[1]
    assert "2 comments rejected." in said[2] and "still match" not in said[2]
    assert {status_of(app, i) for i in ids} == {"rejected"}
    assert sorted(e.comment_id for e in events(app, "reject")) == ids


def test_confirming_the_models_decision_is_recorded_once(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    published = post(client, world["a"], "A lovely post, thanks")
    assert published.status_code == 201
    comment_id = published.json["comment"]["id"]
    login(client, "alice@example.org")
    first = client.post(f"/dashboard/comments/{comment_id}/approve", follow_redirects=True)
    assert f"Comment #{comment_id} approved." in first.get_data(as_text=True)
    again = client.post(f"/dashboard/comments/{comment_id}/approve", follow_redirects=True)
    assert "nothing changed" in again.get_data(as_text=True)
    [event] = events(app, "approve")
    assert (event.comment_id, event.from_status, event.to_status) == (
        comment_id, "published", "published")
    with app.app_context():
        labels = db.session.execute(select(Label.comment_id, Label.label)).all()
    assert [tuple(row) for row in labels] == [(comment_id, "ham")]


def test_a_click_can_be_undone_within_the_hour(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    ids = [held(client, world["a"], f"borderline {i}") for i in range(3)]
    login(client, "alice@example.org")
    done = client.post("/dashboard/bulk", follow_redirects=True, data={
        "action": "spam", "ids": ids, "queue": "pending", "confirmed": "yes"})
    page = done.get_data(as_text=True)
    assert "3 comments marked as spam." in page and ">Undo</button>" in page
    batch = re.search(r'name="batch" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    # Another moderator moves one on meanwhile: that one stays where they put it.
    client.post("/dashboard/logout")
    login(client, "admin@example.org")
    client.post(f"/dashboard/comments/{ids[0]}/approve")
    assert client.post("/dashboard/undo", data={"batch": batch}, follow_redirects=True) \
        .get_data(as_text=True).count("Nothing to undo") == 1  # not theirs to undo
    client.post("/dashboard/logout")
    login(client, "alice@example.org")
    undone = client.post("/dashboard/undo", data={"batch": batch}, follow_redirects=True)
    assert "Undone: 2 comments back where they were (1 changed since" in undone.get_data(
        as_text=True)
    with app.app_context():
        statuses = dict(db.session.execute(
            select(Comment.id, Comment.status).where(Comment.id.in_(ids))).all())
        spam_labels = db.session.execute(
            select(func.count(Label.id)).where(Label.label == "spam")).scalar_one()
    assert statuses == {ids[0]: "published", ids[1]: "pending", ids[2]: "pending"}
    assert spam_labels == 1  # the undone decisions teach the model nothing
    assert [(e.comment_id, e.from_status, e.to_status) for e in events(app, "undo")] == [
        (ids[1], "spam", "pending"), (ids[2], "spam", "pending")]
    # Undoing twice changes nothing more.
    again = client.post("/dashboard/undo", data={"batch": batch}, follow_redirects=True)
    assert "Undone: 0 comments" in again.get_data(as_text=True)


def _undo_of(response: Any) -> str:
    found = re.search(r'name="batch" value="([^"]+)"', response.get_data(as_text=True))
    assert found is not None, "the message offers Undo"
    return found.group(1)


def test_undo_leaves_what_others_changed_since_and_works_once(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    held_id = held(client, world["a"])
    published = post(client, world["a"], "A perfectly fine comment").json["comment"]["id"]
    login(client, "alice@example.org")
    spammed = _undo_of(client.post(f"/dashboard/comments/{held_id}/spam", follow_redirects=True))
    # The admin decides otherwise, then back to spam: the status is the same, but it is theirs.
    client.post("/dashboard/logout")
    login(client, "admin@example.org")
    client.post(f"/dashboard/comments/{held_id}/approve")
    client.post(f"/dashboard/comments/{held_id}/spam")
    # A reader report the admin dismisses, then one Alice dismisses.
    client.post(f"/api/v1/comments/{published}/report", json={"reason": "abuse", "note": "r1"})
    client.post(f"/dashboard/comments/{published}/approve")
    client.post(f"/api/v1/comments/{published}/report", json={"reason": "abuse", "note": "r2"})
    client.post("/dashboard/logout")
    login(client, "alice@example.org")
    later = client.post("/dashboard/undo", data={"batch": spammed}, follow_redirects=True)
    assert "Undone: 0 comments back where they were (1 changed since" in later.get_data(
        as_text=True)
    assert status_of(app, held_id) == Status.SPAM
    kept = _undo_of(client.post(f"/dashboard/comments/{published}/approve",
                                follow_redirects=True))
    client.post("/dashboard/undo", data={"batch": kept})
    again = client.post("/dashboard/undo", data={"batch": kept}, follow_redirects=True)
    assert "Nothing to undo" in again.get_data(as_text=True)  # once is enough
    assert len(events(app, "undo")) == 1
    with app.app_context():
        still_open = db.session.execute(
            select(Report.note).where(Report.resolved_at.is_(None))).scalars().all()
    assert still_open == ["r2"]  # not the report the admin dismissed
    # The undone confirmation can be given again, and is a label again.
    client.post(f"/dashboard/comments/{published}/approve")
    with app.app_context():
        hams = db.session.execute(select(Label.source).where(
            Label.comment_id == published, Label.label == "ham")).scalars().all()
    assert hams == ["moderator:admin@example.org", "moderator:alice@example.org"]


def test_undo_puts_back_the_decision_time_the_api_shows(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    key = issue_key(app, world["a"])

    def seen(comment_id: int) -> tuple[str, str | None]:
        """The comment's status and decision time, as the site's server reads them."""
        body = client.get(f"/api/v1/manage/comments/{comment_id}",
                          headers={"Authorization": f"Bearer {key}"}).get_json()
        return body["comment"]["status"], body["comment"]["decided"]

    waiting = [held(client, world["a"]) for _ in range(3)]
    shown = post(client, world["a"], "A perfectly fine comment").json["comment"]["id"]
    published_at = seen(shown)[1]
    assert published_at is not None
    login(client, "alice@example.org")
    # One action, one bulk action and a report dismissed (Keep): each click is undone.
    clicks = [
        _undo_of(client.post(f"/dashboard/comments/{waiting[0]}/reject",
                             follow_redirects=True)),
        _undo_of(client.post("/dashboard/bulk", follow_redirects=True, data={
            "action": "approve", "ids": waiting[1:], "queue": "pending", "confirmed": "yes"})),
    ]
    client.post(f"/api/v1/comments/{shown}/report", json={"reason": "abuse"})
    clicks.append(_undo_of(client.post(f"/dashboard/comments/{shown}/approve",
                                       follow_redirects=True)))
    assert all(seen(i)[1] is not None for i in waiting)
    assert seen(shown)[1] != published_at
    for batch in clicks:
        client.post("/dashboard/undo", data={"batch": batch})
    # Held comments are undecided again; the reported one was decided when it was published.
    assert [seen(i) for i in waiting] == [("pending", None)] * 3
    assert seen(shown) == ("published", published_at)


def test_undo_of_a_click_that_kept_no_decision_time_dates_it_the_undo(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    # Clicks made before the decision time was kept in the audit row: Undo does as it did.
    waiting = held(client, world["a"])
    login(client, "alice@example.org")
    batch = _undo_of(client.post(f"/dashboard/comments/{waiting}/spam", follow_redirects=True))
    with app.app_context():
        [event] = db.session.execute(select(ModerationEvent).where(
            ModerationEvent.action == "spam")).scalars().all()
        event.details = {"batch": batch, "reports": []}
        db.session.commit()
    before = utcnow()
    client.post("/dashboard/undo", data={"batch": batch})
    with app.app_context():
        comment = db.session.get(Comment, waiting)
        assert comment is not None and comment.status == Status.PENDING
        assert comment.decided_at is not None and comment.decided_at >= before


def test_deleted_comments_are_listed_and_can_be_restored(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    kept = post(client, world["a"], "A fair point about the budget").json["comment"]["id"]
    login(client, "alice@example.org")
    client.post(f"/dashboard/comments/{kept}/delete")
    listing = client.get("/dashboard/queue/deleted?q=budget").get_data(as_text=True)
    assert f'id="c{kept}"' in listing and "Restore (publish)" in listing
    assert ">Delete<" not in listing.split(f'id="c{kept}"')[1]
    restored = client.post(f"/dashboard/comments/{kept}/approve", follow_redirects=True)
    assert f"Comment #{kept} approved." in restored.get_data(as_text=True)
    thread = client.get("/api/v1/comments",
                        query_string={"site": world["a"].key, "uri": "/posts/one"}).json
    assert [c["id"] for c in thread["comments"]] == [kept]
    assert f'id="c{kept}"' not in client.get("/dashboard/queue/deleted").get_data(as_text=True)


def test_repeating_an_action_writes_no_second_audit_row_label_or_webhook(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    ids = [held(client, world["a"], f"borderline {i}") for i in range(3)]
    login(client, "alice@example.org")
    form = {"action": "approve", "ids": ids, "queue": "pending", "confirmed": "yes"}
    notified: list[int] = []

    def notify(comment: Comment, **_: Any) -> None:
        notified.append(comment.id)

    with comment_moderated.connected_to(notify):
        assert client.post("/dashboard/bulk", data=form).status_code == 302
        # The same form again, as from a double click or a stale page.
        again = client.post("/dashboard/bulk", data=form, follow_redirects=True)
        once = client.post(f"/dashboard/comments/{ids[0]}/spam", follow_redirects=True)
        twice = client.post(f"/dashboard/comments/{ids[0]}/spam", follow_redirects=True)
    assert notified == [*ids, ids[0]]
    assert "0 comments approved (3 needed no change)." in again.get_data(as_text=True)
    assert f"Comment #{ids[0]} marked as spam." in once.get_data(as_text=True)
    assert f"Comment #{ids[0]} was already spam: nothing changed." in twice.get_data(
        as_text=True)
    assert sorted(e.comment_id for e in events(app, "approve")) == ids
    assert [e.comment_id for e in events(app, "spam")] == [ids[0]]
    with app.app_context():
        labels = db.session.execute(
            select(Label.comment_id, Label.label).order_by(Label.id)).all()
        assert [tuple(row) for row in labels] == [(i, "ham") for i in ids] + [(ids[0], "spam")]


# -- bans and trust -------------------------------------------------------------------------


def test_banning_an_email_rejects_their_next_post(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"], email="Troll@Example.org")
    login(client, "alice@example.org")
    page = client.get(f"/dashboard/comments/{comment_id}").get_data(as_text=True)
    assert "Ban this author" in page and "troll@example.org" in page.lower()
    response = client.post("/dashboard/bans", data={
        "kind": "email", "value": "TROLL@example.org", "site": world["a"].id,
        "duration": "", "reason": "abuse", "comment": comment_id})
    assert response.status_code == 302
    again = post(client, world["a"], "Totally nice words", email="troll@example.org")
    assert again.status_code == 422
    elsewhere = post(client, world["b"], "Totally nice words", email="troll@example.org")
    assert elsewhere.status_code == 201
    [event] = events(app, "ban")
    assert event.reason == "email troll@example.org: abuse" and event.comment_id == comment_id
    bans_page = client.get("/dashboard/bans").get_data(as_text=True)
    assert "troll@example.org" in bans_page and "permanent" in bans_page


def test_timed_bans_expire_and_bans_can_be_lifted(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "admin@example.org")
    client.post("/dashboard/bans", data={"kind": "domain", "value": "https://spam.example/x",
                                         "site": "", "duration": "1"})
    client.post("/dashboard/bans", data={"kind": "addr", "value": "203.0.113.77",
                                         "site": world["a"].id, "duration": ""})
    with app.app_context():
        stored = {b.kind: b for b in db.session.execute(select(Ban)).scalars()}
        assert stored["domain"].value == "spam.example" and stored["domain"].site_id is None
        assert stored["domain"].expires_at is not None
        assert stored["addr"].value == "203.0.113.0"
        domain_ban, addr_ban = stored["domain"].id, stored["addr"].id
    by_domain = post(client, world["b"], "Nice post", website="https://www.spam.example/")
    assert by_domain.status_code == 422
    by_addr = post(client, world["a"], "Nice post", addr="203.0.113.5")
    assert by_addr.status_code == 422
    with app.app_context():
        entry = db.session.get(Ban, domain_ban)
        assert entry is not None
        entry.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert post(client, world["b"], "Nice post", website="https://www.spam.example/") \
        .status_code == 201
    assert client.post(f"/dashboard/bans/{addr_ban}/lift").status_code == 302
    assert post(client, world["a"], "Nice post", addr="203.0.113.5").status_code == 201
    assert [e.reason for e in events(app, "unban")] == ["addr 203.0.113.0"]
    page = client.get("/dashboard/bans").get_data(as_text=True)
    assert "(ended)" in page


def test_repeated_bans_merge_and_lifting_ends_every_copy(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "admin@example.org")
    site = world["a"].id
    for duration in ("1", "1", "30"):  # a repeat changes nothing; a longer ban extends
        client.post("/dashboard/bans", data={"kind": "email", "value": "troll@example.org",
                                             "site": site, "duration": duration})
    with app.app_context():
        [entry] = db.session.execute(select(Ban)).scalars().all()
        assert entry.expires_at is not None and entry.expires_at > utcnow() + timedelta(days=29)
        # A copy stacked by an older version is ended with it.
        db.session.add(Ban(site_id=site, kind="email", value="troll@example.org",
                           created_by="moderator:old"))
        db.session.commit()
        ban_id = entry.id
    assert [e.reason.split(" until")[0] for e in events(app, "ban")] == [
        "email troll@example.org", "email troll@example.org"]
    assert post(client, world["a"], "Hello", email="troll@example.org").status_code == 422
    assert client.post(f"/dashboard/bans/{ban_id}/lift").status_code == 302
    assert post(client, world["a"], "Hello", email="troll@example.org").status_code == 201


def test_a_domain_ban_applies_among_many_linked_hosts(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "admin@example.org")
    client.post("/dashboard/bans", data={"kind": "domain", "value": "zz-spam.example",
                                         "site": "", "duration": ""})
    # Six hosts and their parent domains come before the banned one in the lookup.
    links = " ".join(f"https://a{i}.site{i}.example/" for i in range(6))
    assert post(client, world["a"], f"Read {links}").status_code == 202
    banned = post(client, world["a"], f"Read {links} and https://www.zz-spam.example/buy")
    assert banned.status_code == 422


def test_invalid_bans_name_the_field_and_store_nothing(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "alice@example.org")
    for kind, value in (("email", "not-an-email"), ("addr", "999.1.1.1"),
                        ("domain", "no spaces.example"), ("email", "")):
        response = client.post("/dashboard/bans", data={
            "kind": kind, "value": value, "site": world["a"].id, "duration": ""})
        assert response.status_code == 400
        assert b'id="value-error"' in response.data
    odd = client.post("/dashboard/bans", data={"kind": "email", "value": "a@b.example",
                                               "site": world["a"].id, "duration": "9999"})
    assert odd.status_code == 400 and b'id="duration-error"' in odd.data
    with app.app_context():
        assert db.session.execute(select(func.count(Ban.id))).scalar_one() == 0


def test_trusted_authors_skip_holding(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"], author="Regular", email="regular@example.org")
    login(client, "alice@example.org")
    assert client.post(f"/dashboard/comments/{comment_id}/trust").status_code == 302
    again = post(client, world["a"], "another borderline take", author="Regular",
                 email="regular@example.org")
    assert again.status_code == 201
    assert [e.action for e in events(app, "trust")] == ["trust"]
    with app.app_context():
        entry = db.session.execute(select(TrustedAuthor)).scalar_one()
        entry_id = entry.id
    client.post(f"/dashboard/trusted/{entry_id}/remove")
    assert post(client, world["a"], "one more borderline take", author="Regular",
                email="regular@example.org").status_code == 202


# -- audit, stats, labels -------------------------------------------------------------------


def test_audit_log_lists_and_filters_actions(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    first = held(client, world["a"])
    second = held(client, world["a"])
    login(client, "alice@example.org")
    client.post(f"/dashboard/comments/{first}/approve")
    client.post(f"/dashboard/comments/{second}/spam")
    page = client.get("/dashboard/audit").get_data(as_text=True)
    assert "moderator:alice@example.org" in page and "pending → published" in page
    only_spam = client.get("/dashboard/audit?action=spam").get_data(as_text=True)
    assert f"#{second}" in only_spam and f"#{first}<" not in only_spam
    by_comment = client.get(f"/dashboard/audit?comment={first}").get_data(as_text=True)
    assert "submit" in by_comment and "approve" in by_comment
    assert b"is not a known action" in client.get("/dashboard/audit?action=nuke").data


def test_stats_page_draws_charts(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    held(client, world["a"])
    post(client, world["a"], "buy viagra")
    post(client, world["a"], "fine words")
    login(client, "alice@example.org")
    page = client.get(f"/dashboard/stats?site={world['a'].id}&days=7").get_data(as_text=True)
    assert page.count('<svg class="chart"') == 6
    assert 'class="threshold hold"' in page and "hold 0.50" in page and "reject 0.90" in page
    assert '<rect class="s-published"' in page and '<rect class="s-spam"' in page
    assert client.get("/dashboard/stats?days=3").status_code == 200


def test_labels_export_from_the_cli_and_the_dashboard(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    mine = held(client, world["a"], "=HYPERLINK(borderline)", author="Ann",
                email="ann@example.org")
    other = held(client, world["b"], "borderline on beta")
    login(client, "admin@example.org")
    client.post(f"/dashboard/comments/{mine}/spam")
    client.post(f"/dashboard/comments/{other}/approve")

    result = app.test_cli_runner().invoke(args=["model", "export-labels"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["text"], r["label"]) for r in rows] == [
        ("=HYPERLINK(borderline)", "spam"), ("borderline on beta", "ham")]
    assert rows[0]["author"] == "Ann" and rows[0]["email"] == "ann@example.org"
    assert rows[0]["toxicity"] == "0.6" and rows[0]["model_version"] == "test-keywords-1"
    assert rows[0]["source"] == "moderator:admin@example.org"

    client.post("/dashboard/logout")
    login(client, "alice@example.org")
    download = client.get("/dashboard/labels.csv")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert [(r["text"], r["label"]) for r in rows] == [("'=HYPERLINK(borderline)", "spam")]


# -- settings -------------------------------------------------------------------------------


def settings_form(**overrides: str) -> dict[str, str]:
    form = {
        "spam_hold": "0.5", "spam_reject": "0.9", "toxicity_hold": "0.5",
        "toxicity_reject": "0.9", "premoderation": "none", "max_links": "3",
        "new_commenter_holds": "1", "banned_words": "", "suspect_words": "",
        "origins": "https://blog.example",
    }
    form.update(overrides)
    return form


@pytest.mark.parametrize(("field", "value", "message"), [
    ("limit_post", "5 per fortnight", "is not a limit like"),
    ("spam_hold", "0.95", "must be below the reject threshold"),
    ("toxicity_reject", "1.5", "must be between 0 and 1"),
    ("max_links", "-1", "must be between 0 and 100"),
    ("origins", "blog.example/path", "is not an origin"),
    ("premoderation", "sometimes", "must be one of"),
])
def test_invalid_settings_show_the_error_by_the_field_and_save_nothing(
    app: Flask, client: FlaskClient, world: dict[str, Any], field: str, value: str,
    message: str,
) -> None:
    login(client, "admin@example.org")
    response = client.post(f"/dashboard/sites/{world['a'].id}/settings",
                           data=settings_form(**{field: value}))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'id="{field}-error">' in page and message in page
    assert "Nothing was saved" in page
    with app.app_context():
        site = db.session.get(Site, world["a"].id)
        assert site is not None and site.settings == {} and site.origins == []


def test_saved_settings_change_what_happens_to_new_comments(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "admin@example.org")
    page = client.get(f"/dashboard/sites/{world['a'].id}/settings").get_data(as_text=True)
    assert f'data-site=&#34;{world["a"].key}&#34;' in page  # the embed snippet, escaped
    response = client.post(f"/dashboard/sites/{world['a'].id}/settings", data=settings_form(
        premoderation="all", banned_words="scam\n骗子\n", limit_post="5/minute;50/day"))
    assert response.status_code == 302
    with app.app_context():
        site = db.session.get(Site, world["a"].id)
        assert site is not None
        assert site.settings["premoderation"] == "all"
        assert site.settings["banned_words"] == ["scam", "骗子"]
        assert site.settings["limits"] == {"post": "5/minute;50/day"}
        assert site.origins == ["https://blog.example"]
        # Thresholds equal to the model's are not pinned on the site.
        assert site.settings["thresholds"] == {}
    assert post(client, world["a"], "A lovely post").status_code == 202
    assert post(client, world["a"], "你是骗子").status_code == 422
    [event] = events(app, "settings")
    assert event.actor == "moderator:admin@example.org" and "premoderation" in event.reason
    client.post(f"/dashboard/sites/{world['a'].id}/settings", data=settings_form(
        toxicity_hold="0.7"))
    assert post(client, world["a"], "A borderline post").status_code == 201
    with app.app_context():
        site = db.session.get(Site, world["a"].id)
        assert site is not None
        assert site.settings["thresholds"] == {"toxicity": {"hold": 0.7, "reject": 0.9}}


def test_the_audit_trail_keeps_what_an_edit_or_a_settings_change_replaced(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    created = post(client, world["a"], "You are a total <b>clown</b>, borderline", author="Ann")
    comment_id, token = created.json["comment"]["id"], created.json["edit_token"]
    # The author edits the insult away after being reported ...
    edited = client.patch(f"/api/v1/comments/{comment_id}", json={"text": "I disagree, borderline"},
                          headers={"X-Edit-Token": token},
                          environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert edited.status_code == 202, edited.json  # still held
    # ... and a moderator tidies it further.
    login(client, "admin@example.org")
    client.post(f"/dashboard/comments/{comment_id}/edit", data={"text": "I disagree."})
    page = client.get(f"/dashboard/comments/{comment_id}").get_data(as_text=True)
    assert page.count("What it replaced") == 2
    assert "You are a total &lt;b&gt;clown&lt;/b&gt;, borderline" in page  # escaped, kept
    assert "I disagree, borderline" in page
    client.post(f"/dashboard/sites/{world['a'].id}/settings", data=settings_form(
        banned_words="scam\n骗子\n"))
    audit = client.get("/dashboard/audit", query_string={"action": "settings"})
    text = audit.get_data(as_text=True)
    assert "What it changed" in text and "banned_words" in text
    assert ('<dt>banned_words</dt>\n          <dd><span class="was">[]</span> → '
            '<span class="now">[&#34;scam&#34;, &#34;骗子&#34;]</span>') in text
    # Only what changed: defaults stored for the first time are not changes.
    assert "changed banned_words, origins" in text and "max_links" not in text
    assert "<th scope=\"col\">Site</th>" in text and '<td data-label="Site">Alpha</td>' in text


def test_admins_list_sites_and_moderators_and_add_sites(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "admin@example.org")
    people = client.get("/dashboard/moderators").get_data(as_text=True)
    assert "bob@example.org" in people and "Beta" in people
    assert "<strong>disabled</strong>" not in people

    def disable_bob(when: Any) -> None:
        with app.app_context():
            bob = db.session.execute(select(Moderator).filter_by(email="bob@example.org"))
            bob.scalar_one().disabled_at = when
            db.session.commit()

    disable_bob(utcnow())
    people = client.get("/dashboard/moderators").get_data(as_text=True)
    bob_row = next(row for row in people.split("<article") if "bob@example.org" in row)
    assert "<strong>disabled</strong>" in bob_row
    disable_bob(None)
    added = client.post("/dashboard/sites", data={"name": "Gamma",
                                                  "origins": "https://gamma.example"})
    assert added.status_code == 302
    listing = client.get("/dashboard/sites").get_data(as_text=True)
    assert "Gamma" in listing and "https://gamma.example" in listing
    bad = client.post("/dashboard/sites", data={"name": "", "origins": "nope"})
    assert bad.status_code == 400 and b'id="name-error"' in bad.data
    client.post("/dashboard/logout")
    login(client, "bob@example.org")
    assert client.post("/dashboard/sites", data={"name": "Delta"}).status_code == 403
    assert "Gamma" not in client.get("/dashboard/sites").get_data(as_text=True)


def test_database_and_server_failures_are_readable_pages(
    app: Flask, client: FlaskClient, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    login(client, "alice@example.org")

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(moderation, "queue_page", down)
    unavailable = client.get("/dashboard/queue/pending")
    assert unavailable.status_code == 503 and unavailable.mimetype == "text/html"
    assert b"The database is unavailable" in unavailable.data

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(moderation, "queue_page", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    failed = client.get("/dashboard/queue/pending")
    assert failed.status_code == 500 and failed.mimetype == "text/html"
    assert b"500 \xe2\x80\x94 Server error" in failed.data and b"bug" not in failed.data


def test_highlights_mark_whole_words_of_the_strongest_terms_only() -> None:
    from moderation.dashboard import highlight, strongest

    text = "You are a stupid idiot <b>, 滚出去"
    explanation = {
        "toxicity": [
            {"term": "idi", "field": "text", "weight": 2.0, "spans": [[17, 20]]},
            {"term": "stup", "field": "text", "weight": 1.5, "spans": [[10, 14]]},
            {"term": "滚出", "field": "text", "weight": 1.0, "spans": [[28, 30]]},
            {"term": "You", "field": "text", "weight": 0.1, "spans": [[0, 3]]},
            {"term": "X", "field": "author", "weight": 0.9, "spans": [[0, 1]]},
        ],
        "spam": [{"term": "are", "field": "text", "weight": 3.0, "spans": [[4, 7]]}],
        "insult": [{"term": "a", "field": "text", "weight": 3.0, "spans": [[8, 9]]}],
    }
    chosen = strongest(explanation, {"spam": 0.01, "toxicity": 0.99, "insult": 0.99})
    assert list(chosen) == ["toxicity"]  # low scores and side attributes are not marked
    assert [t["term"] for t in chosen["toxicity"]] == ["idi", "stup", "滚出", "X"]
    marked = str(highlight(text, chosen))
    assert marked == (
        'You are a <mark class="m-toxicity" title="raises toxicity">stupid</mark> '
        '<mark class="m-toxicity" title="raises toxicity">idiot</mark> &lt;b&gt;, '
        '<mark class="m-toxicity" title="raises toxicity">滚出</mark>去'
    )


def test_a_password_reset_ends_open_sessions(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "alice@example.org")
    assert client.get("/dashboard/queue/pending").status_code == 200
    with client.session_transaction() as session:
        assert all("scrypt" not in str(v) for v in session.values())
    result = app.test_cli_runner().invoke(args=[
        "moderator", "add", "--email", "alice@example.org", "--site", world["a"].key,
        "--password-stdin"], input="a brand new password\n")
    assert result.exit_code == 0 and "Updated moderator" in result.output
    assert client.get("/dashboard/queue/pending").status_code == 302


def test_published_lists_newest_first_and_pending_by_priority(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    older = post(client, world["a"], "first fine comment").json["comment"]["id"]
    newer = post(client, world["a"], "second fine comment").json["comment"]["id"]
    mild = held(client, world["a"], "a borderline remark")
    login(client, "alice@example.org")
    page = client.get("/dashboard/queue/published").get_data(as_text=True)
    assert re.findall(r'data-id="(\d+)"', page) == [str(newer), str(older)]
    assert '<option value="newest" selected>' in page
    pending = client.get("/dashboard/queue/pending").get_data(as_text=True)
    assert re.findall(r'data-id="(\d+)"', pending) == [str(mild)]
    assert '<option value="priority" selected>' in pending


def test_site_root_leads_to_the_dashboard(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/dashboard/")


# -- odd numbers in URLs and forms ----------------------------------------------------------

HUGE = "99999999999999999999"


def test_ids_past_the_integer_range_are_not_found(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "admin@example.org")
    for method, path in (
        ("GET", f"/dashboard/comments/{HUGE}"),
        ("POST", f"/dashboard/comments/{HUGE}/approve"),
        ("POST", f"/dashboard/comments/{HUGE}/edit"),
        ("POST", f"/dashboard/comments/{HUGE}/trust"),
        ("GET", f"/dashboard/sites/{HUGE}/settings"),
        ("POST", f"/dashboard/bans/{HUGE}/lift"),
        ("POST", f"/dashboard/trusted/{HUGE}/remove"),
    ):
        response = client.open(path, method=method)
        assert response.status_code == 404, path
        assert response.mimetype == "text/html" and b"404" in response.data


@pytest.mark.parametrize("path", [
    f"/dashboard/queue/pending?site={HUGE}",
    f"/dashboard/audit?site={HUGE}",
    f"/dashboard/audit?comment={HUGE}",
    f"/dashboard/stats?site={HUGE}",
])
def test_huge_numbers_in_filters_are_named_by_the_field(
    client: FlaskClient, world: dict[str, Any], path: str
) -> None:
    login(client, "admin@example.org")
    response = client.get(path)
    assert response.status_code == 200
    assert 'id="site-error"' in response.get_data(as_text=True) or \
        'id="comment-error"' in response.get_data(as_text=True)
    assert b"must be between 1 and 2147483647" in response.data


def test_a_huge_audit_page_link_shows_the_newest_entries(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"])
    login(client, "admin@example.org")
    response = client.get(f"/dashboard/audit?before={HUGE}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'id="before-error"' in page and "showing the newest entries" in page
    assert f"#{comment_id}<" in page


@pytest.mark.parametrize("fields", [
    {"ids": [HUGE]},
    {"ids": ["²"]},
    {"ids": ["1", "٣"]},
    {"scope": "matching", "upto": "²"},
    {"scope": "matching", "upto": HUGE},
])
def test_bulk_refuses_odd_ids_with_a_readable_page_and_changes_nothing(
    app: Flask, client: FlaskClient, world: dict[str, Any], fields: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"])
    login(client, "admin@example.org")
    response = client.post("/dashboard/bulk", data={
        "action": "reject", "queue": "pending", "filter": "", "confirmed": "yes", **fields})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert b"is not a comment id" in response.data
    assert status_of(app, comment_id) == Status.PENDING
    assert events(app, "reject") == []


def test_bulk_filter_with_a_huge_site_is_refused(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"])
    login(client, "admin@example.org")
    response = client.post("/dashboard/bulk", data={
        "action": "reject", "queue": "pending", "scope": "matching", "filter": f"site={HUGE}",
        "confirmed": "yes"})
    assert response.status_code == 400
    assert b"site must be between 1 and 2147483647" in response.data
    assert status_of(app, comment_id) == Status.PENDING


@pytest.mark.parametrize(("field", "value", "status", "message"), [
    ("site", "²", 404, b"No such site."),
    ("site", HUGE, 404, b"No such site."),
    ("comment", "²", 400, b"is not a comment of the site chosen for this ban"),
    ("comment", HUGE, 400, b"is not a comment of the site chosen for this ban"),
])
def test_ban_form_refuses_odd_site_and_comment_values(
    app: Flask, client: FlaskClient, world: dict[str, Any], field: str, value: str,
    status: int, message: bytes,
) -> None:
    login(client, "alice@example.org")
    form = {"kind": "email", "value": "troll@example.org", "site": str(world["a"].id),
            "duration": "", "reason": "abuse", field: value}
    response = client.post("/dashboard/bans", data=form)
    assert response.status_code == status and response.mimetype == "text/html"
    assert message in response.data
    if status == 400:  # the form comes back with what was typed
        assert b'value="troll@example.org"' in response.data and b'value="abuse"' in response.data
    with app.app_context():
        assert db.session.execute(select(func.count(Ban.id))).scalar_one() == 0
    assert events(app, "ban") == []


def test_until_the_last_day_there_is_lists_everything(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"])
    login(client, "admin@example.org")
    queue = client.get("/dashboard/queue/pending?until=9999-12-31")
    assert queue.status_code == 200 and b"1 matching" in queue.data
    assert f'data-id="{comment_id}"'.encode() in queue.data
    audit = client.get("/dashboard/audit?until=9999-12-31&since=0001-01-01")
    assert audit.status_code == 200 and f"#{comment_id}<".encode() in audit.data


@pytest.mark.parametrize(("sort", "values"), [
    ("newest", ["2026-01-01T00:00:00", 5]),  # a naive time
    ("newest", ["2026-01-01T00:00:00+00:00", 10 ** 30]),
    ("oldest", ["2026-01-01T00:00:00+00:00", 1.5]),
    ("oldest", [12, 5]),
    ("priority", [float("nan"), "2026-01-01T00:00:00+00:00", 5]),
    ("priority", [0.5, "2026-01-01T00:00:00+00:00", float("inf")]),
    ("priority", [0.5, "2026-01-01T00:00:00", 5]),
    ("newest", ["0001-01-01T00:00:00+01:00", 5]),  # before year 1 in UTC
    ("priority", [0.5, "9999-12-31T23:59:59-01:00", 5]),  # after year 9999 in UTC
])
def test_tampered_page_cursors_show_the_first_page(
    client: FlaskClient, world: dict[str, Any], sort: str, values: list[Any]
) -> None:
    import base64
    import json

    comment_id = held(client, world["a"])
    login(client, "admin@example.org")
    token = base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")
    response = client.get(f"/dashboard/queue/pending?sort={sort}&after={token}")
    assert response.status_code == 200
    assert b"not a page of this list; showing the first page" in response.data
    assert f'data-id="{comment_id}"'.encode() in response.data
    deep = "[" * 5000
    nested = base64.urlsafe_b64encode(deep.encode()).decode().rstrip("=")
    assert client.get(f"/dashboard/queue/pending?after={nested}").status_code == 200


def test_control_characters_in_search_fields_are_dropped(
    client: FlaskClient, world: dict[str, Any]
) -> None:
    comment_id = held(client, world["a"], "a borderline remark about ab")
    login(client, "admin@example.org")
    for field in ("q", "reason", "thread"):
        found = client.get("/dashboard/queue/pending", query_string={field: "a\x00b"})
        assert found.status_code == 200, field
    hit = client.get("/dashboard/queue/pending", query_string={"q": "about a\x00b"})
    assert f'data-id="{comment_id}"'.encode() in hit.data
    assert client.get("/dashboard/audit", query_string={"actor": "x\x00y"}).status_code == 200


def test_audit_pager_links_keep_only_the_filter(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    with app.app_context():
        for i in range(55):
            db.session.add(ModerationEvent(site_id=world["a"].id, actor="moderator:x",
                                           action="settings", reason=f"change {i}"))
        db.session.commit()
    login(client, "admin@example.org")
    assert client.get("/dashboard/audit?_method=DELETE").status_code == 200
    assert client.get("/dashboard/audit?_scheme=https").status_code == 200
    response = client.get("/dashboard/audit?_external=1&_scheme=https&_anchor=x&actor=moderator")
    assert response.status_code == 200
    older = re.search(r'rel="next" href="([^"]+)"', response.get_data(as_text=True))
    assert older
    link = older.group(1).replace("&amp;", "&")
    assert link.startswith("/dashboard/audit?") and "#" not in link
    assert "actor=moderator" in link and "_scheme" not in link and "_external" not in link


# -- searching any script -------------------------------------------------------------------


def test_search_and_reason_filter_find_non_ascii_text(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    site = add_site(app, "Gamma", suspect_words=["广告", "Ärger"])
    add_moderator(app, "gina@example.org", site)
    held(client, site, "a borderline remark", author="Иван Петров")
    held(client, site, "another borderline remark", author="Émile Zola")
    held(client, site, "Hier gibt es Ärger")
    held(client, site, "便宜广告")
    held(client, site, "a borderline 100% sure take")
    held(client, site, "a borderline 1000 sure take")
    login(client, "gina@example.org")

    def matching(query: str) -> int:
        page = client.get(f"/dashboard/queue/pending?{query}").get_data(as_text=True)
        found = re.search(r"(\d+) matching", page)
        assert found, page
        return int(found.group(1))

    for query in ("Иван", "иван", "ИВАН", "Émile", "émile", "ÉMILE"):
        assert matching(f"q={query}") == 1, query
        assert matching(f"q={query}&in=author") == 1, query
    assert matching("q=ärger&in=text") == 1
    for reason in ("广告", "Ärger", "ärger", "ÄRGER", "suspect words: 广告"):
        assert matching(f"reason={reason}") == 1, reason
    assert matching("reason=≥ hold threshold") == 4
    assert matching("reason=Toxicity") == 4
    # % and _ are matched literally.
    assert matching("q=100%25") == 1
    assert matching("q=_") == 0
    assert matching("reason=%25") == 0


# -- settings limits and origins ------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "message"), [
    ("banned_words", "\n".join(f"word{i}" for i in range(1200)),
     "has 1,200 different entries: a list may have at most 1,000"),
    ("suspect_words", "fine\n" + "x" * 150,
     "line 2 has 150 characters: each entry may have at most 100"),
])
def test_too_long_word_lists_are_refused_not_cut(
    app: Flask, client: FlaskClient, world: dict[str, Any], field: str, value: str,
    message: str,
) -> None:
    login(client, "admin@example.org")
    url = f"/dashboard/sites/{world['a'].id}/settings"
    assert client.post(url, data=settings_form(banned_words="scam")).status_code == 302
    response = client.post(url, data=settings_form(premoderation="all", **{field: value}))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'id="{field}-error">' in page and message in page and "Nothing was saved" in page
    with app.app_context():
        site = db.session.get(Site, world["a"].id)
        assert site is not None
        assert site.settings["banned_words"] == ["scam"]
        assert site.settings["suspect_words"] == []
        assert site.settings["premoderation"] == "none"


def test_saved_origins_are_stored_as_browsers_send_them(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    login(client, "admin@example.org")
    response = client.post(f"/dashboard/sites/{world['a'].id}/settings", data=settings_form(
        origins="https://Blog.Example:443/\nhttps://中文.example\nhttps://blog.example\n"
                "http://localhost:8080"))
    assert response.status_code == 302
    with app.app_context():
        site = db.session.get(Site, world["a"].id)
        assert site is not None
        assert site.origins == ["https://blog.example", "https://xn--fiq228c.example",
                                "http://localhost:8080"]
    for origin in ("https://blog.example", "https://xn--fiq228c.example"):
        sent = client.post("/api/v1/comments", headers={"Origin": origin}, json={
            "site": world["a"].key, "uri": "/p", "text": "fine words"})
        assert sent.status_code == 201, sent.json
        assert sent.headers["Access-Control-Allow-Origin"] == origin
    added = client.post("/dashboard/sites", data={"name": "Gamma",
                                                  "origins": "HTTPS://Gamma.Example:443"})
    assert added.status_code == 302
    with app.app_context():
        gamma = db.session.execute(select(Site).where(Site.name == "Gamma")).scalar_one()
        assert gamma.origins == ["https://gamma.example"]


@pytest.mark.parametrize(("value", "message"), [
    ("https://blog.example?x=1", "an origin has no query or fragment"),
    ("https://a b", "it contains spaces"),
    ("https://blog.example/comments", "an origin has no path"),
    ("https://me@blog.example", "an origin has no user name or password"),
    ("ftp://blog.example", "it must start with http:// or https://"),
    ("https://blog.example:99999", "is not an origin like https://blog.example"),
])
def test_values_that_are_not_origins_are_refused_by_the_field(
    app: Flask, client: FlaskClient, world: dict[str, Any], value: str, message: str
) -> None:
    login(client, "admin@example.org")
    response = client.post(f"/dashboard/sites/{world['a'].id}/settings",
                           data=settings_form(origins=f"https://ok.example\n{value}"))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="origins-error">' in page and message in page
    added = client.post("/dashboard/sites", data={"name": "Gamma", "origins": value})
    assert added.status_code == 400
    assert 'id="origins-error">' in added.get_data(as_text=True)
    with app.app_context():
        site = db.session.get(Site, world["a"].id)
        assert site is not None and site.origins == [] and site.settings == {}
        assert db.session.execute(select(Site).where(Site.name == "Gamma")).first() is None


# -- a moderator's reach over comments of other sites ---------------------------------------


def test_a_ban_cannot_name_another_sites_comment(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    theirs = held(client, world["b"], email="reader@b.example")
    mine = held(client, world["a"], email="reader@a.example")
    login(client, "alice@example.org")
    response = client.post("/dashboard/bans", data={
        "kind": "email", "value": "planted@example.org", "site": world["a"].id,
        "duration": "", "reason": "", "comment": theirs})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="comment-error"' in page and f"Comment #{theirs} is not a comment of the site" \
        in page
    assert events(app, "ban") == []
    with app.app_context():
        assert db.session.execute(select(func.count(Ban.id))).scalar_one() == 0
    # A ban from one's own comment still names it.
    ok = client.post("/dashboard/bans", data={
        "kind": "email", "value": "reader@a.example", "site": world["a"].id, "duration": "",
        "comment": mine})
    assert ok.status_code == 302
    assert [e.comment_id for e in events(app, "ban")] == [mine]
    # An entry tied to the comment by another site (written before this check) is not part
    # of the comment's history.
    with app.app_context():
        db.session.add(ModerationEvent(site_id=world["a"].id, comment_id=theirs,
                                       actor="moderator:alice@example.org", action="ban",
                                       reason="email planted@example.org"))
        db.session.commit()
    client.post("/dashboard/logout")
    login(client, "bob@example.org")
    page = client.get(f"/dashboard/comments/{theirs}").get_data(as_text=True)
    assert "submit" in page and "planted@example.org" not in page


def test_an_admin_may_ban_everywhere_from_any_comment(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    theirs = held(client, world["b"], email="reader@b.example")
    login(client, "admin@example.org")
    response = client.post("/dashboard/bans", data={
        "kind": "email", "value": "reader@b.example", "site": "", "duration": "",
        "comment": theirs, "next": f"/dashboard/comments/{theirs}"})
    assert response.status_code == 302
    page = client.get(f"/dashboard/comments/{theirs}").get_data(as_text=True)
    assert "email reader@b.example" in page


# -- stats ----------------------------------------------------------------------------------


def test_stats_count_only_held_comments_as_waiting(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    published = post(client, world["a"], "fine words").json["comment"]["id"]
    waited = held(client, world["a"])
    now = utcnow()
    with app.app_context():
        for comment_id, days in ((published, 3), (waited, 2)):
            comment = db.session.get(Comment, comment_id)
            assert comment is not None
            comment.created_at = now - timedelta(days=days)
            if comment.decided_at is not None:
                comment.decided_at = comment.created_at
            for event in db.session.execute(select(ModerationEvent).where(
                    ModerationEvent.comment_id == comment_id)).scalars():
                event.created_at = comment.created_at
        db.session.commit()
    login(client, "alice@example.org")
    # Published at once, rejected three days later: it never waited for a moderator.
    assert client.post(f"/dashboard/comments/{published}/reject").status_code == 302
    assert client.post(f"/dashboard/comments/{waited}/approve").status_code == 302
    page = client.get(f"/dashboard/stats?site={world['a'].id}&days=7").get_data(as_text=True)
    day = [(now - timedelta(days=n)).date().isoformat() for n in range(4)]
    assert f"{day[3]} Waiting: 0.0" in page
    assert f"{day[2]} Waiting: 1.0" in page and f"{day[1]} Waiting: 1.0" in page
    assert f"{day[0]} Waiting: 0.0" in page
    assert f"{day[0]} Hours: 48.0 h" in page


def test_stats_count_an_undone_decision_as_none(
    app: Flask, client: FlaskClient, world: dict[str, Any]
) -> None:
    waited = held(client, world["a"])
    now = utcnow()
    login(client, "alice@example.org")
    # Approved by mistake two days after it came in, undone at once, approved today.
    client.post("/dashboard/undo", data={"batch": _undo_of(client.post(
        f"/dashboard/comments/{waited}/approve", follow_redirects=True))})
    with app.app_context():
        comment = db.session.get(Comment, waited)
        assert comment is not None
        comment.created_at = now - timedelta(days=3)
        for event in db.session.execute(select(ModerationEvent).where(
                ModerationEvent.comment_id == waited)).scalars():
            event.created_at = comment.created_at if event.action == "submit" else (
                now - timedelta(days=1, minutes=1 if event.action == "approve" else 0))
        db.session.commit()
    assert client.post(f"/dashboard/comments/{waited}/approve").status_code == 302
    page = client.get(f"/dashboard/stats?site={world['a'].id}&days=7").get_data(as_text=True)
    day = [(now - timedelta(days=n)).date().isoformat() for n in range(4)]
    # One wait of three days, decided today; it waited every day until then.
    assert f"{day[1]} Hours:" not in page
    assert f"{day[0]} Hours: 72.0 h" in page
    assert f"{day[2]} Waiting: 1.0" in page and f"{day[1]} Waiting: 1.0" in page
    assert f"{day[0]} Waiting: 0.0" in page


def test_stats_held_periods_match_a_walk_over_the_audit_trail(app: Flask) -> None:
    from datetime import datetime

    from moderation import stats
    from moderation.db import Thread

    alpha, beta = add_site(app, "Alpha"), add_site(app, "Beta")
    now = utcnow()
    pend, pub, rej, spam = Status.PENDING, Status.PUBLISHED, Status.REJECTED, Status.SPAM

    def ago(days: float) -> datetime:
        return now - timedelta(days=days)

    # Per comment: its site, its status now, and its audit trail (from, to, when) in order; an
    # entry may be marked as a click that was undone, or as the undo.
    held_approved = (alpha, pub, [(None, pend, ago(5)), (pend, pub, ago(3))])
    published_then_rejected = (alpha, rej, [(None, pub, ago(6)), (pub, rej, ago(2))])
    held_again = (alpha, rej, [
        (None, pend, ago(10)), (pend, pub, ago(9)),
        (pub, pend, ago(4)),  # the author's edit holds it again
        (pend, pend, ago(3)),  # a moderator's edit while it waits: no new wait
        (pend, rej, ago(1)),
    ])
    still_pending = (alpha, pend, [(None, pend, ago(20))])
    scenarios = [
        held_approved, published_then_rejected, held_again, still_pending,
        (beta, pend, [(None, pend, ago(0.1))]),  # held a moment ago
        (alpha, pub, [(None, pend, ago(60)), (pend, pub, ago(50))]),  # before the window
        (beta, spam, [(None, pend, ago(45)), (pend, spam, ago(6))]),  # long wait, decided late
        (alpha, spam, [(None, pend, ago(5.5)), (pend, pub, ago(4.5)), (pub, spam, ago(0.5))]),
        (beta, pub, [(None, pend, ago(40)), (pend, pub, ago(25)), (pub, pend, ago(2)),
                     (pend, pub, ago(1))]),
        # Marked as spam by mistake and put back by Undo: one wait, until its approval.
        (alpha, pub, [(None, pend, ago(8)), (pend, spam, ago(7), "undone"),
                      (spam, pend, ago(6.5), "undo"), (pend, pub, ago(2))]),
        (beta, pend, [(None, pend, ago(4)), (pend, rej, ago(3.5), "undone"),
                      (rej, pend, ago(3.4), "undo")]),  # still waiting since it came in
        (alpha, pub, [(None, pub, ago(3)), (pub, rej, ago(2), "undone"),
                      (rej, pub, ago(1.9), "undo")]),  # published at once: never waited
    ]
    with app.app_context():
        threads = {site.id: Thread(site_id=site.id, uri="/p", title="") for site in (alpha, beta)}
        db.session.add_all(threads.values())
        db.session.flush()
        for site, status, trail in scenarios:
            comment = Comment(site_id=site.id, thread_id=threads[site.id].id, text="x",
                              html="<p>x</p>", status=status, created_at=trail[0][2],
                              decided_at=None if status == pend else trail[-1][2])
            db.session.add(comment)
            db.session.flush()
            for before, after, when, *mark in trail:
                db.session.add(ModerationEvent(
                    site_id=site.id, comment_id=comment.id, actor="test",
                    action="undo" if mark == ["undo"] else "x",
                    details={"batch": "b", "undone": True} if mark == ["undone"] else {},
                    from_status=before, to_status=after, created_at=when))
                db.session.flush()
        # A comment deleted since: its trail no longer names it.
        for before, after, when in ((None, pend, ago(3)), (pend, rej, ago(2))):
            db.session.add(ModerationEvent(site_id=alpha.id, comment_id=None, actor="test",
                                           action="x", from_status=before, to_status=after,
                                           created_at=when))
        db.session.commit()
        trail_rows = db.session.execute(
            select(ModerationEvent).order_by(ModerationEvent.id)).scalars().all()

        def walk(window: stats.Window, decided_from: datetime, held_before: datetime | None,
                 waiting_too: bool) -> list[tuple[datetime, datetime | None]]:
            """Follow each comment's trail: a wait opens when an entry puts it in the queue
            and closes at its next entry taking it out."""
            waits: list[list[Any]] = []  # [site, held, decided]
            waiting: dict[int, list[Any]] = {}  # comment id -> its open wait
            for row in trail_rows:
                if row.comment_id is None:
                    continue
                if row.action == "undo" or (row.details or {}).get("undone"):
                    continue  # the comment went back to where it was: as if never clicked
                if row.to_status == pend and row.from_status != pend:
                    waiting[row.comment_id] = [row.site_id, row.created_at, None]
                    waits.append(waiting[row.comment_id])
                elif row.to_status not in (None, pend) and row.comment_id in waiting:
                    waiting.pop(row.comment_id)[2] = row.created_at
            return [
                (held_at, decided) for site_id, held_at, decided in waits
                if (window.allowed_sites is None or site_id in window.allowed_sites)
                and (window.site_id is None or site_id == window.site_id)
                and (held_before is None or held_at < held_before)
                and (decided >= decided_from if decided is not None else waiting_too)
            ]

        def ordered(rows: list[tuple[datetime, datetime | None]]) -> list[Any]:
            return sorted(rows, key=lambda r: (r[0], r[1] is None, r[1] or r[0]))

        windows = [stats.Window(None, None, days) for days in (1, 3, 7, 30, 90)] + [
            stats.Window((alpha.id,), None, 30), stats.Window(None, beta.id, 30),
            stats.Window((), None, 30), stats.Window((alpha.id, beta.id), alpha.id, 7),
        ]
        for window in windows:
            first_end = stats._start(window.first + timedelta(days=1))
            last_end = stats._start(window.dates()[-1] + timedelta(days=1))
            for decided_from, held_before, waiting_too in (
                (stats._start(window.first), None, False),  # decision_hours
                (first_end, last_end, True),  # queue_sizes
                (first_end, None, True),
                (first_end, last_end, False),
            ):
                expected = walk(window, decided_from, held_before, waiting_too)
                got = stats.held_periods(window, decided_from, held_before, waiting_too)
                assert ordered(got) == ordered(expected), (window, decided_from, waiting_too)
            periods = walk(window, first_end, last_end, True)
            assert stats.queue_sizes(window) == {
                day.isoformat(): sum(
                    1 for held_at, decided in periods
                    if held_at < (end := stats._start(day + timedelta(days=1)))
                    and (decided is None or decided >= end))
                for day in window.dates()
            }

        week = stats.Window(None, None, 7)
        waits = stats.held_periods(week, stats._start(week.first), waiting_too=True)
        assert (ago(5), ago(3)) in waits  # held, then approved
        assert not [w for w in waits if w[0] == ago(6)]  # published at once: never waited
        assert (ago(4), ago(1)) in waits and (ago(10), ago(9)) not in waits  # held again
        assert (ago(20), None) in waits  # still waiting since before the window
        assert (ago(45), ago(6)) in waits  # a long wait ended in the window
        assert (ago(5.5), ago(4.5)) in waits  # ends at its approval, not at the later spam
        assert (ago(8), ago(2)) in waits and (ago(4), None) in waits  # undone clicks: no end
        assert len(waits) == len(walk(week, stats._start(week.first), None, True))
