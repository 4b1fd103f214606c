"""The embed widget's assets, the demo blog and the server-side checks against simple bots."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from moderation.db import Comment, Site, Status, Thread, db, utcnow
from moderation.embed import STATIC
from moderation.openapi import build_document
from tests import fakes
from tests.conftest import add_site, clear_tables, make_app

SIZE_BUDGET = 20 * 1024
EN_POST = "/demo/posts/tariffs-and-the-grocery-bill"
ZH_POST = "/demo/zh/posts/old-neighbourhood-renewal"


# -- assets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/embed.js", "text/javascript; charset=utf-8"), ("/embed.css", "text/css; charset=utf-8")],
)
def test_assets_are_served_with_long_lived_caching(
    client: FlaskClient, path: str, content_type: str
) -> None:
    response = client.get(path, headers={"Origin": "https://any-blog.example"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in response.headers
    etag = response.headers["ETag"]

    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""

    versioned = client.get(path, query_string={"v": etag.strip('"')})
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    stale = client.get(path, query_string={"v": "old"})
    assert stale.headers["Cache-Control"] == "public, max-age=86400"


def test_script_asks_for_the_current_stylesheet(client: FlaskClient) -> None:
    script = client.get("/embed.js").get_data(as_text=True)
    css_version = client.get("/embed.css").headers["ETag"].strip('"')
    assert "__EMBED_CSS_VERSION__" not in script
    assert f'var CSS_VERSION = "{css_version}";' in script


def test_widget_fits_the_size_budget(client: FlaskClient) -> None:
    sizes = {
        path: len(gzip.compress(client.get(path).data, compresslevel=9))
        for path in ("/embed.js", "/embed.css")
    }
    assert sum(sizes.values()) <= SIZE_BUDGET, sizes


def test_widget_source_avoids_eval_cookies_and_injected_styles() -> None:
    script = (STATIC / "embed.js").read_text()
    for forbidden in ("eval(", "new Function", "document.write", "document.cookie",
                      ".style.", '"style"', "innerHTML = text", "localStorage.clear"):
        assert forbidden not in script, forbidden
    # Every URL the script fetches starts with the API origin it was loaded from.
    assert re.findall(r"fetch\(([^,]+),", script) == ['API + "/api/v1" + path']
    # Regular expressions that older browsers (Safari before 16.4) cannot parse would stop the
    # whole script: no lookbehind; \p{...} classes need the u flag, supported everywhere else.
    assert "(?<" not in script


# -- server-side honeypot and minimum fill time ---------------------------------------------


def _post(client: FlaskClient, site: Site, **fields: Any) -> Any:
    body = {"site": site.key, "uri": "/posts/hello", "text": "A thoughtful reply.", **fields}
    return client.post("/api/v1/comments", json=body, headers={"Origin": "https://blog.example"})


def _stored(app: Flask) -> list[Comment]:
    with app.app_context():
        rows = db.session.execute(select(Comment).order_by(Comment.id)).scalars().all()
        db.session.expunge_all()
        return list(rows)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"hp": "http://cheap.example", "elapsed_ms": 9000}, "bot: honeypot field filled in"),
        ({"hp": "", "elapsed_ms": 350}, "bot: form filled in 350 ms (minimum 2000 ms)"),
        ({"elapsed_ms": 0}, "bot: form filled in 0 ms (minimum 2000 ms)"),
    ],
)
def test_bot_signals_answer_like_a_rejection_and_go_to_spam(
    app: Flask, client: FlaskClient, site: Site, fields: dict[str, Any], reason: str
) -> None:
    fakes.install(app)
    policy_rejection = _post(client, site, text="cheap viagra here")
    response = _post(client, site, **fields)
    assert response.status_code == 422
    assert response.json == policy_rejection.json  # nothing tells a bot which rule fired
    comment = _stored(app)[-1]
    assert comment.status == Status.SPAM
    assert comment.reasons[0] == reason
    assert comment.text == "A thoughtful reply."
    assert _post(client, site).status_code == 201  # the thread itself still works


@pytest.mark.parametrize(
    "fields", [{}, {"hp": "", "elapsed_ms": 2000}, {"hp": None, "elapsed_ms": 61_000.5}]
)
def test_human_fill_times_and_other_clients_are_not_affected(
    app: Flask, client: FlaskClient, site: Site, fields: dict[str, Any]
) -> None:
    fakes.install(app)
    response = _post(client, site, **fields)
    assert response.status_code == 201, response.json
    assert _stored(app)[0].status == Status.PUBLISHED


def test_minimum_fill_time_is_configurable() -> None:
    app = make_app(MIN_FILL_MS=100)
    fakes.install(app)
    site = add_site(app, origins=["https://blog.example"])
    client = app.test_client()
    assert _post(client, site, elapsed_ms=150).status_code == 201
    assert _post(client, site, elapsed_ms=50).status_code == 422


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"hp": 1}, "hp"), ({"elapsed_ms": "fast"}, "elapsed_ms"),
     ({"elapsed_ms": True}, "elapsed_ms"), ({"elapsed_ms": -5}, "elapsed_ms")],
)
def test_malformed_bot_fields_name_the_field_and_store_nothing(
    app: Flask, client: FlaskClient, site: Site, fields: dict[str, Any], field: str
) -> None:
    response = _post(client, site, **fields)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert _stored(app) == []


def test_openapi_documents_the_bot_fields() -> None:
    fields = build_document()["components"]["schemas"]["NewComment"]["properties"]
    assert "honeypot" in fields["hp"]["description"].lower()
    assert "MIN_FILL_MS" in fields["elapsed_ms"]["description"]


# -- demo blog and its seed command ---------------------------------------------------------


@pytest.fixture
def demo_app() -> Iterator[Flask]:
    """Return an app with the demo pages switched on and the shipped model, as dev.py serves."""
    app = make_app(DEMO=True, MODEL_DIR=str(Path(__file__).parent.parent / "models"))
    yield app
    clear_tables(app)


def _seed(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["demo", "seed", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_pages_are_off_unless_configured(client: FlaskClient) -> None:
    assert client.get("/demo/").status_code == 404
    assert client.get(EN_POST).status_code == 404


def test_demo_seed_is_idempotent_and_prints_the_snippet(demo_app: Flask) -> None:
    first = _seed(demo_app, "--origin", "http://localhost:5000")
    second = _seed(demo_app, "--origin", "http://localhost:5000", "--origin", "http://blog.test")
    with demo_app.app_context():
        sites = db.session.execute(select(Site)).scalars().all()
        assert [s.name for s in sites] == ["Demo blog"]
        site = sites[0]
        assert site.origins == [
            "http://localhost:5000", "http://127.0.0.1:5000", "http://blog.test"
        ]
        rows = db.session.execute(
            select(Thread.uri, Comment).join(Thread, Comment.thread_id == Thread.id)
        ).all()
    snippet = (f'<div id="comments"></div><script src="http://127.0.0.1:5000/embed.js" '
               f'data-site="{site.key}" async></script>')
    assert snippet in first and snippet in second
    # The sample thread is published; the incoming submissions went through the policy and
    # wait in the dashboard's queues (link spam rejected, an insult and a WeChat ad held).
    assert "Added 9 sample comments and 4 for the moderation queue (3 pending, 1 spam)." in first
    assert "already there" in second
    by_uri = {uri: [c for u, c in rows if u == uri] for uri in (EN_POST, ZH_POST)}
    assert (len(by_uri[EN_POST]), len(by_uri[ZH_POST])) == (7, 6)
    queued = {c.author: c.status for _, c in rows if c.status != Status.PUBLISHED}
    assert queued == {"Lucky Win 888": Status.SPAM, "Realist": Status.PENDING,
                      "兼职赚钱": Status.PENDING, "看不下去": Status.PENDING}
    assert all(c.model_version for _, c in rows if c.author in queued)
    assert any(c.parent_id for c in by_uri[EN_POST]) and any(c.parent_id for c in by_uri[ZH_POST])
    assert any("电梯" in c.text for c in by_uri[ZH_POST])
    assert all(c.created_at < utcnow() - timedelta(hours=2)
               for _, c in rows if c.author not in queued)


def test_demo_seed_without_the_queue_adds_the_sample_thread_only(demo_app: Flask) -> None:
    assert "Added 9 sample comments." in _seed(demo_app, "--no-queue")
    with demo_app.app_context():
        statuses = db.session.execute(select(Comment.status)).scalars().all()
    assert statuses == [Status.PUBLISHED] * 9


def test_demo_seed_refuses_a_bad_origin(demo_app: Flask) -> None:
    result = demo_app.test_cli_runner().invoke(args=["demo", "seed", "--origin", "localhost"])
    assert result.exit_code != 0
    assert "not an origin" in result.output


def test_demo_pages_load_the_widget_from_the_other_origin(demo_app: Flask) -> None:
    client = demo_app.test_client()
    unseeded = client.get(EN_POST, base_url="http://localhost:5000")
    assert unseeded.status_code == 200
    assert "demo seed" in unseeded.get_data(as_text=True)
    assert "embed.js" not in unseeded.get_data(as_text=True)

    _seed(demo_app)
    with demo_app.app_context():
        key = db.session.execute(select(Site.key)).scalar_one()
    en = client.get(EN_POST, base_url="http://localhost:5000")
    html = en.get_data(as_text=True)
    assert '<html lang="en">' in html
    assert f'<script src="http://127.0.0.1:5000/embed.js" data-site="{key}" async>' in html
    assert '<div id="comments"></div>' in html
    csp = en.headers["Content-Security-Policy"]
    assert "script-src 'self' http://127.0.0.1:5000;" in csp
    assert "connect-src 'self' http://127.0.0.1:5000;" in csp
    assert "unsafe-inline" not in csp

    zh = client.get(ZH_POST, base_url="http://127.0.0.1:5000").get_data(as_text=True)
    assert '<html lang="zh-CN">' in zh
    assert 'src="http://localhost:5000/embed.js"' in zh
    assert "首页" in zh and "老旧小区改造" in zh

    index = client.get("/demo/", base_url="http://localhost:5000").get_data(as_text=True)
    assert f'data-comments-count="{EN_POST}"' in index
    assert f'data-comments-count="{ZH_POST}"' in index
    dark = client.get(EN_POST, query_string={"theme": "dark"}).get_data(as_text=True)
    assert 'data-theme="dark"' in dark


def test_demo_api_origin_can_be_configured() -> None:
    app = make_app(DEMO=True, DEMO_API_ORIGIN="https://comments.example/")
    _seed(app)
    html = app.test_client().get(EN_POST).get_data(as_text=True)
    assert 'src="https://comments.example/embed.js"' in html


@pytest.mark.usefixtures("steady_window")
def test_a_429_is_readable_cross_origin_with_its_retry_after() -> None:
    app = make_app(RATELIMIT_ENABLED=True, LIMIT_POST="1/minute")
    fakes.install(app)
    site = add_site(app, origins=["https://blog.example"])
    client = app.test_client()
    assert _post(client, site).status_code == 201
    limited = _post(client, site)
    assert limited.status_code == 429
    assert limited.headers["Access-Control-Allow-Origin"] == "https://blog.example"
    assert "Retry-After" in limited.headers["Access-Control-Expose-Headers"]
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    stranger = client.post("/api/v1/comments", json={"site": site.key, "uri": "/x", "text": "hi"},
                           headers={"Origin": "https://evil.example"})
    # An origin the site does not allow is refused before any limit is counted.
    assert stranger.status_code == 403 and stranger.json["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in stranger.headers
