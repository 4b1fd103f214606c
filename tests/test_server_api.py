"""The server-to-server API: keys and scopes, posting on behalf, moderation, analyze, feedback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from moderation import keys
from moderation.db import ApiKey, Ban, Comment, Label, ModerationEvent, Site, db
from tests import fakes
from tests.conftest import IN_CI, add_site, clear_tables, make_app

READER = {"addr": "203.0.113.7", "user_agent": "Mozilla/5.0 (reader)"}


def issue(app: Flask, site: Site, scopes: tuple[str, ...] = keys.SCOPES) -> str:
    with app.app_context():
        issued = keys.issue(db.session.get(Site, site.id), scopes)
        db.session.commit()
        return issued.key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def key(app: Flask, site: Site) -> str:
    return issue(app, site)


def post_as_reader(client: FlaskClient, key: str, **fields: Any) -> Any:
    body = {"uri": "/posts/hello", "text": "Nice post, thanks!", "reader": READER, **fields}
    return client.post("/api/v1/manage/comments", json=body, headers=auth(key))


# -- keys ---------------------------------------------------------------------------------------


def test_keys_are_stored_hashed_and_missing_or_wrong_keys_get_401(
    app: Flask, client: FlaskClient, site: Site, key: str
) -> None:
    with app.app_context():
        stored = db.session.execute(select(ApiKey)).scalar_one()
        assert key.startswith(f"mk_{stored.prefix}_")
        assert key not in stored.key_hash and stored.key_hash == keys.hash_key(key)

    for headers in ({}, auth(key + "x"), auth("mk_deadbeef_nope"), {"Authorization": key}):
        response = client.get("/api/v1/manage/comments", headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # A key in the query string is for the Perspective endpoint only, not for this API.
    assert client.get("/api/v1/manage/comments", query_string={"key": key}).status_code == 401

    info = client.get("/api/v1/manage/key", headers=auth(key))
    assert info.status_code == 200
    assert info.json["key"]["site"] == site.key
    assert sorted(info.json["key"]["scopes"]) == sorted(keys.SCOPES)


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"),
    [
        ("get", "/api/v1/manage/comments", None, "read"),
        ("post", "/api/v1/manage/comments",
         {"uri": "/p", "text": "hello there", "reader": READER}, "write"),
        ("post", "/api/v1/manage/moderation", {"ids": [1], "action": "approve"}, "moderate"),
        ("get", "/api/v1/manage/webhooks", None, "moderate"),
        ("post", "/api/v1/analyze", {"text": "hello there"}, "analyze"),
        ("post", "/api/v1/feedback", {"text": "hello there", "label": "ham"}, "analyze"),
    ],
)
def test_each_route_needs_its_scope(
    scored: Flask, client: FlaskClient, site: Site, method: str, path: str,
    body: dict[str, Any] | None, scope: str,
) -> None:
    others = tuple(s for s in keys.SCOPES if s != scope)
    without = issue(scored, site, others)
    response = getattr(client, method)(path, json=body, headers=auth(without))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "insufficient_scope"
    assert scope in response.json["error"]["message"]

    only = issue(scored, site, (scope,))
    response = getattr(client, method)(path, json=body, headers=auth(only))
    assert response.status_code not in (401, 403), response.json


def test_rotation_revokes_old_keys_and_the_cli_prints_keys_once(
    app: Flask, site: Site
) -> None:
    runner = app.test_cli_runner()
    added = runner.invoke(args=["site", "add", "--name", "Other", "--json"])
    assert added.exit_code == 0, added.output
    created = json.loads(added.output)
    old = created["api_key"]
    client = app.test_client()
    assert client.get("/api/v1/manage/key", headers=auth(old)).status_code == 200

    human = runner.invoke(args=["site", "add", "--name", "Third"])
    assert "API key (shown once" in human.output and "mk_" in human.output

    rotated = runner.invoke(
        args=["site", "rotate-key", created["key"], "--scopes", "read,analyze", "--json"]
    )
    assert rotated.exit_code == 0, rotated.output
    result = json.loads(rotated.output)
    assert result["revoked"] == 1 and result["scopes"] == ["read", "analyze"]
    assert client.get("/api/v1/manage/key", headers=auth(old)).status_code == 401
    new = client.get("/api/v1/manage/key", headers=auth(result["api_key"]))
    assert new.status_code == 200 and new.json["key"]["scopes"] == ["read", "analyze"]
    assert new.json["key"]["site"] == created["key"]

    bad = runner.invoke(args=["site", "rotate-key", created["key"], "--scopes", "root"])
    assert bad.exit_code != 0 and "scopes must be some of" in bad.output
    missing = runner.invoke(args=["site", "rotate-key", "s_nope"])
    assert missing.exit_code != 0 and "no site with key" in missing.output
    # The failed rotations changed nothing.
    assert client.get("/api/v1/manage/key", headers=auth(result["api_key"])).status_code == 200


def test_a_key_sees_only_its_own_site(
    scored: Flask, client: FlaskClient, site: Site, key: str
) -> None:
    other = add_site(scored, "Other")
    other_key = issue(scored, other)
    comment_id = post_as_reader(client, key).json["comment"]["id"]
    assert client.get(f"/api/v1/manage/comments/{comment_id}",
                      headers=auth(other_key)).status_code == 404
    moderated = client.post(f"/api/v1/manage/comments/{comment_id}/moderation",
                            json={"action": "delete"}, headers=auth(other_key))
    assert moderated.status_code == 404
    assert client.get("/api/v1/manage/comments", headers=auth(other_key)).json["total"] == 0
    feedback = client.post("/api/v1/feedback", json={"comment": comment_id, "label": "spam"},
                           headers=auth(other_key))
    assert feedback.status_code == 404


@pytest.mark.usefixtures("steady_window")
def test_per_key_rate_limit_counts_each_key_separately() -> None:
    app = make_app(RATELIMIT_ENABLED=True, LIMIT_API_KEY="3/minute")
    site = add_site(app)
    first, second = issue(app, site), issue(app, site)
    client = app.test_client()
    # One budget per key, whatever endpoints it is spent on.
    assert client.get("/api/v1/manage/key", headers=auth(first)).status_code == 200
    assert client.get("/api/v1/manage/comments", headers=auth(first)).status_code == 200
    assert client.get("/api/v1/manage/webhooks", headers=auth(first)).status_code == 200
    limited = client.get("/api/v1/manage/key", headers=auth(first))
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "too_many_requests"
    assert "Retry-After" in limited.headers
    assert client.get("/api/v1/manage/key", headers=auth(second)).status_code == 200
    # Guessing keys from the same address is limited too, without touching real keys' budgets.
    for path in ("/api/v1/manage/key", "/api/v1/manage/comments", "/api/v1/manage/key"):
        assert client.get(path, headers=auth("mk_x_y")).status_code == 401
    assert client.get("/api/v1/manage/webhooks", headers=auth("mk_x_y")).status_code == 429
    assert client.get("/api/v1/manage/key", headers=auth(second)).status_code == 200


@pytest.fixture
def post_limited(database_url: str) -> Iterator[Flask]:
    """Return a scored app with rate limits on and LIMIT_POST at 2/minute."""
    app = make_app(database_url, RATELIMIT_ENABLED=True, LIMIT_POST="2/minute")
    fakes.install(app)
    yield app
    clear_tables(app)


def stored_count(app: Flask) -> int:
    with app.app_context():
        return len(db.session.execute(select(Comment.id)).all())


@pytest.mark.usefixtures("steady_window")
def test_reader_limit_is_the_sites_own_post_limit(post_limited: Flask) -> None:
    site = add_site(post_limited, settings={"limits": {"post": "1/minute"}})
    generous = add_site(post_limited, "Generous", settings={"limits": {"post": "100/minute"}})
    key = issue(post_limited, site)
    client = post_limited.test_client()
    assert post_as_reader(client, key).status_code == 201
    limited = post_as_reader(client, key)
    assert limited.status_code == 429, limited.json
    assert limited.json["error"]["code"] == "too_many_requests"
    assert "Retry-After" in limited.headers
    assert limited.headers.getlist("X-RateLimit-Limit") == ["1"]
    # The key names the site: a ?site= naming another site does not lend its limits.
    other = client.post("/api/v1/manage/comments", query_string={"site": generous.key},
                        json={"uri": "/p", "text": "hello there", "reader": READER},
                        headers=auth(key))
    assert other.status_code == 429
    # Another reader of the same site has a budget of their own, also one next door (as on
    # the public API, an IPv4 address is one client), but not another address of an IPv6 /64.
    assert post_as_reader(client, key, reader={"addr": "198.51.100.9"}).status_code == 201
    assert post_as_reader(client, key, reader={"addr": "198.51.100.10"}).status_code == 201
    assert post_as_reader(client, key, reader={"addr": "2001:db8:1:2::1"}).status_code == 201
    assert post_as_reader(client, key, reader={"addr": "2001:db8:1:2::2"}).status_code == 429
    assert stored_count(post_limited) == 4


@pytest.mark.usefixtures("steady_window")
def test_analyze_store_counts_against_the_readers_post_limit(post_limited: Flask) -> None:
    key = issue(post_limited, add_site(post_limited))
    client = post_limited.test_client()

    def analyze(**fields: Any) -> Any:
        body = {"text": "fine words", "uri": "/posts/x", "reader": READER, **fields}
        return client.post("/api/v1/analyze", json=body, headers=auth(key))

    assert analyze(store=True).status_code == 201
    assert post_as_reader(client, key).status_code == 201
    # LIMIT_POST (2/minute) is used up, by either route: storing through /analyze is refused.
    refused = analyze(store=True)
    assert refused.status_code == 429, refused.json
    assert refused.json["error"]["code"] == "too_many_requests"
    assert post_as_reader(client, key).status_code == 429
    assert stored_count(post_limited) == 2
    # Only scoring stores nothing: it stays open to the site whatever its readers posted.
    for _ in range(3):
        assert analyze().status_code == 200
    assert analyze(store=True, reader={"addr": "198.51.100.9"}).status_code == 201


# -- posting on behalf and listing --------------------------------------------------------------


def test_post_on_behalf_of_a_reader_keeps_their_address_and_agent(
    scored: Flask, client: FlaskClient, site: Site, key: str
) -> None:
    published = post_as_reader(client, key, author="Ann")
    assert published.status_code == 201, published.json
    comment = published.json["comment"]
    assert comment["status"] == "published"
    assert comment["client_addr"] == "203.0.113.0"
    assert comment["user_agent"] == READER["user_agent"]
    assert published.json["edit_token"]
    assert published.headers["Location"].endswith(f"/api/v1/manage/comments/{comment['id']}")
    # The reader can see it through the public API like any other comment.
    public = client.get("/api/v1/comments", query_string={"site": site.key, "uri": "/posts/hello"})
    assert [c["id"] for c in public.json["comments"]] == [comment["id"]]

    held = post_as_reader(client, key, text="a borderline remark")
    assert held.status_code == 202
    assert held.json["decision"]["action"] == "hold"
    assert any("toxicity" in r for r in held.json["decision"]["reasons"])

    rejected = post_as_reader(client, key, text="buy viagra now")
    assert rejected.status_code == 422
    assert rejected.json["error"]["code"] == "rejected"
    assert rejected.json["comment"]["status"] == "spam"

    with scored.app_context():
        actors = db.session.execute(
            select(ModerationEvent.actor).where(ModerationEvent.action == "submit")
        ).scalars().all()
        prefix = db.session.execute(select(ApiKey.prefix)).scalar_one()
    assert actors == [f"api:{prefix}"] * 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"uri": "/p", "text": "hello there"}, "reader"),
        ({"uri": "/p", "text": "hello there", "reader": {"addr": "nope"}}, "reader.addr"),
        ({"uri": "/p", "text": "hello there", "reader": {**READER, "x": 1}}, "reader.x"),
        ({"uri": "/p", "text": "hi there", "reader": {"addr": "1.2.3.4", "ua": 5}}, "reader.ua"),
        ({"uri": "/p", "text": "hello there", "reader": READER, "site": "s_x"}, "site"),
        ({"uri": "/p", "text": "", "reader": READER}, "text"),
        ({"text": "hello there", "reader": READER}, "uri"),
    ],
)
def test_bad_posts_name_the_field_and_store_nothing(
    scored: Flask, client: FlaskClient, key: str, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/manage/comments", json=body, headers=auth(key))
    assert response.status_code == 400, response.json
    assert response.json["error"]["field"] == field
    with scored.app_context():
        assert db.session.execute(select(Comment)).first() is None


def test_list_includes_held_comments_with_status_filters(
    scored: Flask, client: FlaskClient, key: str
) -> None:
    post_as_reader(client, key, text="first, fine")
    post_as_reader(client, key, text="a borderline one", uri="/other")
    post_as_reader(client, key, text="viagra viagra")
    everything = client.get("/api/v1/manage/comments", headers=auth(key)).json
    assert everything["total"] == 3
    assert [c["status"] for c in everything["comments"]] == ["spam", "pending", "published"]
    held = client.get("/api/v1/manage/comments", query_string={"status": "pending"},
                      headers=auth(key)).json
    assert [c["text"] for c in held["comments"]] == ["a borderline one"]
    assert held["comments"][0]["scores"]["toxicity"] == 0.6
    by_page = client.get("/api/v1/manage/comments", query_string={"uri": "/other/"},
                         headers=auth(key)).json
    assert by_page["total"] == 1
    paged = client.get("/api/v1/manage/comments",
                       query_string={"per_page": 1, "page": 2, "order": "oldest"},
                       headers=auth(key)).json
    assert paged["pages"] == 3 and paged["comments"][0]["status"] == "pending"
    bad = client.get("/api/v1/manage/comments", query_string={"status": "pending,lost"},
                     headers=auth(key))
    assert bad.status_code == 400 and bad.json["error"]["field"] == "status"


# -- moderation ---------------------------------------------------------------------------------


def test_moderation_writes_the_audit_trail_labels_and_bans(
    scored: Flask, client: FlaskClient, site: Site, key: str
) -> None:
    held = post_as_reader(client, key, text="a borderline take", email="Ann@Example.org")
    spam = post_as_reader(client, key, text="cheap pills", website="https://pills.example/buy")
    held_id, spam_id = held.json["comment"]["id"], spam.json["comment"]["id"]

    approved = client.post(f"/api/v1/manage/comments/{held_id}/moderation",
                           json={"action": "approve", "reason": "fair point"}, headers=auth(key))
    assert approved.status_code == 200, approved.json
    assert approved.json["comments"][0]["status"] == "published"

    banned = client.post(
        "/api/v1/manage/moderation",
        json={"ids": [spam_id], "action": "spam", "ban": {"by": "domain", "days": 30}},
        headers=auth(key),
    )
    assert banned.status_code == 200, banned.json
    assert banned.json["comments"][0]["status"] == "spam"
    assert banned.json["bans"][0]["kind"] == "domain"
    assert banned.json["bans"][0]["value"] == "pills.example"
    # The ban now applies to new comments linking that domain.
    again = post_as_reader(client, key, text="see https://shop.pills.example/x")
    assert again.status_code == 422
    assert any("banned" in r for r in again.json["decision"]["reasons"])

    only_ban = client.post(f"/api/v1/manage/comments/{held_id}/moderation",
                           json={"action": "ban"}, headers=auth(key))
    assert only_ban.json["bans"][0] == {**only_ban.json["bans"][0], "kind": "email",
                                        "value": "ann@example.org", "expires": None}
    assert only_ban.json["comments"][0]["status"] == "published"
    # Asking again keeps the one ban in force: no second row, no second audit entry.
    repeated = client.post(f"/api/v1/manage/comments/{held_id}/moderation",
                           json={"action": "ban"}, headers=auth(key))
    assert repeated.json["bans"][0]["id"] == only_ban.json["bans"][0]["id"]

    with scored.app_context():
        prefix = db.session.execute(select(ApiKey.prefix)).scalar_one()
        events = db.session.execute(
            select(ModerationEvent.action, ModerationEvent.actor, ModerationEvent.reason)
            .where(ModerationEvent.action != "submit").order_by(ModerationEvent.id)
        ).all()
        labels = db.session.execute(select(Label.label, Label.source)).all()
        assert db.session.execute(select(Ban.kind, Ban.value)).all() == [
            ("domain", "pills.example"), ("email", "ann@example.org")]
    actor = f"api:{prefix}"
    assert [(a, who) for a, who, _ in events] == [
        ("approve", actor), ("spam", actor), ("ban", actor), ("ban", actor)]
    assert events[0][2] == "fair point"
    assert sorted(labels) == [("ham", actor), ("spam", actor)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ids": [], "action": "approve"}, "ids"),
        ({"ids": ["1"], "action": "approve"}, "ids"),
        ({"ids": [1], "action": "publish"}, "action"),
        ({"ids": [1], "action": "spam", "ban": {"by": "phone"}}, "ban.by"),
        ({"ids": [1], "action": "spam", "ban": {"days": 0}}, "ban.days"),
        ({"ids": [1], "action": "spam", "ban": {"days": 30.5}}, "ban.days"),
        ({"ids": [1], "action": "spam", "ban": {"x": 1}}, "ban.x"),
        ({"ids": [1], "action": "ban", "ban": {"by": "domain"}}, "ban.by"),
    ],
)
def test_bad_moderation_requests_change_nothing(
    scored: Flask, client: FlaskClient, key: str, body: dict[str, Any], field: str
) -> None:
    comment_id = post_as_reader(client, key, text="a borderline view").json["comment"]["id"]
    assert comment_id == 1
    response = client.post("/api/v1/manage/moderation", json=body, headers=auth(key))
    assert response.status_code == 400, response.json
    assert response.json["error"]["field"] == field
    with scored.app_context():
        assert db.session.get(Comment, 1).status == "pending"
        assert db.session.execute(select(Ban)).first() is None


def test_ban_days_may_be_a_whole_number_written_as_a_float(
    scored: Flask, client: FlaskClient, key: str
) -> None:
    comment_id = post_as_reader(client, key, text="cheap pills", email="pills@example.org",
                                ).json["comment"]["id"]
    banned = client.post(f"/api/v1/manage/comments/{comment_id}/moderation",
                         json={"action": "spam", "ban": {"by": "email", "days": 30.0}},
                         headers=auth(key))
    assert banned.status_code == 200, banned.json
    expires = datetime.fromisoformat(banned.json["bans"][0]["expires"].replace("Z", "+00:00"))
    left = expires - datetime.now(expires.tzinfo)
    assert timedelta(days=29, hours=23) < left <= timedelta(days=30)


def test_unknown_fields_of_nested_objects_are_named_with_their_parent(
    scored: Flask, client: FlaskClient, key: str
) -> None:
    response = client.post("/api/v1/analyze", headers=auth(key),
                           json={"text": "hello there", "reader": {"addr": "1.2.3.4", "ua": 5}})
    assert response.status_code == 400
    assert response.json["error"]["field"] == "reader.ua"
    assert response.json["error"]["code"] == "invalid_field"


# -- analyze and feedback -----------------------------------------------------------------------


def test_analyze_without_a_model_is_503(client: FlaskClient, key: str) -> None:
    response = client.post("/api/v1/analyze", json={"text": "hello"}, headers=auth(key))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "model_unavailable"


def test_analyze_scores_decides_and_stores_only_when_asked(
    scored: Flask, client: FlaskClient, site: Site, key: str
) -> None:
    with scored.app_context():
        row = db.session.get(Site, site.id)
        row.settings = {"suspect_words": ["crypto"]}
        db.session.commit()
    response = client.post("/api/v1/analyze", json={"text": "you **idiot**"}, headers=auth(key))
    assert response.status_code == 200, response.json
    body = response.json
    assert body["scores"]["toxicity"] == 0.99 and body["scores"]["spam"] == 0.02
    assert body["decision"]["action"] == "reject"
    assert body["text"] == "you idiot" and body["lang"] == "en"
    assert body["stored"] is None and body["model_version"] == "test-keywords-1"

    held = client.post("/api/v1/analyze", json={"text": "crypto tips", "lang": "en"},
                       headers=auth(key)).json
    assert held["decision"] == {"action": "hold", "status": "pending",
                                "reasons": ["suspect words: crypto"]}
    chinese = client.post("/api/v1/analyze", json={"text": "这篇文章写得很好"},
                          headers=auth(key)).json
    assert chinese["lang"] == "zh"
    with scored.app_context():
        assert db.session.execute(select(Comment)).first() is None

    stored = client.post("/api/v1/analyze", json={"text": "fine words", "store": True,
                                                  "uri": "/posts/x", "reader": READER},
                         headers=auth(key))
    assert stored.status_code == 201
    assert stored.json["stored"]["status"] == "published"
    assert stored.json["stored"]["uri"] == "/posts/x"

    for bad, field in (({"text": "x y", "lang": "fr"}, "lang"), ({"text": 3}, "text"),
                       ({"text": "ok ok", "store": "yes"}, "store"),
                       ({"text": "ok ok", "store": True}, "uri"), ({"txt": "a"}, "txt")):
        response = client.post("/api/v1/analyze", json=bad, headers=auth(key))
        assert response.status_code == 400, (bad, response.json)
        assert response.json["error"]["field"] == field


def test_analyze_returns_the_spans_of_an_explaining_model(
    scored: Flask, client: FlaskClient, key: str
) -> None:
    class Explaining(fakes.KeywordClassifier):
        def explain(self, item: Any) -> dict[str, list[dict[str, Any]]]:
            start = item.text.lower().find("idiot")
            return {"toxicity": [{"term": "idiot", "field": "text", "weight": 2.0,
                                  "spans": [[start, start + 5]]}], "spam": []}

    from moderation.classifier import ModelStatus

    scored.extensions["classifier"] = ModelStatus(Explaining(), None)  # type: ignore[arg-type]
    body = client.post("/api/v1/analyze", json={"text": "what an *idiot*"},
                       headers=auth(key)).json
    span = body["spans"]["toxicity"][0]["spans"][0]
    assert body["text"][span[0]:span[1]] == "idiot"


def test_feedback_labels_comments_and_texts_for_retraining(
    scored: Flask, client: FlaskClient, key: str
) -> None:
    comment_id = post_as_reader(client, key, text="fine post").json["comment"]["id"]
    by_id = client.post("/api/v1/feedback", json={"comment": comment_id, "label": "spam"},
                        headers=auth(key))
    assert by_id.status_code == 201, by_id.json
    assert by_id.json["label"]["comment"] == comment_id
    by_text = client.post("/api/v1/feedback",
                          json={"text": "buy followers cheap", "label": "spam",
                                "website": "https://followers.example"}, headers=auth(key))
    assert by_text.status_code == 201
    for bad, field in (({"text": "abc", "label": "evil"}, "label"),
                       ({"label": "ok"}, "comment"),
                       ({"comment": comment_id, "text": "both", "label": "ok"}, "comment"),
                       ({"comment": "1", "label": "ok"}, "comment")):
        response = client.post("/api/v1/feedback", json=bad, headers=auth(key))
        assert response.status_code == 400 and response.json["error"]["field"] == field
    assert client.post("/api/v1/feedback", json={"comment": 999, "label": "ok"},
                       headers=auth(key)).status_code == 404
    with scored.app_context():
        labels = db.session.execute(
            select(Label.text, Label.label, Label.comment_id, Label.scores).order_by(Label.id)
        ).all()
    assert [(t, lab, c) for t, lab, c, _ in labels] == [
        ("fine post", "spam", comment_id), ("buy followers cheap", "spam", None)]
    assert labels[1].scores["spam"] == 0.02  # scored by the model at feedback time


MODELS = Path(__file__).parent.parent / "models"


@pytest.mark.skipif(not (MODELS / "manifest.json").is_file() and not IN_CI,
                    reason="the shipped model is not in models/")
def test_analyze_with_the_shipped_model_points_at_the_insult() -> None:
    app = make_app(MODEL_DIR=str(MODELS))
    site = add_site(app)
    key = issue(app, site, ("analyze",))
    client = app.test_client()
    rude = client.post("/api/v1/analyze", json={"text": "You are a stupid idiot, shut up."},
                       headers=auth(key)).json
    polite = client.post("/api/v1/analyze", json={"text": "Thanks, a clear and fair summary."},
                         headers=auth(key)).json
    assert rude["scores"]["toxicity"] > 0.9 > polite["scores"]["toxicity"]
    assert rude["decision"]["action"] != "publish" and polite["decision"]["action"] == "publish"
    terms = [rude["text"][s:e].lower() for item in rude["spans"]["toxicity"]
             for s, e in item["spans"]]
    assert any("idiot" in t or "stupid" in t for t in terms), terms
