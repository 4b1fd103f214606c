"""The public JSON API under /api/v1: threads, comments, counts, health."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for
from sqlalchemy import select, text

from . import classifier as model
from . import comments, limits, origins, readcache, sitecache
from .db import Site, db
from .errors import ApiError
from .exceptions import Forbidden, InvalidField, NotFound
from .openapi import build_document
from .policy import Action

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Headers a browser may send and read on cross-origin calls from an allowed site.
CORS_ALLOW_HEADERS = "Content-Type, X-Edit-Token"
CORS_EXPOSE_HEADERS = "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
CORS_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
EDIT_TOKEN_HEADER = "X-Edit-Token"


def pipeline(app: Flask | None = None) -> comments.Pipeline:
    """Return the submission pipeline's settings for this app."""
    app = app or current_app
    return comments.Pipeline(
        classifier=model.status(app).classifier,
        default_thresholds=app.config["DEFAULT_THRESHOLDS"],
        max_links=int(app.config["MAX_LINKS"]),
        edit_window=timedelta(seconds=int(app.config["EDIT_WINDOW_SECONDS"])),
        min_fill_ms=int(app.config["MIN_FILL_MS"]),
    )


def client() -> comments.Client:
    """Return the requesting client's address and user agent."""
    return comments.Client(limits.client_addr(), request.user_agent.string or "")


def json_body() -> dict[str, Any]:
    """Return the request's JSON object, or raise a 4xx naming what is wrong."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return data


# -- CORS -----------------------------------------------------------------------------------


def _same_origin(origin: str) -> bool:
    return origins.same(origin, request.host_url)


def check_origin(site: Site) -> None:
    """Refuse browser requests from origins the site does not allow.

    The Origin header and the stored origins are compared in their normalised form (see
    origins.py), so values saved before origins were normalised keep working.
    """
    origin = request.headers.get("Origin")
    if origin and not _same_origin(origin) and not origins.allows(site.origins, origin):
        raise Forbidden(f"origin {origin} is not allowed for this site", code="origin_not_allowed")
    request.environ["moderation.cors_ok"] = bool(origin)


def _any_site_allows(origin: str) -> bool:
    if origins.canonical(origin) is None:
        return False
    for (allowed,) in db.session.execute(select(Site.origins)):
        if origins.allows(allowed, origin):
            return True
    return False


@bp.before_request
def preflight() -> Response | None:
    """Answer CORS preflight requests for origins some site allows."""
    if request.method != "OPTIONS":
        return None
    origin = request.headers.get("Origin", "")
    response = Response(status=204)
    if origin and (_same_origin(origin) or _any_site_allows(origin)):
        response.headers.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            }
        )
    return response


@bp.after_request
def cors_headers(response: Response) -> Response:
    """Let allowed origins read the answer, including rate-limit headers."""
    origin = request.headers.get("Origin")
    # A 429 comes before the view checks the origin; the widget must still read Retry-After.
    limited = response.status_code == 429 and bool(origin) and (
        _same_origin(origin) or _any_site_allows(origin)
    )
    if origin and (request.environ.get("moderation.cors_ok") or limited):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    if "Vary" in response.headers:
        response.vary.add("Origin")
    else:
        response.headers["Vary"] = "Origin"
    return response


# -- comments -------------------------------------------------------------------------------


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """Return a whole-number query argument within bounds, or raise naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidField(name, "must be a whole number") from None
    if not low <= value <= high:
        raise InvalidField(name, f"must be between {low} and {high}")
    return value


def requested_site(key: object) -> Site:
    """Return the site named by the request (the snapshot the limiter already took)."""
    site = limits.request_site()
    if site is not None and site.key == key:
        return site
    if isinstance(key, str) and key and (site := sitecache.cache().site(key)) is not None:
        return site
    return comments.get_site(key)


@bp.get("/comments")
@limits.reading
def list_comments() -> Response:
    """List a thread's published comments as a tree, one page of top-level comments at a time."""
    site = requested_site(request.args.get("site"))
    check_origin(site)
    uri = comments.normalise_uri(request.args.get("uri"))
    sort = request.args.get("sort")
    if sort is not None and sort not in comments.THREAD_SORTS:
        raise InvalidField("sort", "must be oldest or newest")
    cfg = current_app.config
    per_page = int_arg("per_page", cfg["PAGE_SIZE"], 1, cfg["MAX_PAGE_SIZE"])
    page = int_arg("page", 1, 1, 1_000_000)
    after = thread_cursor(site, uri, sort)
    sort = after.sort if after else sort or "oldest"
    return readcache.thread_response(
        site, uri, sort, after or page, per_page,
        lambda: comments.thread_page(site, uri, sort, page, per_page, after),
    )


def thread_cursor(site: Site, uri: str, sort: str | None) -> comments.ThreadCursor | None:
    """Return the place the `cursor` argument names (absent or empty: None).

    A cursor carries its thread, which must be this one, and its order: `sort`, if given,
    must be the same. It replaces `page`.
    """
    token = request.args.get("cursor", "")
    if not token:
        return None
    if request.args.get("page"):
        raise InvalidField("cursor", "give cursor or page, not both")
    after = comments.thread_cursor(token, site, uri)
    if sort is not None and sort != after.sort:
        raise InvalidField("cursor", f"was made for sort={after.sort}, not sort={sort}")
    return after


def _submitted(
    submission: comments.Submission, settings: comments.Pipeline
) -> tuple[Response, int]:
    comment, decision = submission.comment, submission.decision
    if decision.action is Action.REJECT:
        raise ApiError(422, "rejected", "Your comment was not accepted.")
    body = {
        "comment": comments.serialize_own(comment, settings),
        "edit_token": submission.token,
    }
    response = jsonify(body)
    response.headers["Location"] = url_for("api.get_comment", comment_id=comment.id)
    return response, 201 if comment.status == "published" else 202


@bp.post("/comments")
def create_comment() -> tuple[Response, int]:
    """Submit a comment: 201 when published, 202 when held, 422 when rejected.

    The posting limits count every submission past the cheap field checks (name, email,
    website, page): a refused one too, and one whose text then fails.
    """
    data = json_body()
    site = requested_site(data.get("site"))
    check_origin(site)
    settings = pipeline()
    return _submitted(comments.submit(data, client(), settings, site=site,
                                      admit=limits.admit_post), settings)


def _comment_for_request(comment_id: int) -> comments.Comment:
    comment = comments.get_comment(comment_id)
    check_origin(comment.site)
    return comment


@bp.get("/comments/<int:comment_id>")
def get_comment(comment_id: int) -> Response:
    """Return a published comment, or a held one to the author holding its edit token."""
    comment = _comment_for_request(comment_id)
    token = request.headers.get(EDIT_TOKEN_HEADER)
    if comments.check_token(comment, token):
        return jsonify(comment=comments.serialize_own(comment, pipeline()))
    if comment.status != "published":
        raise NotFound("no such comment")
    return jsonify(comment=comments.serialize(comment))


@bp.patch("/comments/<int:comment_id>")
@limits.editing
def edit_comment(comment_id: int) -> tuple[Response, int]:
    """Edit one's own comment within the edit window; it is sanitised and scored again."""
    comment = _comment_for_request(comment_id)
    data = json_body()
    settings = pipeline()
    decision = comments.edit(
        comment, request.headers.get(EDIT_TOKEN_HEADER), data, client(), settings
    )
    if decision.action is Action.REJECT:
        raise ApiError(422, "rejected", "Your edited comment was not accepted.")
    body = jsonify(comment=comments.serialize_own(comment, settings))
    return body, 200 if comment.status == "published" else 202


@bp.delete("/comments/<int:comment_id>")
@limits.editing
def delete_comment(comment_id: int) -> tuple[str, int]:
    """Delete one's own comment within the edit window."""
    comment = _comment_for_request(comment_id)
    comments.delete_own(comment, request.headers.get(EDIT_TOKEN_HEADER), pipeline())
    return "", 204


@bp.post("/comments/<int:comment_id>/report")
@limits.reporting
def report_comment(comment_id: int) -> tuple[Response, int]:
    """Flag a published comment for the moderators."""
    comment = _comment_for_request(comment_id)
    data = json_body()
    comments.report(comment, data, client())
    return jsonify(reported=True), 201


@bp.post("/counts")
@limits.reading
def count_comments() -> Response:
    """Return published comment counts for many pages of one site."""
    data = json_body()
    site = requested_site(data.get("site"))
    check_origin(site)
    uris = data.get("uris")
    limit = current_app.config["MAX_COUNT_URIS"]
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise InvalidField("uris", "must be a list of page paths")
    if len(uris) > limit:
        raise InvalidField("uris", f"at most {limit} per request")
    return jsonify(counts=comments.counts(site, uris))


# -- service --------------------------------------------------------------------------------


def health_report() -> tuple[dict[str, Any], int]:
    """Return the state of the database, limiter storage and model, with an HTTP status."""
    try:
        db.session.execute(text("SELECT 1"))
        database = {"ok": True}
    except Exception as error:  # noqa: BLE001 - report any failure as a state
        db.session.rollback()
        database = {"ok": False, "error": type(error).__name__}
    storage_uri = current_app.config["RATELIMIT_STORAGE_URI"]
    limiter = {"ok": limits.storage_ok(), "storage": storage_uri.split(":", 1)[0]}
    state = model.status(current_app)
    classifier = state.classifier
    model_state = {
        "ok": state.ok,
        "version": classifier.version if classifier else None,
        "error": state.error,
    }
    ok = database["ok"] and limiter["ok"] and state.ok
    report = {
        "status": "ok" if ok else "degraded",
        "checks": {"database": database, "limiter": limiter, "model": model_state},
    }
    return report, 200 if database["ok"] else 503


@bp.get("/health")
def health() -> tuple[Response, int]:
    """Report ok or degraded, with the state of each dependency."""
    report, status = health_report()
    return jsonify(report), status


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI 3.1 description of this API."""
    return jsonify(build_document(request.host_url.rstrip("/")))
