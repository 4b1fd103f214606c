"""Odd input to the public API: a clear 4xx naming the field, one thread per page, no 500s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import select, text

from moderation import comments, create_app
from moderation.db import Comment, Site, Status, Thread, db, utcnow
from tests.conftest import add_site, base_config, stored


def post(client: FlaskClient, site: Site, **fields: Any) -> Any:
    body = {"site": site.key, "uri": "/posts/hello", "text": "Nice post, thanks!", **fields}
    return client.post("/api/v1/comments", json=body)


def post_raw(client: FlaskClient, body: str) -> Any:
    return client.post("/api/v1/comments", data=body, content_type="application/json")


@pytest.mark.parametrize("field", ["text", "author", "website", "uri", "title", "site"])
def test_a_lone_surrogate_in_any_field_is_a_400_and_stores_nothing(
    scored: Flask, client: FlaskClient, site: Site, field: str
) -> None:
    assert post(client, site).status_code == 201
    body = (f'{{"site": "{site.key}", "uri": "/posts/hello", "text": "Nice post, thanks!", '
            f'"{field}": "oops \\ud800"}}')
    response = post_raw(client, body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_json"
    assert stored(scored) == 1
    # An escaped pair is an ordinary character.
    emoji = post_raw(client, f'{{"site": "{site.key}", "uri": "/posts/hello", '
                             f'"text": "Nice post \\ud83d\\ude00 thanks!"}}')
    assert emoji.status_code == 201 and "\U0001f600" in emoji.json["comment"]["html"]


@pytest.mark.parametrize("encoded", [
    # The escape in UTF-16: no b"\\ud" among the bytes.
    lambda body: body.encode("utf-16-le"),
    # The surrogate itself, encoded raw: bytes that are no UTF-8.
    lambda body: body.replace("\\ud800", "\ud800").encode("utf-8", "surrogatepass"),
], ids=["utf-16-escape", "raw-utf-8"])
def test_a_lone_surrogate_in_any_encoding_is_a_400(
    scored: Flask, client: FlaskClient, site: Site, encoded: Any
) -> None:
    body = f'{{"site": "{site.key}", "uri": "/posts/hello", "text": "hello \\ud800 there"}}'
    response = client.post("/api/v1/comments", data=encoded(body),
                           content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_json"
    assert stored(scored) == 0


def test_json_nested_too_deeply_is_a_400(app: Flask, client: FlaskClient, site: Site) -> None:
    body = f'{{"site": "{site.key}", "uri": ' + "[" * 30000 + "]" * 30000 + "}"
    response = post_raw(client, body)
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_json"
    counts = client.post("/api/v1/counts", data=body.replace('"uri"', '"uris"'),
                         content_type="application/json")
    assert counts.status_code == 400 and counts.json["error"]["code"] == "invalid_json"


def test_an_unparsable_uri_names_the_field(
    app: Flask, client: FlaskClient, site: Site
) -> None:
    read = client.get("/api/v1/comments", query_string={"site": site.key, "uri": "http://[x"})
    assert read.status_code == 400 and read.json["error"]["field"] == "uri"
    response = post(client, site, uri="http://[::1")
    assert response.status_code == 400 and response.json["error"]["field"] == "uri"
    counts = client.post("/api/v1/counts", json={"site": site.key, "uris": ["http://[x"]})
    assert counts.status_code == 400 and counts.json["error"]["field"] == "uris"


@pytest.mark.parametrize("parent", [2**40, 10**30, 0, -1])
def test_a_parent_id_out_of_range_names_the_field(
    scored: Flask, client: FlaskClient, site: Site, parent: int
) -> None:
    response = post(client, site, parent=parent)
    assert response.status_code == 400 and response.json["error"]["field"] == "parent"
    assert stored(scored) == 0


@pytest.mark.parametrize("key", ["ab\x00cd", "s_\u00e9t\u00e9", "x" * 65])
def test_a_site_key_of_the_wrong_shape_is_an_unknown_site(
    app: Flask, client: FlaskClient, site: Site, key: str
) -> None:
    read = client.get("/api/v1/comments", query_string={"site": key, "uri": "/posts/hello"})
    assert read.status_code == 404 and read.json["error"]["field"] == "site"
    response = client.post("/api/v1/comments", json={"site": key, "uri": "/p", "text": "Hi"})
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown_site"
    counts = client.post("/api/v1/counts", json={"site": key, "uris": ["/p"]})
    assert counts.status_code == 404 and counts.json["error"]["code"] == "unknown_site"


def test_every_percent_encoding_of_a_path_is_one_thread(
    scored: Flask, client: FlaskClient, site: Site
) -> None:
    spellings = [
        "/posts/旧区改造",  # as a blogger writes it
        "/posts/%E6%97%A7%E5%8C%BA%E6%94%B9%E9%80%A0",  # as location.pathname gives it
        "/posts/%e6%97%a7%e5%8c%ba%e6%94%b9%e9%80%a0/",
        "https://blog.example/posts/%E6%97%A7区改造?utm_source=x#comments",
    ]
    for uri in spellings:
        assert post(client, site, uri=uri).status_code == 201
    with scored.app_context():
        assert db.session.execute(select(Thread.uri)).scalars().all() == ["/posts/旧区改造"]
    counts = client.post("/api/v1/counts", json={"site": site.key, "uris": spellings})
    assert counts.json["counts"] == {uri: 4 for uri in spellings}
    page = client.get("/api/v1/comments", query_string={"site": site.key, "uri": spellings[1]})
    assert page.json["total"] == 4


def test_paths_that_differ_stay_apart(scored: Flask, client: FlaskClient, site: Site) -> None:
    # One page, however spelt ...
    assert comments.normalise_uri("/a b") == comments.normalise_uri("/a%20b") == "/a%20b"
    assert comments.normalise_uri("/%41%7e") == "/A~"
    assert comments.normalise_uri("//2024/01/my-post") == "/2024/01/my-post"
    # ... but an escaped slash or percent sign is not a plain one, nor is text that is not UTF-8.
    assert comments.normalise_uri("/a%2fb") == "/a%2Fb" != comments.normalise_uri("/a/b")
    assert comments.normalise_uri("/100%25") == comments.normalise_uri("/100%") == "/100%25"
    assert comments.normalise_uri("/gbk/%C9%CF%BA%A3") == "/gbk/%C9%CF%BA%A3"
    assert comments.normalise_uri("/%41%FF") == comments.normalise_uri("/A%ff") == "/A%FF"
    # What browsers escape in location.pathname is escaped, a backslash is a slash.
    assert comments.normalise_uri("/a^b|c") == comments.normalise_uri("/a%5eb%7Cc") == "/a%5Eb%7Cc"
    assert comments.normalise_uri("/a\\b") == "/a/b"
    # Text that would not show as itself stays escaped: spaces, controls, combining marks.
    assert comments.normalise_uri("/a%E3%80%80b") == comments.normalise_uri("/a\u3000b")
    assert comments.normalise_uri("/a\u3000b") == "/a%E3%80%80b"
    # Normalising a normalised path changes nothing.
    for raw in ["/a b", "/%E6%97%A7", "/a%252F", "/x%2fy z", "/%e2%80%8bzero", "/a%C2%A0",
                "/区%41%%41e", "/<\u0301", "/3%E3%80%80", "/é/%E2%80%A9"]:
        once = comments.normalise_uri(raw)
        assert comments.normalise_uri(once) == once, raw


def _chain(app: Flask, site: Site, length: int) -> list[int]:
    """Store a published comment and a chain of replies, each to the one before."""
    with app.app_context():
        thread = Thread(site_id=site.id, uri="/posts/hello", title="")
        db.session.add(thread)
        db.session.flush()
        ids: list[int] = []
        for n in range(length):
            comment = Comment(
                site_id=site.id, thread_id=thread.id, text=f"reply {n}", html=f"<p>reply {n}</p>",
                status=Status.PUBLISHED, created_at=utcnow(),
                parent_id=ids[-1] if ids else None, root_id=ids[0] if ids else None,
            )
            db.session.add(comment)
            db.session.flush()
            ids.append(comment.id)
        db.session.commit()
        return ids


def test_a_reply_chain_of_any_length_still_loads(
    app: Flask, client: FlaskClient, site: Site
) -> None:
    ids = _chain(app, site, 600)
    response = client.get("/api/v1/comments", query_string={"site": site.key,
                                                             "uri": "/posts/hello"})
    assert response.status_code == 200 and response.json["total"] == 600
    seen, depth, level = [], 0, response.json["comments"]
    while level:
        depth += 1
        seen += [node["id"] for node in level]
        level = [child for node in level for child in node["replies"]]
    assert sorted(seen) == ids
    assert depth == comments.MAX_DEPTH
    # The deepest level lists the rest of the chain in order, each with its real parent.
    stack = response.json["comments"]
    for _ in range(comments.MAX_DEPTH - 1):
        stack = stack[0]["replies"]
    assert [n["id"] for n in stack] == ids[comments.MAX_DEPTH - 1:]
    assert [n["parent"] for n in stack] == ids[comments.MAX_DEPTH - 2:-1]


def test_upgrading_merges_the_threads_of_one_page_spelt_two_ways(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=url))
    with app.app_context():
        upgrade(revision="9c1f4e2ab7d0")  # before one spelling per URI
        db.session.execute(text("INSERT INTO site (id, key, name, origins, settings, created_at)"
                                " VALUES (1, 's_one', 'Blog', '[]', '{}', '2026-01-01')"))
        for thread_id, uri in [(1, "/posts/%E6%97%A7%E5%8C%BA"), (2, "/posts/旧区"),
                               (3, "/posts/%e6%97%a7%e5%8c%ba"), (4, "/other%7e"),
                               (5, "/tag/\u3000"), (6, "/tag/%E3%80%80")]:
            db.session.execute(text("INSERT INTO thread (id, site_id, uri, title, created_at) "
                                    "VALUES (:id, 1, :uri, '', '2026-01-01')"),
                               {"id": thread_id, "uri": uri})
            db.session.add(Comment(site_id=1, thread_id=thread_id, text="hi", html="<p>hi</p>",
                                   status=Status.PUBLISHED))
        db.session.commit()
        upgrade()
        threads = db.session.execute(text("SELECT id, uri FROM thread ORDER BY id")).all()
        assert [tuple(t) for t in threads] == [(1, "/posts/旧区"), (4, "/other~"),
                                               (5, "/tag/%E3%80%80")]
        per_thread = db.session.execute(text(
            "SELECT thread_id, count(*) FROM comment GROUP BY thread_id ORDER BY thread_id")).all()
        assert [tuple(row) for row in per_thread] == [(1, 3), (4, 1), (5, 2)]
        db.engine.dispose()


@pytest.mark.parametrize("text", ["Try my _casino_ tonight", "Try my __casino__ tonight",
                                  "Try my ca*sino* tonight", "Try my &#99;asino tonight",
                                  "来玩casino赚钱", "Try my ca\u2063sino tonight"])
def test_a_banned_word_is_found_in_the_text_as_readers_see_it(
    scored: Flask, client: FlaskClient, text: str
) -> None:
    site = add_site(scored, settings={"banned_words": ["casino"]})
    response = post(client, site, text=text)
    assert response.status_code == 422, response.json
    with scored.app_context():
        [reasons] = db.session.execute(select(Comment.reasons)).scalars().all()
    assert "banned words: casino" in reasons
    assert post(client, site, text="A casual remark about cards").status_code == 201


def test_a_removed_comment_at_the_depth_cap_stays_while_replies_below_it_do(
    app: Flask, client: FlaskClient, site: Site
) -> None:
    ids = _chain(app, site, comments.MAX_DEPTH + 3)
    removed = ids[comments.MAX_DEPTH - 1]  # the last one nested in place
    with app.app_context():
        db.session.get(Comment, removed).status = Status.DELETED
        db.session.commit()
    page = client.get("/api/v1/comments", query_string={"site": site.key,
                                                         "uri": "/posts/hello"}).json
    level = page["comments"]
    for _ in range(comments.MAX_DEPTH - 1):
        level = level[0]["replies"]
    assert [(n["id"], n.get("deleted", False)) for n in level] == [
        (removed, True), *[(i, False) for i in ids[comments.MAX_DEPTH:]]]
    assert level[1]["parent"] == removed


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1E999"])
def test_numbers_that_are_not_standard_json_are_a_400_and_store_nothing(
    scored: Flask, client: FlaskClient, site: Site, number: str
) -> None:
    # NaN compares false with every number: "elapsed_ms": NaN passed the fill-time check.
    response = post_raw(client, f'{{"site": "{site.key}", "uri": "/posts/hello", '
                                f'"text": "Nice post, thanks!", "elapsed_ms": {number}}}')
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_json"
    assert stored(scored) == 0
    counts = client.post("/api/v1/counts", content_type="application/json",
                         data=f'{{"site": "{site.key}", "uris": ["/posts/hello"], '
                              f'"x": [{number}]}}')
    assert counts.status_code == 400 and counts.json["error"]["code"] == "invalid_json"
    # Ordinary numbers, a fraction or an exponent among them, are still numbers.
    fine = post_raw(client, f'{{"site": "{site.key}", "uri": "/posts/hello", '
                            '"text": "Nice post, thanks!", "elapsed_ms": 2.5e3}')
    assert fine.status_code == 201, fine.json
    assert stored(scored) == 1
