"""The public JSON API end to end, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from moderation import comments
from moderation.db import Comment, ModerationEvent, Site, Thread, db
from moderation.openapi import build_document
from tests import fakes
from tests.conftest import add_site, issue_key, make_app, stored

ORIGIN = "https://blog.example"


def post(client: FlaskClient, site: Site, **fields: Any) -> Any:
    body = {"site": site.key, "uri": "/posts/hello", "text": "Nice post, thanks!", **fields}
    return client.post("/api/v1/comments", json=body)


def encode(values: Any) -> str:
    """Return values packed as a listing's cursor is (URL-safe base64 of JSON)."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def thread(client: FlaskClient, site: Site, uri: str = "/posts/hello", **params: Any) -> Any:
    response = client.get("/api/v1/comments", query_string={"site": site.key, "uri": uri, **params})
    assert response.status_code == 200, response.json
    return response.json


# -- held until scored ----------------------------------------------------------------------


def test_without_a_model_every_comment_is_held_and_visible_to_its_author_only(
    app: Flask, client: FlaskClient, site: Site
) -> None:
    response = post(client, site, author="Ann", text="Hello *world*")
    assert response.status_code == 202
    comment = response.json["comment"]
    assert comment["status"] == "pending"
    assert comment["html"] == "<p>Hello <em>world</em></p>"
    token = response.json["edit_token"]

    assert thread(client, site)["comments"] == []
    assert client.get(f"/api/v1/comments/{comment['id']}").status_code == 404
    own = client.get(f"/api/v1/comments/{comment['id']}", headers={"X-Edit-Token": token})
    assert own.status_code == 200
    assert own.json["comment"]["status"] == "pending"
    wrong = client.get(f"/api/v1/comments/{comment['id']}", headers={"X-Edit-Token": "nope"})
    assert wrong.status_code == 404
    with app.app_context():
        saved = db.session.get(Comment, comment["id"])
        assert saved is not None
        assert saved.reasons == ["not scored: the classifier is unavailable"]
        assert saved.model_version is None


# -- publishing, replies, pagination --------------------------------------------------------


def test_published_comment_and_replies_of_any_depth_form_a_tree(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    first = post(client, site, author="Ann", title="Hello post")
    assert first.status_code == 201
    assert first.headers["Location"].endswith(f"/api/v1/comments/{first.json['comment']['id']}")
    parent = first.json["comment"]["id"]
    for depth in range(4):
        reply = post(client, site, parent=parent, author=f"R{depth}", text=f"reply {depth}")
        assert reply.status_code == 201
        parent = reply.json["comment"]["id"]

    page = thread(client, site)
    assert page["total"] == 5
    assert page["title"] == "Hello post"
    node = page["comments"][0]
    assert node["author"] == "Ann"
    for depth in range(4):
        (node,) = node["replies"]
        assert node["author"] == f"R{depth}"
    assert "email" not in node and "client_addr" not in node


def test_email_is_never_published(scored: Flask, client: FlaskClient, site: Site) -> None:
    response = post(client, site, author="Ann", email="ann@example.org")
    assert response.status_code == 201
    assert "ann@example.org" not in str(thread(client, site))
    assert "ann@example.org" not in client.get(
        f"/api/v1/comments/{response.json['comment']['id']}"
    ).get_data(as_text=True)


def test_pagination_and_sort(scored: Flask, client: FlaskClient, site: Site) -> None:
    for n in range(7):
        assert post(client, site, text=f"comment number {n}").status_code == 201
    page1 = thread(client, site, per_page=3)
    assert (page1["total"], page1["roots"], page1["pages"]) == (7, 7, 3)
    assert [c["html"] for c in page1["comments"]][0] == "<p>comment number 0</p>"
    page3 = thread(client, site, per_page=3, page=3)
    assert [c["html"] for c in page3["comments"]] == ["<p>comment number 6</p>"]
    newest = thread(client, site, per_page=3, sort="newest")
    assert newest["comments"][0]["html"] == "<p>comment number 6</p>"
    assert thread(client, site, per_page=3, page=9)["comments"] == []


def test_pages_by_number_still_work_and_give_the_next_cursor(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    ids = [post(client, site, text=f"comment number {n}").json["comment"]["id"] for n in range(7)]
    page2 = thread(client, site, per_page=3, page=2)
    assert page2["page"] == 2
    assert [c["id"] for c in page2["comments"]] == ids[3:6]
    # A client paging by number can go on by cursor from any page.
    page3 = thread(client, site, per_page=3, cursor=page2["next"])
    assert (page3["page"], page3["pages"], page3["next"]) == (None, 3, None)
    assert [c["id"] for c in page3["comments"]] == ids[6:]
    assert thread(client, site, per_page=7)["next"] is None  # exactly one full page
    # Empty means absent, as for the other arguments: the first page.
    assert thread(client, site, per_page=3, cursor="") == thread(client, site, per_page=3)
    # A cursor carries its order: given alone, the page after it comes in that order.
    newest = thread(client, site, per_page=2, sort="newest")
    after = thread(client, site, per_page=2, cursor=newest["next"])
    assert [c["id"] for c in after["comments"]] == [ids[4], ids[3]]


def test_a_cursor_belongs_to_the_thread_that_gave_it(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    for uri in ("/posts/hello", "/posts/other"):
        for n in range(3):
            assert post(client, site, uri=uri, text=f"comment number {n}").status_code == 201
    other_site = add_site(scored, name="Other blog")
    for n in range(3):
        assert post(client, other_site, text=f"comment number {n}").status_code == 201
    first = thread(client, site, per_page=2)
    assert len(first["comments"]) == 2 and first["next"]

    def listing(s: Site, uri: str, **params: Any) -> Any:
        return client.get("/api/v1/comments",
                          query_string={"site": s.key, "uri": uri, **params})

    # Another page of the same site, the same page of another site: a 400 naming the cursor,
    # not a page that silently holds the wrong comments or none.
    for s, uri in ((site, "/posts/other"), (other_site, "/posts/hello")):
        refused = listing(s, uri, per_page=2, cursor=first["next"])
        assert refused.status_code == 400, refused.json
        assert refused.json["error"]["field"] == "cursor"
        assert "belongs to another thread" in refused.json["error"]["message"]
    # The same thread however its URI is written (it is normalised first).
    for uri in ("/posts/hello/", "https://blog.example/posts/hello?utm=1#c"):
        same = listing(site, uri, per_page=2, cursor=first["next"])
        assert same.status_code == 200, same.json
        assert [c["html"] for c in same.json["comments"]] == ["<p>comment number 2</p>"]
    # Checked before the order and the page number, with their own messages.
    wrong_sort = listing(site, "/posts/hello", sort="newest", cursor=first["next"])
    assert wrong_sort.status_code == 400
    assert wrong_sort.json["error"]["message"] == "was made for sort=oldest, not sort=newest"
    assert listing(site, "/posts/hello", page=2, cursor=first["next"]).status_code == 400
    # A cursor without its thread (as the first cursors were) is not a `next` value.
    place = json.loads(base64.urlsafe_b64decode(first["next"] + "=" * (-len(first["next"]) % 4)))
    assert len(place) == 4 and place[0] == "oldest"
    for bad in (place[:3], [*place[:3], 7], [*place[:3], None]):
        refused = listing(site, "/posts/hello", cursor=encode(bad))
        assert refused.status_code == 400
        assert refused.json["error"]["message"] == "is not a `next` value of a thread listing"
    # The description says so, and the longest cursor the server can give fits its limit.
    (described,) = [p for p in build_document()["paths"]["/api/v1/comments"]["get"]["parameters"]
                    if p["name"] == "cursor"]
    assert "belongs to another thread" in described["description"]
    longest = comments.ThreadCursor("newest", datetime(9999, 12, 31, 23, 59, 59, 999999, UTC),
                                    comments.MAX_ID, comments.thread_tag(site, "/posts/hello"))
    assert len(longest.encode()) <= comments.MAX_THREAD_CURSOR == described["schema"]["maxLength"]


# -- paging while the thread changes: by cursor, every comment once ----------------------------


def roots_after(client: FlaskClient, site: Site, cursor: str | None, **params: Any) -> list[int]:
    """Follow `next` from a cursor to the end of the thread; return the top-level ids, in order."""
    seen: list[int] = []
    while cursor:
        page = thread(client, site, cursor=cursor, **params)
        seen += [c["id"] for c in page["comments"]]
        cursor = page["next"]
    return seen


@pytest.mark.parametrize("sort", ["oldest", "newest"])
def test_load_more_while_comments_are_published_repeats_and_skips_none(
    scored: Flask, client: FlaskClient, site: Site, sort: str
) -> None:
    ids = [post(client, site, text=f"comment number {n}").json["comment"]["id"] for n in range(7)]
    held = post(client, site, text="a borderline remark")
    assert held.status_code == 202
    first = thread(client, site, sort=sort, per_page=3)
    shown = [c["id"] for c in first["comments"]]
    # Between the first page and Load more: new comments, a reply, and the held one approved.
    new = [post(client, site, text=f"late comment {n}").json["comment"]["id"] for n in range(2)]
    assert post(client, site, parent=ids[0], text="a late reply").status_code == 201
    with scored.app_context():
        comments.moderate(db.session.get_one(Comment, held.json["comment"]["id"]), "approve",
                          "moderator:ann")
        db.session.commit()
    rest = roots_after(client, site, first["next"], per_page=3)
    approved = held.json["comment"]["id"]
    if sort == "oldest":  # what came later is further down: Load more reaches it too
        assert shown + rest == [*ids, approved, *new]
    else:  # newest first, what came later is above the first page: it shows on a reload
        assert shown + rest == ids[::-1]
    assert len(set(shown + rest)) == len(shown + rest)


@pytest.mark.parametrize("sort", ["oldest", "newest"])
def test_load_more_while_comments_are_removed_repeats_and_skips_none(
    scored: Flask, client: FlaskClient, site: Site, sort: str
) -> None:
    ids = [post(client, site, text=f"comment number {n}").json["comment"]["id"] for n in range(8)]
    order = ids if sort == "oldest" else ids[::-1]
    first = thread(client, site, sort=sort, per_page=3)
    shown = [c["id"] for c in first["comments"]]
    assert shown == order[:3]
    # Removed meanwhile: the first shown, the last shown (the one the cursor names) and one
    # not shown yet.
    gone = [order[0], order[2], order[5]]
    with scored.app_context():
        for comment_id in gone:
            comments.moderate(db.session.get_one(Comment, comment_id), "delete", "moderator:ann")
        db.session.commit()
    rest = roots_after(client, site, first["next"], sort=sort, per_page=3)
    assert rest == [i for i in order[3:] if i != order[5]]
    assert shown + rest == [i for i in order if i != order[5]]  # each once, none skipped


def test_a_removed_comment_with_replies_stays_as_a_placeholder(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    root = post(client, site, text="root comment")
    token, root_id = root.json["edit_token"], root.json["comment"]["id"]
    assert post(client, site, parent=root_id, text="a reply").status_code == 201
    assert client.delete(f"/api/v1/comments/{root_id}",
                         headers={"X-Edit-Token": token}).status_code == 204
    page = thread(client, site)
    assert page["total"] == 1
    (placeholder,) = page["comments"]
    assert placeholder == {"id": root_id, "parent": None, "deleted": True,
                           "replies": placeholder["replies"]}
    assert placeholder["replies"][0]["html"] == "<p>a reply</p>"


def test_uri_is_normalised_and_counts_are_batched(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    post(client, site, uri="/a/")
    post(client, site, uri="https://blog.example/a?utm=1#c")
    post(client, site, uri="/b")
    held = post(client, site, uri="/b", text="borderline remark")
    assert held.status_code == 202
    response = client.post("/api/v1/counts",
                           json={"site": site.key, "uris": ["/a", "/b/", "/none"]})
    assert response.status_code == 200
    assert response.json == {"counts": {"/a": 2, "/b/": 1, "/none": 0}}


def test_rejected_comment_is_kept_in_the_spam_queue(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    response = post(client, site, author="Cheap viagra", text="buy now")
    assert response.status_code == 422
    assert response.json["error"]["code"] == "rejected"
    with scored.app_context():
        comment = db.session.execute(select(Comment)).scalar_one()
        assert comment.status == "spam"
        assert comment.spam_score == pytest.approx(0.99)
        assert comment.model_version == "test-keywords-1"
        event = db.session.execute(select(ModerationEvent)).scalar_one()
        assert (event.action, event.to_status) == ("submit", "spam")


def test_every_new_comment_is_stored_with_its_audit_row(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    # The first comment of a page creates its thread; later ones, replies and rejections take
    # the short path on PostgreSQL (one INSERT for comment and audit row): all must match.
    first = post(client, site, text="first comment")
    assert first.status_code == 201
    first_id = first.json["comment"]["id"]
    answers = [
        post(client, site, text="borderline remark"),
        post(client, site, parent=first_id, text="a reply"),
        post(client, site, author="Cheap viagra", text="buy now"),
    ]
    assert [a.status_code for a in answers] == [202, 201, 422]
    assert post(client, site, parent=first_id + 100, text="lost").status_code == 400
    with scored.app_context():
        comments = db.session.execute(select(Comment).order_by(Comment.id)).scalars().all()
        events = db.session.execute(select(ModerationEvent)).scalars().all()
        assert [c.status for c in comments] == ["published", "pending", "published", "spam"]
        assert [c.parent_id for c in comments] == [None, None, first_id, None]
        assert [c.root_id for c in comments] == [None, None, first_id, None]
        assert comments[3].reasons and comments[3].scores["spam"] == pytest.approx(0.99)
        assert sorted((e.comment_id, e.action, e.to_status) for e in events) == [
            (c.id, "submit", c.status) for c in comments
        ]
        for event in events:
            comment = next(c for c in comments if c.id == event.comment_id)
            assert (event.site_id, event.actor, event.from_status) == (site.id, "reader", None)
            assert event.created_at == comment.created_at
            assert event.reason == "; ".join(comment.reasons)


_REFUSE_AUDIT = {
    "sqlite": ["CREATE TRIGGER refuse_audit BEFORE INSERT ON moderation_event "
               "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"],
    "postgresql": ["CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
                   "CREATE TRIGGER refuse_audit BEFORE INSERT ON moderation_event "
                   "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"],
}
_ALLOW_AUDIT = {
    "sqlite": ["DROP TRIGGER refuse_audit"],
    "postgresql": ["DROP TRIGGER refuse_audit ON moderation_event", "DROP FUNCTION refuse_audit"],
}


def _run_ddl(app: Flask, statements: dict[str, list[str]]) -> None:
    with app.app_context():
        for statement in statements[db.engine.dialect.name]:
            db.session.execute(text(statement))
        db.session.commit()


def test_a_comment_whose_audit_row_fails_is_not_stored(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    # Later comments of a page are stored straight on the driver: comment and audit row
    # commit together or not at all (SQLite: two INSERTs in one transaction; PostgreSQL:
    # one INSERT). The database itself refuses the audit row here.
    assert post(client, site, text="first comment").status_code == 201
    _run_ddl(scored, _REFUSE_AUDIT)
    scored.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production
    refused = post(client, site, text="second comment")
    assert refused.status_code == 500
    assert refused.json["error"]["code"] == "server_error"
    assert stored(scored) == 1
    _run_ddl(scored, _ALLOW_AUDIT)
    assert post(client, site, text="second comment").status_code == 201
    with scored.app_context():
        audited = db.session.execute(select(ModerationEvent.comment_id)).scalars().all()
        ids = db.session.execute(select(Comment.id)).scalars().all()
        assert sorted(audited) == sorted(ids) and len(ids) == 2


def test_a_new_commenters_first_comments_are_held_until_one_is_approved(
    scored: Flask, client: FlaskClient
) -> None:
    site = add_site(scored, settings={"premoderation": "new", "new_commenter_holds": 1})
    first = post(client, site, author="Ann", email="ann@example.org", uri="/a")
    again = post(client, site, author="Ann", email="ann@example.org", uri="/b")
    assert (first.status_code, again.status_code) == (202, 202)
    with scored.app_context():
        held = db.session.get(Comment, first.json["comment"]["id"])
        assert held.status == "pending" and "new commenter" in " ".join(held.reasons)
        comments.moderate(held, "approve", actor="moderator:test")
        db.session.commit()
    # One approved comment: Ann is no longer new, on a page of hers or a new one.
    assert post(client, site, author="Ann", email="ann@example.org", uri="/a").status_code == 201
    assert post(client, site, author="Ann", email="ann@example.org", uri="/c").status_code == 201
    # Someone else still is.
    assert post(client, site, author="Bo", email="bo@example.org", uri="/a").status_code == 202


# -- the author's edit window ---------------------------------------------------------------


def test_author_edits_within_window_and_is_rescored(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    created = post(client, site, text="first version")
    cid, token = created.json["comment"]["id"], created.json["edit_token"]
    url = f"/api/v1/comments/{cid}"

    assert client.patch(url, json={"text": "x y"}).status_code == 403
    edited = client.patch(url, json={"text": "second **version**"},
                          headers={"X-Edit-Token": token})
    assert edited.status_code == 200
    assert edited.json["comment"]["html"] == "<p>second <strong>version</strong></p>"
    assert edited.json["comment"]["edited"] is not None

    held = client.patch(url, json={"text": "borderline now"}, headers={"X-Edit-Token": token})
    assert held.status_code == 202
    assert held.json["comment"]["status"] == "pending"
    assert thread(client, site)["total"] == 0


def test_edit_window_expires(scored: Flask, client: FlaskClient, site: Site) -> None:
    created = post(client, site)
    cid, token = created.json["comment"]["id"], created.json["edit_token"]
    with scored.app_context():
        comment = db.session.get(Comment, cid)
        assert comment is not None
        comment.created_at = comment.created_at - timedelta(minutes=16)
        db.session.commit()
    headers = {"X-Edit-Token": token}
    response = client.patch(f"/api/v1/comments/{cid}", json={"text": "too late"},
                            headers=headers)
    assert response.status_code == 403
    assert response.json["error"]["code"] == "edit_window_closed"
    assert client.delete(f"/api/v1/comments/{cid}", headers=headers).status_code == 403
    assert thread(client, site)["comments"][0]["html"] == "<p>Nice post, thanks!</p>"


def test_author_deletes_own_comment(scored: Flask, client: FlaskClient, site: Site) -> None:
    created = post(client, site)
    cid, token = created.json["comment"]["id"], created.json["edit_token"]
    assert client.delete(f"/api/v1/comments/{cid}").status_code == 403
    assert client.delete(f"/api/v1/comments/{cid}",
                         headers={"X-Edit-Token": token}).status_code == 204
    assert thread(client, site)["total"] == 0
    assert client.get(f"/api/v1/comments/{cid}").status_code == 404


# -- bad input: 4xx naming the field, nothing written ---------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"uri": "/p", "text": "hi there"}, 400, "invalid_field", "site"),
        ({"site": "nope", "uri": "/p", "text": "hi there"}, 404, "unknown_site", "site"),
        ({"site": "{site}", "text": "hi there"}, 400, "invalid_field", "uri"),
        ({"site": "{site}", "uri": "/p"}, 400, "invalid_field", "text"),
        ({"site": "{site}", "uri": "/p", "text": "\u200b\u200b \u202e"}, 400, "invalid_field",
         "text"),
        ({"site": "{site}", "uri": "/p", "text": "x"}, 400, "invalid_field", "text"),
        ({"site": "{site}", "uri": "/p", "text": "x" * 10_001}, 400, "invalid_field", "text"),
        ({"site": "{site}", "uri": "/p", "text": 42}, 400, "invalid_field", "text"),
        ({"site": "{site}", "uri": "/p", "text": "hi there", "email": "not-an-email"}, 400,
         "invalid_field", "email"),
        ({"site": "{site}", "uri": "/p", "text": "hi there", "website": "javascript:alert(1)"},
         400, "invalid_field", "website"),
        ({"site": "{site}", "uri": "/p", "text": "hi there", "author": "a" * 65}, 400,
         "invalid_field", "author"),
        ({"site": "{site}", "uri": "/p", "text": "hi there", "parent": 999}, 400,
         "invalid_field", "parent"),
        ({"site": "{site}", "uri": "/p", "text": "hi there", "parent": "1"}, 400,
         "invalid_field", "parent"),
        ({"site": "{site}", "uri": "/p", "text": "hi there", "status": "published"}, 400,
         "invalid_field", "status"),
        ({"site": "{site}", "uri": "ftp://x/p", "text": "hi there"}, 400, "invalid_field", "uri"),
    ],
)
def test_invalid_submissions_name_the_field_and_write_nothing(
    app: Flask, client: FlaskClient, site: Site, body: dict[str, Any], status: int, code: str,
    field: str,
) -> None:
    body = {k: (site.key if v == "{site}" else v) for k, v in body.items()}
    response = client.post("/api/v1/comments", json=body)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert response.json["error"]["field"] == field
    assert response.json["error"]["message"]
    assert stored(app) == 0


def test_parent_in_another_thread_is_refused(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    other = post(client, site, uri="/other").json["comment"]["id"]
    response = post(client, site, parent=other)
    assert response.status_code == 400
    assert response.json["error"]["field"] == "parent"
    assert stored(scored) == 1


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "invalid_json"),
        ('["a list"]', "application/json", 400, "invalid_json"),
        ("site=x&text=hello", "application/x-www-form-urlencoded", 415,
         "unsupported_media_type"),
        ("hello", "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_malformed_bodies(
    app: Flask, client: FlaskClient, site: Site, data: str, content_type: str, status: int,
    code: str,
) -> None:
    response = client.post("/api/v1/comments", data=data, content_type=content_type)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert stored(app) == 0


def test_oversized_body_is_413_json(app: Flask, client: FlaskClient, site: Site) -> None:
    response = post(client, site, text="x" * (70 * 1024))
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert stored(app) == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [({"uri": "/p"}, "site"), ({"site": "{site}"}, "uri"),
     ({"site": "{site}", "uri": "/p", "sort": "best"}, "sort"),
     ({"site": "{site}", "uri": "/p", "page": "0"}, "page"),
     ({"site": "{site}", "uri": "/p", "per_page": "x"}, "per_page"),
     ({"site": "{site}", "uri": "/p", "per_page": "1000"}, "per_page"),
     ({"site": "{site}", "uri": "/p", "cursor": "x"}, "cursor"),
     ({"site": "{site}", "uri": "/p", "cursor": "not a cursor!"}, "cursor"),
     ({"site": "{site}", "uri": "/p", "cursor": encode(["oldest", "2024-05-01T10:00:00+00:00", 5])
       + "A" * 200}, "cursor"),
     ({"site": "{site}", "uri": "/p", "cursor": encode(["best", "2024-05-01T10:00:00+00:00", 5])},
      "cursor"),
     ({"site": "{site}", "uri": "/p", "cursor": encode(["oldest", "2024-05-01T10:00:00", 5])},
      "cursor"),
     ({"site": "{site}", "uri": "/p", "cursor": encode(["oldest", "yesterday", 5])}, "cursor"),
     ({"site": "{site}", "uri": "/p", "cursor": encode(["oldest", "2024-05-01T10:00:00Z", 0])},
      "cursor"),
     ({"site": "{site}", "uri": "/p", "cursor": encode(["oldest", "2024-05-01T10:00:00Z", 2**31])},
      "cursor"),
     ({"site": "{site}", "uri": "/p", "cursor": encode(["oldest", "2024-05-01T10:00:00Z"])},
      "cursor"),
     ({"site": "{site}", "uri": "/p", "cursor": encode({"sort": "oldest"})}, "cursor"),
     ({"site": "{site}", "uri": "/p", "sort": "newest",
       "cursor": encode(["oldest", "2024-05-01T10:00:00Z", 5])}, "cursor"),
     ({"site": "{site}", "uri": "/p", "page": "2",
       "cursor": encode(["oldest", "2024-05-01T10:00:00Z", 5])}, "cursor")],
)
def test_bad_listing_queries(
    client: FlaskClient, site: Site, query: dict[str, str], field: str
) -> None:
    query = {k: (site.key if v == "{site}" else v) for k, v in query.items()}
    response = client.get("/api/v1/comments", query_string=query)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [({"uris": ["/a"]}, "site"), ({"site": "{site}", "uris": "/a"}, "uris"),
     ({"site": "{site}", "uris": [1, 2]}, "uris"),
     ({"site": "{site}", "uris": ["/a"] * 101}, "uris")],
)
def test_bad_count_requests(
    client: FlaskClient, site: Site, body: dict[str, Any], field: str
) -> None:
    body = {k: (site.key if v == "{site}" else v) for k, v in body.items()}
    response = client.post("/api/v1/counts", json=body)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_unknown_routes_and_methods_answer_json(client: FlaskClient) -> None:
    missing = client.get("/api/v1/nothing")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"
    wrong = client.put("/api/v1/counts", json={})
    assert wrong.status_code == 405
    assert wrong.json["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


def test_report_a_published_comment(scored: Flask, client: FlaskClient, site: Site) -> None:
    cid = post(client, site).json["comment"]["id"]
    url = f"/api/v1/comments/{cid}/report"
    assert client.post(url, json={"reason": "abuse", "note": "rude"}).status_code == 201
    bad = client.post(url, json={"reason": "because"})
    assert (bad.status_code, bad.json["error"]["field"]) == (400, "reason")
    assert client.post("/api/v1/comments/999/report", json={}).status_code == 404


# -- CORS -----------------------------------------------------------------------------------


def test_cors_preflight_and_responses_only_for_allowed_origins(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    ok = client.options("/api/v1/comments", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Edit-Token" in ok.headers["Access-Control-Allow-Headers"]
    evil = client.options("/api/v1/comments", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in evil.headers

    response = client.post("/api/v1/comments", headers={"Origin": ORIGIN},
                           json={"site": site.key, "uri": "/p", "text": "from the blog"})
    assert response.status_code == 201
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]

    refused = client.post("/api/v1/comments", headers={"Origin": "https://evil.example"},
                          json={"site": site.key, "uri": "/p", "text": "from elsewhere"})
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in refused.headers
    listing = client.get("/api/v1/comments", headers={"Origin": "https://evil.example"},
                         query_string={"site": site.key, "uri": "/p"})
    assert listing.status_code == 403
    assert stored(scored) == 1


# -- rate-limit headers ---------------------------------------------------------------------

RATE_LIMIT_HEADERS = {"retry-after", "x-ratelimit-limit", "x-ratelimit-remaining",
                      "x-ratelimit-reset"}


def rate_limit_headers(response: Any) -> set[str]:
    """Return the rate-limit headers an answer carries, lower-cased."""
    return {name.lower() for name in response.headers.keys()} & RATE_LIMIT_HEADERS


@pytest.mark.usefixtures("steady_window")
def test_only_answers_over_a_limit_carry_rate_limit_headers() -> None:
    app = make_app(RATELIMIT_ENABLED=True, LIMIT_API_KEY="2/minute", LIMIT_POST="1/minute")
    fakes.install(app)
    site = add_site(app)
    key = issue_key(app, site)
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {key}"}
    answered = [
        client.get("/api/v1/manage/key", headers=bearer),
        client.post("/1.1/comment-check", data={"api_key": key, "blog": ORIGIN,
                                                "user_ip": "203.0.113.9",
                                                "comment_content": "Thanks for the post"}),
        post(client, site),
        client.get("/api/v1/comments", query_string={"site": site.key, "uri": "/posts/hello"}),
    ]
    for response in answered:
        assert response.status_code in (200, 201), (response.request.path, response.data)
        assert rate_limit_headers(response) == set(), response.request.path
    # Over a limit, the per-key limit (its third request) and a reader's posting limit both
    # tell the client when to retry.
    per_key = client.get("/api/v1/manage/key", headers=bearer)
    over_post = post(client, site)
    for limited, amount in ((per_key, "2"), (over_post, "1")):
        assert limited.status_code == 429, limited.json
        assert limited.json["error"]["code"] == "too_many_requests"
        assert rate_limit_headers(limited) == RATE_LIMIT_HEADERS
        assert 0 < int(limited.headers["Retry-After"]) <= 60
        assert limited.headers.getlist("X-RateLimit-Limit") == [amount]
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert int(limited.headers["X-RateLimit-Reset"]) >= int(limited.headers["Retry-After"])


# -- service endpoints ----------------------------------------------------------------------


def test_health_reports_each_dependency(app: Flask, client: FlaskClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    checks = response.json["checks"]
    assert checks["database"]["ok"] is True
    assert checks["limiter"]["ok"] is True
    assert checks["model"]["ok"] is False
    assert response.json["status"] == "degraded"
    fakes.install(app)
    healthy = client.get("/api/v1/health").json
    assert healthy["status"] == "ok"
    assert healthy["checks"]["model"]["version"] == "test-keywords-1"


def test_threads_are_created_once_per_uri(scored: Flask, client: FlaskClient, site: Site) -> None:
    for _ in range(3):
        post(client, site, uri="/same/")
    with scored.app_context():
        assert db.session.execute(select(func.count(Thread.id))).scalar_one() == 1


# -- origins as browsers send them ----------------------------------------------------------


def test_stored_origins_match_the_origin_header_browsers_send(
    scored: Flask, client: FlaskClient
) -> None:
    # Stored as people type them (before origins were normalised on saving).
    site = add_site(scored, origins=["https://Blog.Example", "https://中文.example:443/",
                                     "http://localhost:8080/", "not an origin"])
    for origin in ("https://blog.example", "https://xn--fiq228c.example",
                   "http://localhost:8080"):
        preflight = client.options("/api/v1/comments", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.headers.get("Access-Control-Allow-Origin") == origin, origin
        response = client.post("/api/v1/comments", headers={"Origin": origin},
                               json={"site": site.key, "uri": "/p", "text": "from the blog"})
        assert response.status_code == 201, (origin, response.json)
        assert response.headers["Access-Control-Allow-Origin"] == origin
    for origin in ("https://blog.example:8443", "http://blog.example", "null",
                   "https://evil.example", "https://blog.example.evil.example"):
        refused = client.post("/api/v1/comments", headers={"Origin": origin},
                              json={"site": site.key, "uri": "/p", "text": "from elsewhere"})
        assert refused.status_code == 403, origin
        assert refused.json["error"]["code"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in refused.headers
    # The service's own pages are one origin with it, however the header spells it.
    same = client.post("/api/v1/comments", headers={"Origin": "HTTP://LOCALHOST:80"},
                       json={"site": site.key, "uri": "/p", "text": "from the service"})
    assert same.status_code == 201


def test_cli_site_add_stores_origins_as_browsers_send_them(app: Flask) -> None:
    import json

    runner = app.test_cli_runner()
    result = runner.invoke(args=["site", "add", "--name", "Blog", "--json",
                                 "--origin", "https://Blog.Example:443",
                                 "--origin", "https://中文.example/",
                                 "--origin", "https://blog.example"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["origins"] == ["https://blog.example",
                                                   "https://xn--fiq228c.example"]
    for value, message in (("https://blog.example?x=1", "no query"),
                           ("https://a b", "spaces"),
                           ("https://blog.example/path", "no path")):
        bad = runner.invoke(args=["site", "add", "--name", "x", "--origin", value])
        assert bad.exit_code != 0 and "is not an origin like" in bad.output, value
        assert message in bad.output and "--origin" in bad.output
    with app.app_context():
        assert db.session.execute(select(func.count(Site.id))).scalar_one() == 1


@pytest.mark.parametrize(("value", "expected"), [
    ("https://blog.example", "https://blog.example"),
    ("  HTTPS://Blog.Example:443/ ", "https://blog.example"),
    ("http://blog.example:80", "http://blog.example"),
    ("https://blog.example:8443", "https://blog.example:8443"),
    ("http://blog.example:443", "http://blog.example:443"),
    ("https://中文.example", "https://xn--fiq228c.example"),
    ("https://Bücher.example", "https://xn--bcher-kva.example"),
    ("https://中文。example", "https://xn--fiq228c.example"),
    ("https://[::1]:5000", "https://[::1]:5000"),
    ("https://[0:0::1]", "https://[::1]"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_origins_are_normalised_to_what_browsers_send(value: str, expected: str) -> None:
    from moderation import origins

    assert origins.normalise(value) == expected
    assert origins.canonical(value) == expected


@pytest.mark.parametrize("value", [
    "", "blog.example", "//blog.example", "ftp://blog.example", "https://", "https://:443",
    "https://blog.example?x=1", "https://blog.example#top", "https://blog.example/path",
    "https://user:pw@blog.example", "https://a b", "https://blog.example:0",
    "https://blog.example:65536", "https://blog.example:x", "https://-blog.example",
    "https://blog..example", "https://[::1", "https://[zz]", "https://[::1%25eth0]",
    "https://blog\u200b.example", "null", "*",
])
def test_values_that_are_not_origins_are_refused(value: str) -> None:
    from moderation import origins

    with pytest.raises(origins.InvalidOrigin, match="is not an origin like https://blog.example"):
        origins.normalise(value)
    assert origins.canonical(value) is None
    assert not origins.allows([value, "https://blog.example"], value)
