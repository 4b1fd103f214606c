"""Perspective- and Akismet-compatible endpoints, driven by the protocols' own request shapes."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import akismet
import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from moderation import keys
from moderation.classifier import CommentText, ModelStatus, Scores
from moderation.db import Label, Site, db
from tests import fakes
from tests.conftest import IN_CI, add_site, issue_key, make_app

BLOG = "https://blog.example"


class AttributeClassifier:
    """Gives each head its own marker word, so a mix-up between attributes shows."""

    version = "test-attributes-1"
    thresholds = fakes.KeywordClassifier.thresholds
    MARKERS = {"spam": "viagra", "toxicity": "idiot", "insult": "moron", "obscene": "damn",
               "threat": "hurt you", "identity_attack": "those people"}

    def __init__(self, extra_heads: Sequence[str] = ()) -> None:
        self.extra = tuple(extra_heads)

    def score(self, items: Sequence[CommentText]) -> list[Scores]:
        return [self.score_one(item) for item in items]

    def score_one(self, item: CommentText) -> Scores:
        text = item.text.lower()
        values = {head: 0.91 if word in text else 0.04 for head, word in self.MARKERS.items()}
        attrs = {k: v for k, v in values.items() if k not in ("spam", "toxicity")}
        attrs.update({head: 0.5 for head in self.extra})
        return Scores(spam=values["spam"], toxicity=values["toxicity"], attributes=attrs)


@pytest.fixture
def key(app: Flask, site: Site) -> str:
    with app.app_context():
        issued = keys.issue(db.session.get(Site, site.id), ("analyze",))
        db.session.commit()
    return issued.key


def analyze(client: FlaskClient, key: str | None, body: Any) -> Any:
    query = {"key": key} if key else {}
    return client.post("/v1alpha1/comments:analyze", query_string=query, json=body)


# -- Perspective ------------------------------------------------------------------------------

PERSPECTIVE_CASES = [
    ("TOXICITY", "you idiot", "toxicity"),
    ("INSULT", "what a moron", "insult"),
    ("PROFANITY", "damn it all", "obscene"),
    ("THREAT", "I will hurt you", "threat"),
    ("IDENTITY_ATTACK", "those people ruin everything", "identity_attack"),
    ("SPAM", "cheap viagra here", "spam"),
]


@pytest.mark.parametrize(("attribute", "text", "head"), PERSPECTIVE_CASES)
def test_perspective_round_trip_for_each_supported_attribute(
    app: Flask, client: FlaskClient, key: str, attribute: str, text: str, head: str
) -> None:
    app.extensions["classifier"] = ModelStatus(AttributeClassifier(), None)  # type: ignore[arg-type]
    body = {"comment": {"text": f"Hello. {text}!"}, "requestedAttributes": {attribute: {}},
            "languages": ["en"], "doNotStore": True, "spanAnnotations": True,
            "clientToken": "abc"}
    response = analyze(client, key, body)
    assert response.status_code == 200, response.json
    result = response.json
    assert list(result["attributeScores"]) == [attribute]
    scores = result["attributeScores"][attribute]
    assert scores["summaryScore"] == {"value": 0.91, "type": "PROBABILITY"}
    assert result["languages"] == ["en"] and result["detectedLanguages"] == ["en"]
    assert result["clientToken"] == "abc"
    # One span per sentence: the greeting is clean, the second sentence carries the score.
    spans = scores["spanScores"]
    assert [(s["begin"], s["end"]) for s in spans] == [(0, 6), (7, 8 + len(text))]
    assert [s["score"]["value"] for s in spans] == [0.04, 0.91]
    clean = analyze(client, key, {"comment": {"text": "Lovely weather today"},
                                  "requestedAttributes": {attribute: {}}}).json
    assert clean["attributeScores"][attribute]["summaryScore"]["value"] == 0.04
    assert "spanScores" not in clean["attributeScores"][attribute]


def test_perspective_many_attributes_thresholds_and_chinese(
    app: Flask, client: FlaskClient, key: str
) -> None:
    app.extensions["classifier"] = ModelStatus(AttributeClassifier(), None)  # type: ignore[arg-type]
    body = {"comment": {"text": "you idiot, buy viagra"},
            "requestedAttributes": {"TOXICITY": {}, "SPAM": {}, "INSULT": {"scoreThreshold": 0.5}}}
    result = analyze(client, key, body).json
    assert set(result["attributeScores"]) == {"TOXICITY", "SPAM"}  # INSULT below threshold
    chinese = analyze(client, key, {"comment": {"text": "你这个白痴，滚出去"},
                                    "requestedAttributes": {"TOXICITY": {}, "SPAM": {}}})
    assert chinese.status_code == 200
    assert chinese.json["detectedLanguages"] == ["zh"] and chinese.json["languages"] == ["zh"]


def test_severe_toxicity_is_answered_only_by_a_model_with_that_head(
    app: Flask, client: FlaskClient, key: str
) -> None:
    body = {"comment": {"text": "hello"}, "requestedAttributes": {"SEVERE_TOXICITY": {}}}
    app.extensions["classifier"] = ModelStatus(AttributeClassifier(), None)  # type: ignore[arg-type]
    missing = analyze(client, key, body)
    assert missing.status_code == 400
    assert missing.json["error"]["status"] == "INVALID_ARGUMENT"
    assert "SEVERE_TOXICITY is not supported" in missing.json["error"]["message"]
    app.extensions["classifier"] = ModelStatus(  # type: ignore[arg-type]
        AttributeClassifier(["severe_toxicity"]), None)
    ok = analyze(client, key, body)
    assert ok.json["attributeScores"]["SEVERE_TOXICITY"]["summaryScore"]["value"] == 0.5


@pytest.mark.parametrize(
    ("body", "code", "status", "message"),
    [
        ({"comment": {"text": "hi there"}, "requestedAttributes": {"FLIRTATION": {}}},
         400, "INVALID_ARGUMENT", "Unknown requested attribute: FLIRTATION"),
        ({"comment": {"text": "hi there"}, "requestedAttributes": {"INSULT": {}},
          "languages": ["zh"]},
         400, "INVALID_ARGUMENT", "Attribute INSULT does not support request languages: zh"),
        ({"comment": {"text": "你好，朋友们"}, "requestedAttributes": {"THREAT": {}}},
         400, "INVALID_ARGUMENT", "Attribute THREAT does not support request languages: zh"),
        ({"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}},
          "languages": ["de"]},
         400, "INVALID_ARGUMENT", "Attribute TOXICITY does not support request languages: de"),
        ({"comment": {"text": ""}, "requestedAttributes": {"TOXICITY": {}}},
         400, "INVALID_ARGUMENT", "non-empty comment.text"),
        ({"comment": {"text": "hi"}, "requestedAttributes": {}},
         400, "INVALID_ARGUMENT", "at least one attribute"),
        ({"comment": {"text": "hi"},
          "requestedAttributes": {"TOXICITY": {"scoreType": "STD_DEV_SCORE"}}},
         400, "INVALID_ARGUMENT", "only PROBABILITY"),
        ("not an object", 400, "INVALID_ARGUMENT", "Invalid JSON payload"),
    ],
)
def test_perspective_errors_use_googles_shape(
    app: Flask, client: FlaskClient, key: str, body: Any, code: int, status: str, message: str
) -> None:
    app.extensions["classifier"] = ModelStatus(AttributeClassifier(), None)  # type: ignore[arg-type]
    response = analyze(client, key, body)
    assert response.status_code == code
    assert response.json["error"]["code"] == code
    assert response.json["error"]["status"] == status
    assert message in response.json["error"]["message"]


def test_perspective_key_errors_and_missing_model(
    app: Flask, client: FlaskClient, site: Site, key: str
) -> None:
    body = {"comment": {"text": "hello"}, "requestedAttributes": {"TOXICITY": {}}}
    missing = analyze(client, None, body)
    assert (missing.status_code, missing.json["error"]["status"]) == (403, "PERMISSION_DENIED")
    wrong = analyze(client, "mk_00000000_nope", body)
    assert (wrong.status_code, wrong.json["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "API key not valid" in wrong.json["error"]["message"]
    with app.app_context():
        reader_only = keys.issue(db.session.get(Site, site.id), ("read",)).key
        db.session.commit()
    scoped = analyze(client, reader_only, body)
    assert (scoped.status_code, scoped.json["error"]["status"]) == (403, "PERMISSION_DENIED")
    unavailable = analyze(client, key, body)  # no model in this app
    assert (unavailable.status_code, unavailable.json["error"]["status"]) == (503, "UNAVAILABLE")
    wrong_method = client.get("/v1alpha1/comments:analyze", query_string={"key": key})
    assert wrong_method.status_code == 405


@pytest.mark.skipif(not (Path(__file__).parent.parent / "models" / "manifest.json").is_file()
                    and not IN_CI, reason="the shipped model is not in models/")
def test_perspective_with_the_shipped_model() -> None:
    app = make_app(MODEL_DIR=str(Path(__file__).parent.parent / "models"))
    key = issue_key(app, add_site(app, "B"))
    client = app.test_client()
    attributes = {name: {} for name in ("TOXICITY", "INSULT", "PROFANITY", "THREAT",
                                         "IDENTITY_ATTACK", "SPAM")}
    toxic = analyze(client, key, {"comment": {"text": "You are a stupid idiot, shut up."},
                                  "requestedAttributes": attributes, "languages": ["en"]})
    assert toxic.status_code == 200, toxic.json
    polite = analyze(client, key, {"comment": {"text": "Thanks, this was a helpful article."},
                                   "requestedAttributes": attributes, "languages": ["en"]})
    value = lambda r, a: r.json["attributeScores"][a]["summaryScore"]["value"]  # noqa: E731
    assert value(toxic, "TOXICITY") > value(polite, "TOXICITY")
    assert value(toxic, "INSULT") > value(polite, "INSULT")
    severe = analyze(client, key, {"comment": {"text": "hi"},
                                   "requestedAttributes": {"SEVERE_TOXICITY": {}}})
    assert severe.status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "code", "status"),
    [("GET", "/v1alpha1/comments:analyze", 405, "INVALID_ARGUMENT"),
     ("PUT", "/v1alpha1/comments:analyze", 405, "INVALID_ARGUMENT"),
     ("POST", "/v1alpha1/nope", 404, "NOT_FOUND"),
     ("GET", "/v1alpha1/comments:suggestscore", 404, "NOT_FOUND")],
)
def test_perspective_routing_errors_use_googles_shape(
    client: FlaskClient, key: str, method: str, path: str, code: int, status: str
) -> None:
    response = client.open(path, method=method, query_string={"key": key},
                           headers={"Accept": "text/html"})
    assert response.status_code == code
    assert response.mimetype == "application/json"
    error = response.json["error"]
    assert (error["code"], error["status"]) == (code, status)
    assert error["message"] and set(error) == {"code", "message", "status"}
    if code == 405:
        assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [("GET", "/1.1/comment-check", 405), ("GET", "/1.1/verify-key", 405),
     ("POST", "/1.1/nope", 404), ("POST", "/1.1/", 404)],
)
def test_akismet_routing_errors_answer_plain_text(
    client: FlaskClient, key: str, method: str, path: str, code: int
) -> None:
    response = client.open(path, method=method, data={"api_key": key, "blog": BLOG})
    assert response.status_code == code
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == str(code)
    assert response.headers["X-akismet-debug-help"]
    if code == 405:
        assert "POST" in response.headers["Allow"]


def test_a_database_outage_answers_in_each_protocols_shape(
    client: FlaskClient, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(raw: str | None) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(keys, "authenticate", unavailable)
    perspective = analyze(client, key, {"comment": {"text": "hello"},
                                        "requestedAttributes": {"TOXICITY": {}}})
    assert perspective.status_code == 503
    assert perspective.json["error"]["status"] == "UNAVAILABLE"
    checked = client.post("/1.1/comment-check", data={"api_key": key, "blog": BLOG,
                                                      "comment_content": "hello"})
    assert (checked.status_code, checked.mimetype) == (503, "text/plain")
    assert "database" in checked.headers["X-akismet-debug-help"]


@pytest.mark.usefixtures("steady_window")
def test_protocol_rate_limits_answer_in_their_shape_and_say_when_to_retry() -> None:
    app = make_app(RATELIMIT_ENABLED=True, LIMIT_API_KEY="2/minute")
    fakes.install(app)
    key = issue_key(app, add_site(app, "B"))
    client = app.test_client()
    body = {"comment": {"text": "hello"}, "requestedAttributes": {"TOXICITY": {}}}
    form = {"api_key": key, "blog": BLOG, "comment_content": "hello"}
    assert [analyze(client, key, body).status_code for _ in range(2)] == [200, 200]
    limited = [analyze(client, key, body), client.post("/1.1/comment-check", data=form)]
    assert limited[0].json["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert limited[1].get_data(as_text=True) == "429"
    for response in limited:
        assert response.status_code == 429
        assert 0 < int(response.headers["Retry-After"]) <= 60
        assert response.headers["X-RateLimit-Limit"] == "2"
        assert response.headers["X-RateLimit-Remaining"] == "0"


# -- Akismet, with the real akismet client ----------------------------------------------------


@pytest.fixture
def akismet_client(app: Flask, key: str) -> Iterator[akismet.SyncClient]:
    fakes.install(app)
    http = httpx.Client(transport=httpx.WSGITransport(app=app), headers={
        "User-Agent": akismet.USER_AGENT})
    with akismet.SyncClient(config=akismet.Config(key=key, url=BLOG), http_client=http) as c:
        yield c


def test_akismet_verify_key(app: Flask, key: str) -> None:
    os.environ.pop("PYTHON_AKISMET_API_KEY", None)
    http = httpx.Client(transport=httpx.WSGITransport(app=app))
    client = akismet.SyncClient.validated_client(
        config=akismet.Config(key=key, url=BLOG), http_client=http)
    assert client.verify_key() is True
    assert client.verify_key("mk_00000000_wrong", BLOG) is False
    with pytest.raises(akismet.APIKeyError):
        akismet.SyncClient.validated_client(
            config=akismet.Config(key="mk_00000000_wrong", url=BLOG),
            http_client=httpx.Client(transport=httpx.WSGITransport(app=app)))


def test_akismet_comment_check_on_spam_and_ham(akismet_client: akismet.SyncClient) -> None:
    spam = akismet_client.comment_check(
        user_ip="203.0.113.9", comment_content="Buy viagra at https://pills.example",
        comment_type="comment", comment_author="Pills", comment_author_email="p@pills.example",
        user_agent="bot/1.0", permalink=f"{BLOG}/posts/1")
    assert spam == akismet.CheckResponse.DISCARD  # 0.99 is above the reject threshold
    ham = akismet_client.comment_check(
        user_ip="203.0.113.9", comment_content="Thanks for the thoughtful post.",
        comment_type="comment", comment_author="Ann")
    assert ham == akismet.CheckResponse.HAM


def test_akismet_spam_between_hold_and_reject_is_spam_without_discard(
    app: Flask, site: Site, akismet_client: akismet.SyncClient
) -> None:
    with app.app_context():
        row = db.session.get(Site, site.id)
        row.settings = {"thresholds": {"spam": {"hold": 0.5, "reject": 0.999}}}
        db.session.commit()
    result = akismet_client.comment_check(user_ip="203.0.113.9", comment_content="viagra deals")
    assert result == akismet.CheckResponse.SPAM


def test_akismet_submit_spam_and_ham_feed_labels(
    app: Flask, akismet_client: akismet.SyncClient
) -> None:
    assert akismet_client.submit_spam(user_ip="203.0.113.9", comment_content="cheap loans now",
                                      comment_author="Loans",
                                      comment_author_url="https://loans.example") is True
    assert akismet_client.submit_ham(user_ip="203.0.113.9",
                                     comment_content="I disagree, respectfully.") is True
    assert akismet_client.submit_ham(user_ip="203.0.113.9", comment_content="only a test",
                                     is_test=True) is True
    with app.app_context():
        labels = db.session.execute(
            select(Label.text, Label.label, Label.website, Label.source).order_by(Label.id)
        ).all()
    assert [(t, lab, w) for t, lab, w, _ in labels] == [
        ("cheap loans now", "spam", "https://loans.example"),
        ("I disagree, respectfully.", "ham", "")]
    assert all(src.startswith("api:") for *_, src in labels)


def test_akismet_invalid_key_and_missing_model(app: Flask, client: FlaskClient, key: str) -> None:
    wrong = client.post("/1.1/comment-check", data={"api_key": "mk_1_2", "blog": BLOG,
                                                    "user_ip": "1.2.3.4",
                                                    "comment_content": "hello"})
    assert wrong.get_data(as_text=True) == "invalid"
    assert wrong.headers["X-akismet-debug-help"]
    unavailable = client.post("/1.1/comment-check", data={"api_key": key, "blog": BLOG,
                                                          "user_ip": "1.2.3.4",
                                                          "comment_content": "hello"})
    assert unavailable.status_code == 503 and "not loaded" in unavailable.headers[
        "X-akismet-debug-help"]
    empty = client.post("/1.1/submit-spam", data={"api_key": key, "blog": BLOG,
                                                  "user_ip": "1.2.3.4"})
    assert empty.status_code == 400 and "comment_content" in empty.headers[
        "X-akismet-debug-help"]
