"""The page cache never serves a stale thread, even when another worker made the change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from moderation import comments
from moderation.db import Comment, db
from tests import fakes
from tests.conftest import add_site, make_app


def listing(client: FlaskClient, key: str, **headers: str) -> Any:
    return client.get("/api/v1/comments", query_string={"site": key, "uri": "/p"},
                      headers=headers)


def texts(client: FlaskClient, key: str) -> list[str]:
    body = listing(client, key).json
    out = []
    for node in body["comments"]:
        out.append(node.get("html", "(deleted)"))
        out.extend(child["html"] for child in node["replies"])
    return out


def test_each_kind_of_write_shows_up_on_the_next_read_of_another_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    writer: Flask = make_app(url)
    reader: Flask = make_app(url)  # a second worker with its own cache, same database
    fakes.install(writer)
    key = add_site(writer).key
    w, r = writer.test_client(), reader.test_client()

    def post(text: str, **extra: Any) -> Any:
        return w.post("/api/v1/comments", json={"site": key, "uri": "/p", "text": text, **extra})

    assert texts(r, key) == []
    first = post("first").json
    assert texts(r, key) == ["<p>first</p>"]
    assert texts(r, key) == ["<p>first</p>"]  # served from the cache
    assert reader.extensions["read_cache"].hits >= 1

    post("reply", parent=first["comment"]["id"])
    assert texts(r, key) == ["<p>first</p>", "<p>reply</p>"]

    held = post("borderline opinion").json  # held: not visible
    assert texts(r, key) == ["<p>first</p>", "<p>reply</p>"]
    with writer.app_context():
        comment = db.session.get(Comment, held["comment"]["id"])
        comments.moderate_many([comment], "approve", actor="moderator:ann")
    assert texts(r, key) == ["<p>first</p>", "<p>reply</p>", "<p>borderline opinion</p>"]

    edited = w.patch(f"/api/v1/comments/{first['comment']['id']}", json={"text": "first, fixed"},
                     headers={"X-Edit-Token": first["edit_token"]})
    assert edited.status_code == 200
    assert texts(r, key)[0] == "<p>first, fixed</p>"

    deleted = w.delete(f"/api/v1/comments/{first['comment']['id']}",
                       headers={"X-Edit-Token": first["edit_token"]})
    assert deleted.status_code == 204
    assert texts(r, key) == ["(deleted)", "<p>reply</p>", "<p>borderline opinion</p>"]

    with writer.app_context():
        rows = db.session.execute(select(Comment)).scalars().all()
        comments.moderate_many(rows, "delete", actor="moderator:ann")
    assert texts(r, key) == []


def test_an_undo_shows_up_on_the_next_read_though_decision_times_go_back(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    writer: Flask = make_app(url)
    reader: Flask = make_app(url)
    fakes.install(writer)
    key = add_site(writer).key
    w, r = writer.test_client(), reader.test_client()
    ids = [w.post("/api/v1/comments", json={"site": key, "uri": "/p", "text": f"borderline {n}"})
           .get_json()["comment"]["id"] for n in (1, 2)]
    # Two clicks; the second's decision stays the thread's latest when the first is undone.
    with writer.app_context():
        for n, comment_id in enumerate(ids):
            comments.moderate_many([db.session.get_one(Comment, comment_id)], "approve",
                                   actor="moderator:ann", batch=f"click{n}")
    assert texts(r, key) == ["<p>borderline 1</p>", "<p>borderline 2</p>"]
    with writer.app_context():
        assert comments.undo_batch("click0", "moderator:ann", lambda _: True) == (1, 0)
    assert texts(r, key) == ["<p>borderline 2</p>"]
    with writer.app_context():
        assert comments.undo_batch("click1", "moderator:ann", lambda _: True) == (1, 0)
    assert texts(r, key) == []


def test_etag_lets_clients_revalidate_without_a_body(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    fakes.install(app)
    key = add_site(app).key
    client = app.test_client()
    client.post("/api/v1/comments", json={"site": key, "uri": "/p", "text": "hello"})
    first = listing(client, key)
    assert first.headers["Cache-Control"] == "no-cache"
    etag = first.headers["ETag"]
    again = listing(client, key, **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    client.post("/api/v1/comments", json={"site": key, "uri": "/p", "text": "another"})
    changed = listing(client, key, **{"If-None-Match": etag})
    assert changed.status_code == 200
    assert len(changed.json["comments"]) == 2


def test_the_cache_can_be_turned_off() -> None:
    app = make_app(READ_CACHE_ENTRIES=0)
    assert "read_cache" not in app.extensions
    key = add_site(app).key
    assert listing(app.test_client(), key).json["comments"] == []


def test_a_cursor_is_part_of_the_cache_key_and_of_the_etag(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    fakes.install(app)
    key = add_site(app).key
    client = app.test_client()
    ids = []
    for n in range(5):
        posted = client.post("/api/v1/comments",
                             json={"site": key, "uri": "/p", "text": f"no. {n}"})
        assert posted.json is not None
        ids.append(posted.json["comment"]["id"])

    def page(cursor: str = "", **headers: str) -> Any:
        return client.get("/api/v1/comments", headers=headers, query_string={
            "site": key, "uri": "/p", "per_page": 2, "cursor": cursor})

    first = page()
    second = page(first.json["next"])
    third = page(second.json["next"])
    pages = [[c["id"] for c in p.json["comments"]] for p in (first, second, third)]
    assert pages == [ids[:2], ids[2:4], ids[4:]]
    cache = app.extensions["read_cache"]
    hits = cache.hits
    assert page(first.json["next"]).json == second.json  # from the cache, under its cursor
    assert cache.hits == hits + 1
    assert len({p.headers["ETag"] for p in (first, second, third)}) == 3
    assert page(first.json["next"], **{"If-None-Match": second.headers["ETag"]}).status_code == 304
    assert page(second.json["next"], **{"If-None-Match": second.headers["ETag"]}).status_code == 200

    # A change to the thread is seen under a cursor too: the cached page is not served.
    with app.app_context():
        comments.moderate(db.session.get_one(Comment, ids[3]), "delete", "moderator:ann")
        db.session.commit()
    assert [c["id"] for c in page(first.json["next"]).json["comments"]] == [ids[2], ids[4]]
