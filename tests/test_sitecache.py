"""Per-worker site snapshots: changes in this process apply at once, others within the TTL."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from sqlalchemy import update

from moderation import sitecache
from moderation.db import Site, Webhook, WebhookDelivery, db
from tests.conftest import add_site, make_app

BLOG = "https://blog.example"


def listing(app: Flask, key: str) -> int:
    response = app.test_client().get(
        "/api/v1/comments", query_string={"site": key, "uri": "/p"}, headers={"Origin": BLOG}
    )
    return response.status_code


def test_a_settings_change_in_this_process_applies_to_the_next_request() -> None:
    app = make_app(SITE_CACHE_SECONDS=3600)
    key = add_site(app).key
    assert listing(app, key) == 403  # the blog is not an allowed origin yet: now cached
    with app.app_context():
        site = db.session.execute(db.select(Site).where(Site.key == key)).scalar_one()
        site.origins = [BLOG]
        db.session.commit()
    assert listing(app, key) == 200


def test_a_change_made_by_another_worker_is_seen_within_site_cache_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The cache's clock is the test's: a slow machine cannot let the snapshot expire early.
    now = [time.monotonic()]
    monkeypatch.setattr(sitecache.time, "monotonic", lambda: now[0])
    app = make_app(SITE_CACHE_SECONDS=5)
    key = add_site(app).key
    assert listing(app, key) == 403
    with app.app_context():
        # What another worker's commit looks like from here: rows change, no flush in this process.
        db.session.execute(update(Site).where(Site.key == key).values(origins=[BLOG]))
        db.session.commit()
    now[0] += 4.9
    assert listing(app, key) == 403  # still the snapshot
    now[0] += 0.2
    assert listing(app, key) == 200


def test_an_unknown_key_stays_unknown_and_does_not_grow_the_cache_without_bound() -> None:
    app = make_app()
    for n in range(50):
        response = app.test_client().get(
            "/api/v1/comments", query_string={"site": f"s_nope{n}", "uri": "/p"})
        assert response.status_code == 404
        assert response.json["error"]["field"] == "site"
    with app.app_context():
        cache = app.extensions["site_cache"]
        assert len(cache._sites) == 50
        from moderation import sitecache

        sitecache.MAX_KEYS, old = 10, sitecache.MAX_KEYS
        try:
            for n in range(20):
                cache.site(f"s_more{n}")
            assert len(cache._sites) <= 10
        finally:
            sitecache.MAX_KEYS = old


def test_a_new_webhook_in_this_process_gets_the_next_event() -> None:
    app = make_app(SITE_CACHE_SECONDS=3600)
    site = add_site(app)
    client = app.test_client()

    def post(text: str) -> None:
        body = {"site": site.key, "uri": "/p", "text": text}
        assert client.post("/api/v1/comments", json=body).status_code in (201, 202)

    post("before any hook")  # caches "no site has webhooks"
    with app.app_context():
        db.session.add(Webhook(site_id=site.id, url="https://hooks.example/x", secret="s" * 32))
        db.session.commit()
    post("after the hook was added")
    with app.app_context():
        queued = db.session.execute(db.select(WebhookDelivery.event)).scalars().all()
    assert queued == ["comment.held"] or queued == ["comment.created"]
