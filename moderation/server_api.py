"""The server-to-server JSON API under /api/v1, authenticated by site API keys."""

from __future__ import annotations

import ipaddress
import math
import urllib.parse
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from sqlalchemy import func, select
from werkzeug.exceptions import TooManyRequests

from . import classifier as model
from . import comments, keys, limits, sanitising, webhooks
from . import moderation as moderating
from .api import int_arg, json_body, pipeline
from .comments import reject_unknown
from .db import ApiKey, Comment, Label, Status, Thread, Webhook, WebhookDelivery, db
from .errors import ApiError
from .exceptions import InvalidField, NotFound
from .policy import Action

bp = Blueprint("server_api", __name__, url_prefix="/api/v1")

STATUSES = tuple(s.value for s in Status)
FEEDBACK_LABELS = ("spam", "ham", "toxic", "ok")
ACTIONS = (*comments.MODERATION_ACTIONS, "ban")
MAX_IDS = 200
LANGUAGES = ("en", "zh")
DELIVERY_STATES = ("pending", "delivered", "failed")


# -- helpers ----------------------------------------------------------------------------------


def key() -> ApiKey:
    """Return the request's authenticated API key (set by keys.require_key)."""
    found = keys.current()
    assert found is not None  # require_key answered 401 otherwise
    return found


def _classifier() -> model.Classifier:
    classifier = model.status(current_app).classifier
    if classifier is None:
        raise ApiError(503, "model_unavailable", "the spam and toxicity model is not loaded")
    return classifier


def detect_language(text: str) -> str:
    """Return "zh" when Han characters make up a good share of the letters, else "en"."""
    han = sum(1 for c in text if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf")
    letters = sum(1 for c in text if c.isalpha())
    return "zh" if han and han * 3 >= letters else "en"


def manage_view(comment: Comment) -> dict[str, Any]:
    """Return a comment as the site's own server sees it: status, scores, reasons included."""
    return {
        "id": comment.id,
        "uri": comment.thread.uri,
        "parent": comment.parent_id,
        "status": comment.status,
        "author": comment.author,
        "email": comment.email,
        "website": comment.website,
        "text": comment.text,
        "html": comment.html,
        "client_addr": comment.client_addr,
        "user_agent": comment.user_agent,
        "spam_score": comment.spam_score,
        "toxicity_score": comment.toxicity_score,
        "scores": dict(comment.scores or {}),
        "reasons": list(comment.reasons or []),
        "model_version": comment.model_version,
        "created": comments.iso(comment.created_at),
        "edited": comments.iso(comment.edited_at),
        "decided": comments.iso(comment.decided_at),
    }


def _site_comment(comment_id: int) -> Comment:
    comment = db.session.get(Comment, comment_id) if 0 < comment_id <= comments.MAX_ID else None
    if comment is None or comment.site_id != key().site_id:
        raise NotFound("no such comment on this site")
    return comment


def reject_unknown_in(parent: str, payload: Mapping[str, Any], allowed: Collection[str]) -> None:
    """Refuse fields of a nested object outside the allowlist, naming them as parent.field."""
    try:
        reject_unknown(payload, allowed)
    except InvalidField as error:
        raise InvalidField(f"{parent}.{error.field}", error.message, error.code) from None


def _reader(data: dict[str, Any]) -> comments.Client:
    reader = data.pop("reader", None)
    if not isinstance(reader, dict):
        raise InvalidField("reader", 'is required: {"addr": "<reader IP>", "user_agent": "..."}')
    reject_unknown_in("reader", reader, {"addr", "user_agent"})
    addr, agent = reader.get("addr"), reader.get("user_agent", "")
    try:
        ipaddress.ip_address(addr if isinstance(addr, str) else "")
    except ValueError:
        raise InvalidField("reader.addr", "must be the reader's IP address") from None
    if not isinstance(agent, str):
        raise InvalidField("reader.user_agent", "must be a string")
    return comments.Client(str(addr), agent)


def reader_key(reader: comments.Client) -> str:
    """Key the per-reader posting limit by the reader address a site server passes on, counted
    as the public API counts a client's own (an IPv4 address, an IPv6 /64), keyed hash."""
    return "reader:" + limits.keyed(limits.client_network(reader.addr))


def limit_reader_post(reader: comments.Client) -> None:
    """Count a comment stored for a reader against the per-reader posting limit; 429 beyond it.

    The limit is the key's site's own `post` limit when it sets one, else LIMIT_POST, as for
    readers posting through the public API; it is counted by the reader's network (reader_key),
    one budget for POST /manage/comments and /analyze with store: true. A request with no reader
    address (/analyze may omit `reader`) posts for no reader and is not counted here.
    """
    if not limits.limiter.enabled or not comments.anonymise_addr(reader.addr):
        return
    # limits.check takes a site's own limit from the site the request is about, which it looks
    # up once per request from a "site" in the body or query string. On this API the key names
    # the site (a "site" field is refused), so settle the lookup on the key's site first: a
    # ?site= naming another site must not lend this request that site's limits.
    g.site = key().site
    try:
        limits.check((limits.Rule("post", lambda: reader_key(reader), "api-post-reader",
                                  frozenset({"POST"})),))
    except TooManyRequests:
        # The 429 carries this limit's X-RateLimit-* headers (limits.limited_headers); drop the
        # per-key limit's, which flask-limiter would add beside them as duplicates.
        limits.limiter.context.view_rate_limit = None
        raise


def _decision(decision: Any) -> dict[str, Any]:
    return {"action": str(decision.action), "status": decision.status,
            "reasons": list(decision.reasons)}


# -- key ----------------------------------------------------------------------------------------


@bp.get("/manage/key")
@keys.require_key()
def key_info() -> Response:
    """Describe the calling key: its site, prefix and scopes."""
    found = key()
    return jsonify(key={"prefix": found.prefix, "scopes": list(found.scopes),
                        "site": found.site.key, "site_name": found.site.name,
                        "created": comments.iso(found.created_at)})


# -- comments -----------------------------------------------------------------------------------


@bp.get("/manage/comments")
@keys.require_key("read")
def manage_list() -> Response:
    """List the site's comments of any status, newest first, filtered by status and page."""
    raw = request.args.get("status", "")
    wanted = [s for s in raw.split(",") if s] or [s for s in STATUSES if s != "deleted"]
    if any(s not in STATUSES for s in wanted):
        raise InvalidField("status", "must be a comma-separated list of " + ", ".join(STATUSES))
    order = request.args.get("order", "newest")
    if order not in ("newest", "oldest"):
        raise InvalidField("order", "must be newest or oldest")
    per_page = int_arg("per_page", 50, 1, 200)
    page = int_arg("page", 1, 1, 1_000_000)
    where = [Comment.site_id == key().site_id, Comment.status.in_(wanted)]
    if request.args.get("uri"):
        uri = comments.normalise_uri(request.args["uri"])
        where.append(Comment.thread_id.in_(
            select(Thread.id).where(Thread.site_id == key().site_id, Thread.uri == uri)))
    total = db.session.execute(select(func.count(Comment.id)).where(*where)).scalar_one()
    sort = (Comment.created_at.desc(), Comment.id.desc()) if order == "newest" else (
        Comment.created_at, Comment.id)
    rows = db.session.execute(
        select(Comment).where(*where).order_by(*sort).limit(per_page).offset((page - 1) * per_page)
    ).scalars()
    return jsonify(comments=[manage_view(c) for c in rows], total=total, page=page,
                   per_page=per_page, pages=math.ceil(total / per_page))


@bp.post("/manage/comments")
@keys.require_key("write")
def manage_create() -> tuple[Response, int]:
    """Post a comment on behalf of a reader: 201 published, 202 held, 422 rejected."""
    data = json_body()
    if "site" in data:
        raise InvalidField("site", "is not a known field: the API key names the site")
    reader = _reader(data)
    found = key()
    submission = comments.submit(data, reader, pipeline(), site=found.site,
                                 actor=keys.actor(found), admit=lambda: limit_reader_post(reader))
    comment = submission.comment
    body = {"comment": manage_view(comment), "decision": _decision(submission.decision)}
    if submission.decision.action is Action.REJECT:
        response = jsonify(error={"code": "rejected",
                                  "message": "The comment was not accepted."}, **body)
        return response, 422
    response = jsonify(edit_token=submission.token, **body)
    response.headers["Location"] = url_for("server_api.manage_get", comment_id=comment.id)
    return response, 201 if comment.status == Status.PUBLISHED else 202


@bp.get("/manage/comments/<int:comment_id>")
@keys.require_key("read")
def manage_get(comment_id: int) -> Response:
    """Return one of the site's comments in any status."""
    return jsonify(comment=manage_view(_site_comment(comment_id)))


def _ban_spec(data: dict[str, Any]) -> dict[str, Any] | None:
    if "ban" not in data:
        return None
    value = data["ban"]
    if not isinstance(value, dict):
        raise InvalidField("ban", 'must be an object like {"by": "email", "days": 30}')
    reject_unknown_in("ban", value, {"by", "days"})
    by = value.get("by")
    if by is not None and (not isinstance(by, str) or by not in moderating.BAN_KINDS):
        raise InvalidField("ban.by", "must be one of " + ", ".join(moderating.BAN_KINDS))
    days = value.get("days")
    # JSON has one number type: 30.0 is the integer 30 (as JSON Schema's "integer" has it).
    if isinstance(days, float) and days.is_integer():
        days = int(days)
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)
                             or not 1 <= days <= 3650):
        raise InvalidField("ban.days", "must be a whole number of days from 1 to 3650")
    return {"by": by, "days": days}


def _ban_value(comment: Comment, by: str | None) -> tuple[str, str]:
    by = by or ("email" if comment.email else "addr")
    if by == "email":
        value = comment.email
    elif by == "addr":
        value = comment.client_addr
    else:
        host = urllib.parse.urlsplit(comment.website).hostname if comment.website else None
        value = host or (comment.email.rsplit("@", 1)[-1] if comment.email else "")
    if not value:
        raise InvalidField("ban.by", f"comment {comment.id} has no {by} to ban")
    return by, value


def _moderate(ids: list[int], data: dict[str, Any]) -> Response:
    action, reason = data.get("action"), data.get("reason", "")
    if action not in ACTIONS:
        raise InvalidField("action", "must be one of " + ", ".join(ACTIONS))
    if not isinstance(reason, str) or len(reason) > 1000:
        raise InvalidField("reason", "must be a string of at most 1000 characters")
    spec = _ban_spec(data)
    if action == "ban" and spec is None:
        spec = {"by": None, "days": None}
    found = [_site_comment(i) for i in ids]
    bans = [(c, *_ban_value(c, spec["by"])) for c in found] if spec else []
    actor = keys.actor(key())
    if action != "ban":
        comments.moderate_many(found, action, actor, reason)
    made, seen = [], set()
    for comment, kind, value in bans:
        if (kind, value) in seen:
            continue
        seen.add((kind, value))
        duration = timedelta(days=spec["days"]) if spec and spec["days"] else None
        entry = moderating.ban(comment.site_id, kind, value, actor=actor, reason=reason,
                               duration=duration, comment_id=comment.id)
        made.append({"id": entry.id, "kind": entry.kind, "value": entry.value,
                     "expires": comments.iso(entry.expires_at)})
    return jsonify(comments=[manage_view(c) for c in found], bans=made)


@bp.post("/manage/comments/<int:comment_id>/moderation")
@keys.require_key("moderate")
def manage_moderate_one(comment_id: int) -> Response:
    """Approve, reject, mark as spam, delete or ban the author of one comment."""
    data = json_body()
    reject_unknown(data, {"action", "reason", "ban"})
    return _moderate([comment_id], data)


@bp.post("/manage/moderation")
@keys.require_key("moderate")
def manage_moderate_many() -> Response:
    """Apply one moderation action to many comments of the site at once."""
    data = json_body()
    reject_unknown(data, {"ids", "action", "reason", "ban"})
    ids = data.get("ids")
    if (not isinstance(ids, list) or not ids or len(ids) > MAX_IDS
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        raise InvalidField("ids", f"must be a list of 1 to {MAX_IDS} comment ids")
    return _moderate(list(dict.fromkeys(ids)), data)


# -- analyze and feedback -----------------------------------------------------------------------

ANALYZE_FIELDS = {"text", "author", "website", "email", "lang", "store", "uri", "title",
                  "parent", "reader"}


@bp.post("/analyze")
@keys.require_key("analyze")
def analyze() -> tuple[Response, int]:
    """Score a text, say what the site's policy would do and why; store it only if asked."""
    data = json_body()
    reject_unknown(data, ANALYZE_FIELDS)
    store = data.get("store", False)
    if not isinstance(store, bool):
        raise InvalidField("store", "must be true or false")
    lang = data.get("lang")
    if lang is not None and (not isinstance(lang, str)
                             or lang.split("-")[0].lower() not in LANGUAGES):
        raise InvalidField("lang", "must be one of " + ", ".join(LANGUAGES))
    if "uri" in data:
        comments.normalise_uri(data["uri"])
    if "title" in data and not isinstance(data["title"], str):
        raise InvalidField("title", "must be a string")
    parent = data.get("parent")
    if parent is not None and (isinstance(parent, bool) or not isinstance(parent, int)):
        raise InvalidField("parent", "must be the id of a comment in this thread")
    classifier = _classifier()
    found = key()
    reader = (_reader(data) if "reader" in data else comments.Client(""))
    if store and "write" not in (found.scopes or []):
        raise ApiError(403, "insufficient_scope", "store: true needs the write scope")
    result = comments.assess(found.site, data, reader, pipeline())
    explain = getattr(classifier, "explain", None)
    body: dict[str, Any] = {
        "scores": result.scores.as_dict() if result.scores else {},
        "decision": _decision(result.decision),
        "spans": explain(result.item) if explain else {},
        "text": result.item.text,
        "lang": lang.split("-")[0].lower() if lang else detect_language(result.item.text),
        "model_version": classifier.version,
        "stored": None,
    }
    if not store:
        return jsonify(body), 200
    if not data.get("uri"):
        raise InvalidField("uri", "is required when store is true")
    fields = ("uri", "title", "parent", "text", "author", "email", "website")
    payload: dict[str, Any] = {k: data[k] for k in fields if k in data}
    submission = comments.submit(payload, reader, pipeline(), site=found.site,
                                 actor=keys.actor(found), admit=lambda: limit_reader_post(reader))
    body["stored"] = manage_view(submission.comment)
    body["decision"] = _decision(submission.decision)
    return jsonify(body), 201


@bp.post("/feedback")
@keys.require_key("analyze")
def feedback() -> tuple[Response, int]:
    """Label one of the site's comments, or a text, as spam, ham, toxic or ok for retraining."""
    data = json_body()
    reject_unknown(data, {"comment", "text", "author", "website", "email", "label"})
    label = data.get("label")
    if label not in FEEDBACK_LABELS:
        raise InvalidField("label", "must be one of " + ", ".join(FEEDBACK_LABELS))
    found = key()
    if ("comment" in data) == ("text" in data):
        raise InvalidField("comment", "send either a comment id or a text")
    if "comment" in data:
        comment_id = data["comment"]
        if isinstance(comment_id, bool) or not isinstance(comment_id, int):
            raise InvalidField("comment", "must be a comment id")
        comment = _site_comment(comment_id)
        entry = Label(site_id=comment.site_id, comment_id=comment.id, text=comment.text,
                      author=comment.author, website=comment.website, email=comment.email,
                      label=label, source=keys.actor(found), scores=dict(comment.scores or {}),
                      model_version=comment.model_version)
    else:
        entry = text_label(found, label, data)
    db.session.add(entry)
    db.session.commit()
    return jsonify(label={"id": entry.id, "label": entry.label, "comment": entry.comment_id,
                          "source": entry.source,
                          "created": comments.iso(entry.created_at)}), 201


def text_label(found: ApiKey, label: str, fields: dict[str, Any]) -> Label:
    """Return a Label for a text sent by a key, scored when the model is loaded."""
    text, _ = sanitising.clean_text(fields.get("text"))
    author = sanitising.clean_author(fields.get("author"))
    website = sanitising.clean_website(fields.get("website"))
    email = sanitising.clean_email(fields.get("email"))
    classifier = model.status(current_app).classifier
    scores, version = {}, None
    if classifier is not None:
        scores = classifier.score_one(model.CommentText(text, author, website, email)).as_dict()
        version = classifier.version
    return Label(site_id=found.site_id, text=text, author=author, website=website, email=email,
                 label=label, source=keys.actor(found), scores=scores, model_version=version)


# -- webhooks -----------------------------------------------------------------------------------


def webhook_view(hook: Webhook, secret: bool = False) -> dict[str, Any]:
    """Return a webhook's fields; its signing secret only when it was just created."""
    out = {"id": hook.id, "url": hook.url, "events": list(hook.events or webhooks.EVENTS),
           "active": hook.active, "created": comments.iso(hook.created_at)}
    if secret:
        out["secret"] = hook.secret
    return out


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    """Return one entry of a webhook's delivery log."""
    return {"id": delivery.id, "event": delivery.event, "state": delivery.state,
            "attempts": delivery.attempts, "last_status": delivery.last_status,
            "last_error": delivery.last_error,
            "next_attempt": comments.iso(delivery.next_attempt_at),
            "created": comments.iso(delivery.created_at),
            "delivered": comments.iso(delivery.delivered_at)}


def _site_webhook(webhook_id: int) -> Webhook:
    hook = db.session.get(Webhook, webhook_id) if 0 < webhook_id <= comments.MAX_ID else None
    if hook is None or hook.site_id != key().site_id:
        raise NotFound("no such webhook on this site")
    return hook


@bp.get("/manage/webhooks")
@keys.require_key("moderate")
def webhooks_list() -> Response:
    """List the site's webhooks."""
    hooks = db.session.execute(
        select(Webhook).where(Webhook.site_id == key().site_id).order_by(Webhook.id)
    ).scalars()
    return jsonify(webhooks=[webhook_view(h) for h in hooks])


@bp.post("/manage/webhooks")
@keys.require_key("moderate")
def webhooks_create() -> tuple[Response, int]:
    """Add a webhook; the answer holds its signing secret, shown this once."""
    data = json_body()
    reject_unknown(data, {"url", "events"})
    url = webhooks.check_url(data.get("url"),
                             bool(current_app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"]))
    hook = Webhook(site_id=key().site_id, url=url, secret=webhooks.new_secret(),
                   events=webhooks.check_events(data["events"]) if "events" in data
                   else list(webhooks.EVENTS), active=True)
    db.session.add(hook)
    db.session.commit()
    return jsonify(webhook=webhook_view(hook, secret=True)), 201


@bp.delete("/manage/webhooks/<int:webhook_id>")
@keys.require_key("moderate")
def webhooks_delete(webhook_id: int) -> tuple[str, int]:
    """Delete a webhook and its delivery log."""
    hook = _site_webhook(webhook_id)
    db.session.execute(db.delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    db.session.delete(hook)
    db.session.commit()
    return "", 204


@bp.get("/manage/webhooks/<int:webhook_id>/deliveries")
@keys.require_key("moderate")
def webhooks_deliveries(webhook_id: int) -> Response:
    """Show a webhook's delivery log, newest first, optionally by state."""
    hook = _site_webhook(webhook_id)
    state = request.args.get("state")
    if state is not None and state not in DELIVERY_STATES:
        raise InvalidField("state", "must be one of " + ", ".join(DELIVERY_STATES))
    per_page = int_arg("per_page", 50, 1, 200)
    page = int_arg("page", 1, 1, 1_000_000)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    if state:
        query = query.where(WebhookDelivery.state == state)
    rows = db.session.execute(
        query.order_by(WebhookDelivery.id.desc()).limit(per_page).offset((page - 1) * per_page)
    ).scalars()
    return jsonify(deliveries=[delivery_view(d) for d in rows], page=page, per_page=per_page)
