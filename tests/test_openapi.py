"""The OpenAPI document covers every /api/v1 route, and the app keeps to it under fuzzing."""

from __future__ import annotations

import re

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from moderation import keys
from moderation.db import Site, db
from moderation.openapi import build_document
from tests import fakes
from tests.conftest import make_app

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def openapi_path(rule: str) -> str:
    """Turn a Flask rule like /a/<int:id> into the OpenAPI form /a/{id}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_api_v1_route_is_documented_with_its_methods() -> None:
    app = make_app()
    paths = build_document()["paths"]
    seen = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = openapi_path(rule.rule)
        assert path in paths, f"{rule.rule} is not in the OpenAPI document"
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            assert method.lower() in paths[path], f"{method} {rule.rule} is not documented"
            seen.add((path, method.lower()))
    documented = {(p, m) for p, item in paths.items() for m in item if m != "parameters"}
    assert documented == seen, f"documented but not served: {documented - seen}"


def test_key_routes_declare_bearer_security() -> None:
    document = build_document()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            keyed = path.startswith("/api/v1/manage/") or path in ("/api/v1/analyze",
                                                                   "/api/v1/feedback")
            assert ("security" in operation) == keyed, (method, path)
            if keyed:
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_empty_page_arguments_mean_the_documented_default() -> None:
    app = make_app()
    with app.app_context():
        site = Site(name="Paged", origins=[], settings={})
        db.session.add(site)
        db.session.flush()
        key = keys.issue(site).key
        db.session.commit()
    auth = {"Authorization": f"Bearer {key}"}
    params = build_document()["paths"]["/api/v1/manage/comments"]["get"]["parameters"]
    documented = {p["name"]: p for p in params}
    for name, answered in (("per_page", 50), ("page", 1)):
        assert documented[name]["allowEmptyValue"] is True
        assert documented[name]["schema"]["default"] == answered
        response = app.test_client().get("/api/v1/manage/comments", headers=auth,
                                         query_string={name: ""})
        assert response.status_code == 200, response.json
        assert response.json[name] == answered


def test_the_reader_limit_is_described_where_it_applies() -> None:
    schemas = build_document()["components"]["schemas"]
    reader = schemas["AnalyzeRequest"]["properties"]["reader"]["description"]
    assert reader == schemas["ManagedNewComment"]["properties"]["reader"]["description"]
    assert "/analyze with `store: true`" in reader and "site's own `post` limit" in reader


# -- schemathesis ------------------------------------------------------------------------------

KEY: dict[str, str] = {}


def fuzzed_app() -> Flask:
    """Return an app with a scored site, a few comments and a webhook, so 2xx paths run too."""
    app = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    fakes.install(app)
    with app.app_context():
        site = Site(name="Fuzzed", origins=[], settings={})
        db.session.add(site)
        db.session.flush()
        KEY["key"] = keys.issue(site).key
        KEY["site"] = site.key
        db.session.commit()
    client = app.test_client()
    auth = {"Authorization": f"Bearer {KEY['key']}"}
    for text in ("first comment", "a borderline one", "viagra for sale"):
        client.post("/api/v1/manage/comments", headers=auth,
                    json={"uri": "/p", "text": text, "reader": {"addr": "192.0.2.1"}})
    client.post("/api/v1/manage/webhooks", headers=auth, json={"url": "http://127.0.0.1:9/x"})
    return app


# Loaded at collection: schemathesis makes one test per operation from it (its lazy fixture
# loader does not work with this pytest version).
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzzed_app())


@schema.auth()
class SiteKey:
    """Send the fuzzed site's API key; schemathesis still tries requests without it."""

    def get(self, case: schemathesis.Case, ctx: object) -> str:
        return KEY["key"]

    def set(self, case: schemathesis.Case, data: str, ctx: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_its_document(case: schemathesis.Case) -> None:
    # Every check but positive_data_acceptance: the document cannot say which site keys exist
    # or which strings are real URLs and page paths, so schema-valid bodies may still be a 400.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
