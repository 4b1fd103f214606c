"""The moderator dashboard (HTML): queues, actions, bans, audit log, stats, settings, accounts."""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from limits import parse_many
from markupsafe import Markup, escape
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MultiDict

from . import auth, comments, labels, limits, moderation, origins, policy, sanitising, stats
from . import classifier as model
from .auth import Account, admin_required, login_required
from .db import Ban, Comment, ModerationEvent, Moderator, Site, TrustedAuthor, db
from .exceptions import InvalidField

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

ACTIONS = {"approve": "Approve", "reject": "Reject", "spam": "Spam", "delete": "Delete"}
# What a flash message says an action did.
DONE = {"approve": "approved", "reject": "rejected", "spam": "marked as spam",
        "delete": "deleted"}
BAN_DURATIONS = {"": "Permanent", "1": "1 day", "7": "7 days", "30": "30 days", "365": "1 year"}
LIMIT_NAMES = ("post", "thread", "site", "edit", "report", "read")
STAT_DAYS = (7, 30, 90)
# Seconds one "everything matching" request may spend (batches are committed as they go), so
# it ends well inside the worker timeout; the moderator applies it again for the rest.
BULK_SECONDS = 20.0
# A row id in a URL: ids outside the integer columns' range are "not found" (rather than an
# error from the database driver).
ID = f"int(min=1, max={comments.MAX_ID})"
# Most entries of a word list, and the longest entry.
MAX_WORDS = 1000
MAX_WORD_LENGTH = 100

@bp.before_request
def check_csrf() -> None:
    """Check the CSRF token of every form this blueprint receives."""
    auth.protect()


@bp.after_request
def no_store(response: Response) -> Response:
    """Keep moderator pages (private data) out of every cache; security.py adds the CSP."""
    if response.mimetype in ("text/html", "text/csv"):
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def layout() -> dict[str, Any]:
    """Give every dashboard template the account, queue sizes and helpers."""
    account = auth.current()
    sizes = moderation.queue_sizes(account.allowed_sites) if account else {}
    return {
        "account": account,
        "queue_sizes": sizes,
        "queues": moderation.QUEUES,
        "actions": ACTIONS,
        "ts": _ts,
        "shown": _shown,
    }


def _ts(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _text_arg(args: Mapping[str, str], name: str, most: int) -> str:
    """Return a free-text filter from the query string, cleaned as stored text is (no NUL or
    other control characters, which PostgreSQL refuses in text), at most ``most`` long."""
    return sanitising.normalise(args.get(name) or "").strip()[:most]


def _shown(value: Any) -> str:
    """Return a value of an audit row's details as a person reads it (escaped by Jinja)."""
    if value is None:
        return "(not set)"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- helpers --------------------------------------------------------------------------------


def _account() -> Account:
    return auth.require()


def _safe_next(default: str, target: str | None = None) -> str:
    """Return ``target`` (by default the request's ``next``) if it is a dashboard path, else
    the default."""
    if target is None:
        target = request.values.get("next", "")
    parts = urllib.parse.urlsplit(target)
    if target.startswith("/dashboard") and not parts.scheme and not parts.netloc:
        return target
    return default


def default_thresholds() -> dict[str, dict[str, float]]:
    """Return the thresholds a site gets when it sets none: the model's, else the service's."""
    from .api import pipeline

    pipe = pipeline()
    merged = {**pipe.default_thresholds, **(pipe.classifier.thresholds if pipe.classifier else {})}
    return {name: {"hold": float(band["hold"]), "reject": float(band["reject"])}
            for name, band in merged.items()}


def _site_for(account: Account, site_id: int) -> Site:
    site = db.session.get(Site, site_id) if 0 < site_id <= comments.MAX_ID else None
    if site is None:
        abort(404, "No such site.")
    if not account.can_see(site.id):
        abort(403, "You do not moderate this site.")
    return site


def _int(args: Mapping[str, str], name: str, errors: dict[str, str],
         low: int = -comments.MAX_ID, high: int = comments.MAX_ID) -> int | None:
    """Return a whole-number field between low and high, or record why it is not one."""
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        errors[name] = "must be a whole number"
        return None
    if not low <= value <= high:
        errors[name] = f"must be between {low} and {high}"
        return None
    return value


def _id_arg(args: Mapping[str, str], name: str, errors: dict[str, str]) -> int | None:
    """Return a row id field (site, comment, ...), or record why it is not one."""
    return _int(args, name, errors, 1, comments.MAX_ID)


def _parse_id(raw: str, low: int = 1) -> int | None:
    """Return a row id written in ASCII digits, from low to the integer columns' top, else None.

    (``str.isdigit`` also accepts digits such as "²" that ``int`` refuses.)
    """
    raw = raw.strip()
    if not (raw.isascii() and raw.isdecimal()) or len(raw) > 10:
        return None
    value = int(raw)
    return value if low <= value <= comments.MAX_ID else None


def _score(args: Mapping[str, str], name: str, errors: dict[str, str]) -> float | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        errors[name] = "must be a number between 0 and 1"
        return None
    if not 0 <= value <= 1 or math.isnan(value):
        errors[name] = "must be between 0 and 1"
        return None
    return value


def _day(args: Mapping[str, str], name: str, errors: dict[str, str], end: bool = False
         ) -> datetime | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        errors[name] = "must be a date like 2026-01-31"
        return None
    if end:
        try:
            return value + timedelta(days=1)
        except OverflowError:  # up to the end of 9999-12-31: no end at all
            return None
    return value


def queue_filter(
    account: Account, queue: str, args: Mapping[str, str]
) -> tuple[moderation.QueueFilter, dict[str, str]]:
    """Return the filter a query string describes, with a message for each bad field."""
    errors: dict[str, str] = {}
    site_id = _id_arg(args, "site", errors)
    if site_id is not None and not account.can_see(site_id):
        abort(403, "You do not moderate this site.")
    sort = args.get("sort") or default_sort(queue)
    if sort not in moderation.SORTS:
        errors["sort"] = "must be one of " + ", ".join(moderation.SORTS)
        sort = default_sort(queue)
    search_in = args.get("in") or "all"
    if search_in not in moderation.SEARCH_FIELDS:
        errors["in"] = "must be one of " + ", ".join(moderation.SEARCH_FIELDS)
        search_in = "all"
    flt = moderation.QueueFilter(
        queue=queue,
        allowed_sites=account.allowed_sites,
        site_id=site_id,
        thread=_text_arg(args, "thread", 300),
        reason=_text_arg(args, "reason", 100),
        score_min=_score(args, "min", errors),
        score_max=_score(args, "max", errors),
        since=_day(args, "since", errors),
        until=_day(args, "until", errors, end=True),
        q=_text_arg(args, "q", 200),
        search_in=search_in,
        sort=sort,
    )
    return flt, errors


def default_sort(queue: str) -> str:
    """Return a queue's default order: newest first for Published, priority elsewhere."""
    return "newest" if queue == "published" else "priority"


FILTER_KEYS = ("site", "thread", "reason", "min", "max", "since", "until", "q", "in", "sort")


def _filter_args(args: Mapping[str, str]) -> dict[str, str]:
    return {k: args[k] for k in FILTER_KEYS if args.get(k)}


# Which scores get their driving words highlighted, from which score on, and how many words:
# the model explains character n-grams, so weak contributions would mark nearly every word.
HIGHLIGHT_HEADS = ("spam", "toxicity")
HIGHLIGHT_MIN_SCORE = 0.25
HIGHLIGHT_TERMS = 5
# Terms weighing less than this share of the strongest one are left unmarked.
HIGHLIGHT_RELATIVE = 0.2


def _wordish(char: str) -> bool:
    # Letters of scripts written without spaces (Chinese) are not grown into "words".
    return char.isalnum() and unicodedata.category(char) != "Lo"


def _whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a span to the whole words it touches, so "idi" marks "idiot"."""
    while 0 < start < len(text) and _wordish(text[start - 1]) and _wordish(text[start]):
        start -= 1
    while 0 < end < len(text) and _wordish(text[end]) and _wordish(text[end - 1]):
        end += 1
    return start, end


def strongest(
    explanation: Mapping[str, Sequence[Mapping[str, Any]]], scores: Mapping[str, float]
) -> dict[str, list[Mapping[str, Any]]]:
    """Return, for each high enough score, the few terms that pushed it up most."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for head in HIGHLIGHT_HEADS:
        terms = sorted(explanation.get(head, []), key=lambda t: -float(t.get("weight", 0)))
        if float(scores.get(head) or 0) < HIGHLIGHT_MIN_SCORE or not terms:
            continue
        top = float(terms[0].get("weight", 0))
        out[head] = [t for t in terms[:HIGHLIGHT_TERMS]
                     if float(t.get("weight", 0)) >= top * HIGHLIGHT_RELATIVE]
    return out


def highlight(text: str, explanation: Mapping[str, Sequence[Mapping[str, Any]]]) -> Markup:
    """Return the plain text escaped, with the spans that drove each score in <mark>."""
    heads = {name: 1 << i for i, name in enumerate(explanation)}
    flags = [0] * len(text)
    for head, terms in explanation.items():
        for term in terms:
            if term.get("field") != "text":
                continue
            for raw_start, raw_end in term.get("spans", []):
                start, end = _whole_words(text, max(0, int(raw_start)),
                                          min(len(text), int(raw_end)))
                for i in range(start, end):
                    flags[i] |= heads[head]
    out: list[str] = []
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and flags[j] == flags[i]:
            j += 1
        piece = str(escape(text[i:j]))
        if flags[i]:
            names = [name for name, bit in heads.items() if flags[i] & bit]
            css = " ".join(f"m-{name}" for name in names)
            out.append(f'<mark class="{css}" title="raises {", ".join(names)}">{piece}</mark>')
        else:
            out.append(piece)
        i = j
    return Markup("".join(out))


def present(items: Sequence[Comment]) -> list[dict[str, Any]]:
    """Return what a card shows for each comment: highlights, scores, history, reports."""
    classifier = model.status(current_app).classifier
    explain = getattr(classifier, "explain", None)
    reports = moderation.open_reports([c.id for c in items])
    histories: dict[tuple[int, str], dict[str, int]] = {}
    keys = {c.author_key for c in items if c.author_key}
    if keys:
        for site_id, key, status, n in db.session.execute(
            select(Comment.site_id, Comment.author_key, Comment.status, func.count(Comment.id))
            .where(Comment.author_key.in_(keys),
                   Comment.site_id.in_({c.site_id for c in items}))
            .group_by(Comment.site_id, Comment.author_key, Comment.status)
        ).all():
            histories.setdefault((site_id, key), {})[status] = int(n)
    out = []
    for comment in items:
        plain = sanitising.plain_text(comment.html)
        marked: Markup | None = None
        terms: dict[str, list[str]] = {}
        if explain is not None:
            try:
                explanation = explain(model.CommentText(plain, comment.author, comment.website,
                                                        comment.email))
            except Exception:  # noqa: BLE001 - a failed explanation must not hide the comment
                current_app.logger.exception("explain failed for comment %s", comment.id)
            else:
                chosen = strongest(explanation, comment.scores or {})
                marked = highlight(plain, chosen)
                terms = {head: [str(t["term"]) for t in found if t.get("field") != "text"]
                         for head, found in chosen.items()}
        scores = dict(comment.scores or {})
        out.append({
            "c": comment,
            "marked": marked,
            "other_terms": {k: v for k, v in terms.items() if v},
            "scores": sorted(scores.items(), key=lambda kv: (kv[0] not in ("spam", "toxicity"),
                                                              kv[0])),
            "reports": reports.get(comment.id, []),
            "history": histories.get((comment.site_id, comment.author_key), {}),
            "thread_url": _thread_url(comment),
            # Where the text's links go: the card shows link text, and link spam hides there.
            "links": sanitising.link_targets(comment.html),
        })
    return out


def _thread_url(comment: Comment) -> str:
    allowed = comment.site.origins or []
    return (allowed[0] + comment.thread.uri) if allowed else comment.thread.uri


def _embed_snippet(site: Site) -> str:
    root = request.host_url.rstrip("/")
    return (f'<div id="comments"></div>\n<script src="{root}/embed.js" '
            f'data-site="{site.key}" async></script>')


# -- sign in --------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
# Failed attempts per client network (IPv6 /64, IPv4 address), whatever account they try (a
# team signing in from one office network is not counted)...
@limits.limiter.limit(
    lambda: current_app.config["LIMIT_LOGIN"],
    key_func=limits.client_key,
    methods=["POST"],
    scope="login",
    override_defaults=False,
    deduct_when=auth.failed_sign_in,
)
# ...and failed attempts per account, from every address together.
@limits.limiter.limit(
    lambda: current_app.config["LIMIT_LOGIN_ACCOUNT"],
    key_func=auth.login_account_key,
    methods=["POST"],
    scope="login-account",
    override_defaults=False,
    deduct_when=auth.failed_sign_in,
)
def login() -> Any:
    """Show the sign-in form and sign a moderator in."""
    error = ""
    email = ""
    status = 200
    if request.method == "POST":
        email = (request.form.get("email") or "").strip()
        moderator = auth.authenticate(email, request.form.get("password") or "")
        if moderator is not None and moderator.disabled_at is None:
            auth.login(moderator)
            return redirect(_safe_next(url_for(".index")))
        if moderator is not None:  # the right password: its owner may learn the account is off
            error, status = "This account is disabled; ask an administrator.", 403
        else:
            error, status = "Wrong email or password.", 401
    return render_template("dashboard/login.html", error=error, email=email,
                           next=_safe_next("")), status


@bp.post("/logout")
def logout() -> Any:
    """Sign out everywhere: this and every other browser signed in to the account."""
    auth.logout()
    flash("You are signed out everywhere: every browser signed in to this account must sign in "
          "again.", "ok")
    return redirect(url_for(".login"))


# -- queues ---------------------------------------------------------------------------------


# The site root has nothing of its own: it leads moderators to the dashboard.
root = Blueprint("root", __name__)


@root.get("/")
def home() -> Any:
    """Send visitors of the site root to the dashboard."""
    return redirect(url_for("dashboard.index"))


@bp.get("/")
@login_required
def index() -> Any:
    """Open the pending queue."""
    return redirect(url_for(".queue", name="pending"))


@bp.get("/queue/<name>")
@login_required
def queue(name: str) -> Any:
    """List one queue with filters, search, sort and keyset pages."""
    if name not in moderation.QUEUES:
        abort(404, "No such queue.")
    account = _account()
    flt, errors = queue_filter(account, name, request.args)
    cursor = request.args.get("after", "")
    try:
        page = moderation.queue_page(flt, cursor)
    except InvalidField:
        errors["after"] = "is not a page of this list; showing the first page"
        page = moderation.queue_page(flt)
    args = _filter_args(request.args)
    return render_template(
        "dashboard/queue.html",
        name=name,
        page=page,
        cards=present(page.comments),
        errors=errors,
        args=args,
        filter_query=urllib.parse.urlencode(args),
        upto=moderation.newest_matching_id(flt) if page.total else 0,
        sites=auth.visible_sites(account),
        model_ok=model.status(current_app).classifier is not None,
        first=not cursor,
        sort=flt.sort,
    )


@bp.get(f"/comments/<{ID}:comment_id>")
@login_required
def comment(comment_id: int) -> Any:
    """Show one comment with everything known about it and its author."""
    account = _account()
    return _comment_page(moderation.get_comment_for(comment_id, account.allowed_sites))


def _comment_page(found: Comment, errors: dict[str, str] | None = None, status: int = 200
                  ) -> tuple[str, int]:
    # Only the comment's own site's entries (and admins' bans on every site): an entry another
    # site's moderator tied to this comment is not part of its history.
    events = db.session.execute(
        select(ModerationEvent).where(
            ModerationEvent.comment_id == found.id,
            or_(ModerationEvent.site_id == found.site_id, ModerationEvent.site_id.is_(None)),
        ).order_by(ModerationEvent.id.desc()).limit(50)
    ).scalars().all()
    extra = {"draft": request.form.get("text", "")} if errors else {}
    # The queue page the moderator came from (with its filter and page), kept through the
    # actions taken here so "Back to the queue" returns there.
    came_from = request.args.get("next", "")
    if not came_from and errors:  # a refused form, posted with this page (and its next) as next
        inner = urllib.parse.urlsplit(request.form.get("next", "")).query
        came_from = urllib.parse.parse_qs(inner).get("next", [""])[0]
    back = _safe_next(url_for(".queue", name="pending"), came_from)
    return render_template(
        "dashboard/comment.html",
        back=back,
        here=url_for(".comment", comment_id=found.id, next=back),
        card=present([found])[0],
        events=events,
        trusted=moderation.is_trusted(found.site_id, found.author_key),
        durations=BAN_DURATIONS,
        domain=urllib.parse.urlsplit(found.website).hostname or "",
        model_ok=model.status(current_app).classifier is not None,
        errors=errors or {},
        **extra,
    ), status


@bp.post(f"/comments/<{ID}:comment_id>/<action>")
@login_required
def act(comment_id: int, action: str) -> Any:
    """Approve, reject, mark as spam or delete one comment."""
    if action not in ACTIONS:
        abort(404, "No such action.")
    account = _account()
    found = moderation.get_comment_for(comment_id, account.allowed_sites)
    batch = secrets.token_urlsafe(9)
    if comments.moderate_many([found], action, account.actor,
                              (request.form.get("reason") or "").strip()[:500], batch):
        flash(f"Comment #{comment_id} {DONE[action]}.", f"undo:{batch}")
    else:
        flash(f"Comment #{comment_id} was already {found.status}: nothing changed.", "ok")
    return redirect(_safe_next(url_for(".queue", name="pending")))


@bp.post("/undo")
@login_required
def undo() -> Any:
    """Undo one click of this moderator's (a single or bulk action) within the hour."""
    account = _account()
    batch = request.form.get("batch", "")
    if not 1 <= len(batch) <= 32:
        abort(400, "Nothing to undo.")
    undone, moved_on = comments.undo_batch(batch, account.actor, account.can_see)
    if not undone and not moved_on:
        flash("Nothing to undo: that action was undone already, is over an hour old, or was "
              "not yours.", "error")
    else:
        later = f" ({moved_on} changed since, left as they are)" if moved_on else ""
        flash(f"Undone: {undone} comment{'s' if undone != 1 else ''} back where "
              f"{'they were' if undone != 1 else 'it was'}{later}.", "ok")
    return redirect(_safe_next(url_for(".queue", name="pending")))


@bp.post(f"/comments/<{ID}:comment_id>/edit")
@login_required
def edit(comment_id: int) -> Any:
    """Replace a comment's text; it is sanitised again and the edit is audited."""
    account = _account()
    found = moderation.get_comment_for(comment_id, account.allowed_sites)
    try:
        moderation.edit(found, request.form.get("text", ""), account.actor,
                        (request.form.get("reason") or "").strip()[:500])
    except InvalidField as exc:
        return _comment_page(found, {"text": exc.message}, 400)
    flash(f"Comment #{comment_id} edited.", "ok")
    return redirect(_safe_next(url_for(".comment", comment_id=comment_id)))


@bp.post(f"/comments/<{ID}:comment_id>/trust")
@login_required
def trust(comment_id: int) -> Any:
    """Trust the comment's author on its site."""
    account = _account()
    found = moderation.get_comment_for(comment_id, account.allowed_sites)
    entry = moderation.trust(found, account.actor)
    flash(f"Trusted {entry.label}: their comments skip the model's holds.", "ok")
    return redirect(_safe_next(url_for(".comment", comment_id=comment_id)))


@bp.post("/bulk")
@login_required
def bulk() -> Any:
    """Apply one action to the selected comments or to all matching the filter, once confirmed."""
    account = _account()
    action = request.form.get("action", "")
    if action not in ACTIONS:
        abort(400, "Choose an action: approve, reject, spam or delete.")
    name = request.form.get("queue", "pending")
    if name not in moderation.QUEUES:
        abort(400, "Unknown queue.")
    filter_query = request.form.get("filter", "")
    back = url_for(".queue", name=name) + (f"?{filter_query}" if filter_query else "")
    scope = request.form.get("scope", "selected")
    reason = (request.form.get("reason") or "").strip()[:500]
    if scope == "matching":
        args = MultiDict(urllib.parse.parse_qsl(filter_query))
        flt, errors = queue_filter(account, name, args)
        if errors:
            abort(400, "The filter is not valid: " + "; ".join(f"{k} {v}"
                                                                for k, v in errors.items()))
        raw_upto = request.form.get("upto", "").strip()
        # The newest id matching when the moderator confirmed (0: none matched then).
        confirmed_upto = _parse_id(raw_upto, low=0) if raw_upto else None
        if raw_upto and confirmed_upto is None:
            abort(400, f"{raw_upto[:20]!r} is not a comment id; go back to the queue and apply "
                       "the action again.")
        upto = (moderation.newest_matching_id(flt) if confirmed_upto is None
                else confirmed_upto)
        count = moderation.count_matching(flt, upto, action)
        ids: list[int] = []
    else:
        raw_ids = [v.strip() for v in request.form.getlist("ids") if v.strip()]
        parsed = [_parse_id(v) for v in raw_ids]
        if None in parsed:
            bad = raw_ids[parsed.index(None)]
            abort(400, f"{bad[:20]!r} is not a comment id; go back to the queue and select "
                       "the comments again.")
        ids = sorted({i for i in parsed if i is not None})
        if not ids:
            flash("Select at least one comment first.", "error")
            return redirect(back)
        if not account.is_admin:
            hidden = db.session.execute(
                select(func.count(Comment.id)).where(
                    Comment.id.in_(ids), Comment.site_id.not_in(account.site_ids))
            ).scalar_one()
            if hidden:
                abort(404, "Some of the selected comments do not exist on your sites.")
        count = len(ids)
    if request.form.get("confirmed") != "yes":
        return render_template("dashboard/confirm.html", action=action, count=count,
                               scope=scope, ids=ids, queue=name, filter_query=filter_query,
                               back=back, reason=reason, upto=upto if scope == "matching" else "")
    finished = True
    batch = secrets.token_urlsafe(9)
    # A bulk on everything matching that takes several requests is one click to undo: each
    # request carries on the batch of the first (kept in the session until it is finished).
    if scope == "matching":
        going_on = f"{action}|{name}|{filter_query}|{upto}"
        if session.get("bulk", {}).get("what") == going_on:
            batch = session["bulk"]["batch"]
        done, finished = moderation.moderate_matching(flt, action, account.actor, reason, upto,
                                                      seconds=BULK_SECONDS, batch=batch)
        if finished:
            session.pop("bulk", None)
        else:
            session["bulk"] = {"what": going_on, "batch": batch}
    else:
        done = moderation.moderate_ids(ids, action, account.actor, reason,
                                       allowed=lambda c: account.can_see(c.site_id), batch=batch)
    skipped = count - done if scope != "matching" else 0
    unchanged = f" ({skipped} needed no change)" if skipped > 0 else ""
    flash(f"{done} comment{'s' if done != 1 else ''} {DONE[action]}{unchanged}.",
          f"undo:{batch}" if done else "ok")
    if not finished:
        left = moderation.count_matching(flt, upto, action)
        flash(f"{left} more still match: that took too long for one request, so apply the "
              "action again to continue.", "error")
    return redirect(back)


# -- bans and trust -------------------------------------------------------------------------


@bp.route("/bans", methods=["GET", "POST"])
@login_required
def bans() -> Any:
    """List bans and trusted authors; add a ban."""
    account = _account()
    errors: dict[str, str] = {}
    form = request.form if request.method == "POST" else MultiDict()
    if request.method == "POST":
        raw_site = form.get("site", "").strip()
        site_id: int | None = None
        if raw_site:
            site_id = _site_for(account, _parse_id(raw_site) or 0).id
        elif not account.is_admin:
            errors["site"] = "choose one of your sites (only admins ban on every site)"
        days = form.get("duration", "")
        if days not in BAN_DURATIONS:
            errors["duration"] = "choose one of the offered durations"
        comment_id = _ban_comment(account, form.get("comment", ""), site_id, errors)
        if not errors:
            try:
                entry = moderation.ban(
                    site_id, form.get("kind", ""), form.get("value", ""),
                    actor=account.actor,
                    reason=(form.get("reason") or "").strip()[:500],
                    duration=timedelta(days=int(days)) if days else None,
                    comment_id=comment_id,
                )
            except InvalidField as exc:
                errors[exc.field] = exc.message
            else:
                flash(f"Banned {moderation.BAN_KINDS[entry.kind].lower()} {entry.value}.", "ok")
                return redirect(_safe_next(url_for(".bans")))
    status = 400 if errors else 200
    sites = auth.visible_sites(account)
    return render_template(
        "dashboard/bans.html",
        bans=moderation.bans(account.allowed_sites),
        trusted=moderation.trusted(account.allowed_sites),
        sites=sites,
        site_names={s.id: s.name for s in sites},
        kinds=moderation.BAN_KINDS,
        durations=BAN_DURATIONS,
        errors=errors,
        form=form,
        now=datetime.now(UTC),
    ), status


def _ban_comment(account: Account, raw: str, site_id: int | None,
                 errors: dict[str, str]) -> int | None:
    """Return the id of the comment a ban is made from, if it belongs to the ban's site.

    A ban's audit entry names the comment, so it shows in that comment's history: a comment
    of another site (or one the moderator cannot see) is refused rather than written into it.
    """
    raw = raw.strip()
    if not raw:
        return None
    comment_id = _parse_id(raw)
    found = db.session.get(Comment, comment_id) if comment_id is not None else None
    if found is None or not account.can_see(found.site_id) or (
        site_id is not None and found.site_id != site_id
    ):
        errors["comment"] = (f"Comment #{raw[:20]} is not a comment of the site chosen for "
                             "this ban; nothing was banned.")
        return None
    return found.id


@bp.post(f"/bans/<{ID}:ban_id>/lift")
@login_required
def lift(ban_id: int) -> Any:
    """End a ban now."""
    account = _account()
    entry = db.session.get(Ban, ban_id)
    if entry is None or not (account.is_admin or entry.site_id in account.site_ids):
        abort(404, "No such ban.")
    moderation.lift_ban(entry, account.actor)
    flash(f"Lifted the ban on {moderation.BAN_KINDS[entry.kind].lower()} {entry.value}.", "ok")
    return redirect(url_for(".bans"))


@bp.post(f"/trusted/<{ID}:entry_id>/remove")
@login_required
def untrust(entry_id: int) -> Any:
    """Stop trusting an author."""
    account = _account()
    entry = db.session.get(TrustedAuthor, entry_id)
    if entry is None or not account.can_see(entry.site_id):
        abort(404, "No such trusted author.")
    label = entry.label
    moderation.untrust(entry, account.actor)
    flash(f"No longer trusting {label}.", "ok")
    return redirect(url_for(".bans"))


# -- audit, stats, labels -------------------------------------------------------------------


AUDIT_FILTER_KEYS = ("site", "actor", "action", "comment", "since", "until")


@bp.get("/audit")
@login_required
def audit() -> Any:
    """List the audit trail with filters, newest first."""
    account = _account()
    args = request.args
    errors: dict[str, str] = {}
    site_id = _id_arg(args, "site", errors)
    if site_id is not None and not account.can_see(site_id):
        abort(403, "You do not moderate this site.")
    action = args.get("action", "")
    if action and action not in moderation.AUDIT_ACTIONS:
        errors["action"] = "is not a known action"
        action = ""
    flt = moderation.AuditFilter(
        allowed_sites=account.allowed_sites,
        site_id=site_id,
        actor=_text_arg(args, "actor", 300),
        action=action,
        comment_id=_id_arg(args, "comment", errors),
        since=_day(args, "since", errors),
        until=_day(args, "until", errors, end=True),
    )
    before = _id_arg(args, "before", errors)
    events, more = moderation.audit_page(flt, before)
    sites = auth.visible_sites(account)
    # Only the filter's own keys go into the pager links: any other key would reach url_for
    # (where "_method", "_scheme" or "_external" change the link, or fail).
    keep = {k: args[k] for k in AUDIT_FILTER_KEYS if args.get(k)}
    return render_template("dashboard/audit.html", events=events, more=more, errors=errors,
                           args=keep, sites=sites, site_names={s.id: s.name for s in sites},
                           audit_actions=moderation.AUDIT_ACTIONS)


@bp.get("/stats")
@login_required
def stats_page() -> Any:
    """Draw the charts: outcomes, spam and toxic share, queue, time to decision, scores."""
    account = _account()
    errors: dict[str, str] = {}
    site_id = _id_arg(request.args, "site", errors)
    site = _site_for(account, site_id) if site_id is not None else None
    days = _int(request.args, "days", errors) or 30
    if days not in STAT_DAYS:
        errors["days"] = "must be one of " + ", ".join(map(str, STAT_DAYS))
        days = 30
    if site is not None:
        from .api import pipeline

        bands = comments.site_settings(site, pipeline()).thresholds
        thresholds = {n: {"hold": b.hold, "reject": b.reject} for n, b in bands.items()}
    else:
        thresholds = default_thresholds()
    window = stats.Window(account.allowed_sites, site_id, days)
    return render_template(
        "dashboard/stats.html",
        charts=stats.charts(window, thresholds),
        totals=stats.totals(window),
        sites=auth.visible_sites(account),
        site=site,
        days=days,
        stat_days=STAT_DAYS,
        errors=errors,
    )


@bp.get("/labels.csv")
@login_required
def labels_csv() -> Response:
    """Download the moderator decisions (labels) of the visible sites as CSV."""
    account = _account()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return Response(
        stream_with_context(labels.csv_chunks(account.allowed_sites,
                                              safe_for_spreadsheets=True)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="labels-{stamp}.csv"'},
    )


# -- sites and settings ---------------------------------------------------------------------


@bp.route("/sites", methods=["GET", "POST"])
@login_required
def sites() -> Any:
    """List the visible sites; admins add new ones."""
    account = _account()
    errors: dict[str, str] = {}
    form = request.form if request.method == "POST" else MultiDict()
    if request.method == "POST":
        if not account.is_admin:
            abort(403, "Only administrators may add sites.")
        name = " ".join((form.get("name") or "").split())[:200]
        if not name:
            errors["name"] = "is required"
        allowed, origin_error = _origins(form.get("origins", ""))
        if origin_error:
            errors["origins"] = origin_error
        if not errors:
            site = Site(name=name, origins=allowed, settings={})
            db.session.add(site)
            db.session.flush()
            db.session.add(ModerationEvent(site_id=site.id, actor=account.actor,
                                           action="settings", reason=f"site {name} added"))
            db.session.commit()
            flash(f"Added site {name}.", "ok")
            return redirect(url_for(".settings", site_id=site.id))
    return render_template("dashboard/sites.html", sites=auth.visible_sites(account),
                           errors=errors, form=form), (400 if errors else 200)


def _origins(raw: str) -> tuple[list[str], str]:
    """Return the origins of a form field, one per line, as browsers send them, or an error."""
    try:
        return origins.normalise_all(raw.splitlines()), ""
    except origins.InvalidOrigin as error:
        return [], str(error)


def _words(form: Mapping[str, str], name: str, errors: dict[str, str]) -> list[str]:
    """Return a word list field, one entry per line, or record which limit it exceeds."""
    out: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate((form.get(name) or "").splitlines(), start=1):
        word = " ".join(sanitising.normalise(line).split())
        if len(word) > MAX_WORD_LENGTH:
            errors[name] = (f"line {number} has {len(word)} characters: each entry may have at "
                            f"most {MAX_WORD_LENGTH}")
            return []
        if word and word not in seen:
            seen.add(word)
            out.append(word)
    if len(out) > MAX_WORDS:
        errors[name] = (f"has {len(out):,} different entries: a list may have at most "
                        f"{MAX_WORDS:,}")
        return []
    return out


def parse_settings(
    form: Mapping[str, str],
    current: Mapping[str, Any],
    defaults: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Return new site settings and origins from the form, or the errors per field.

    Thresholds equal to the defaults are not stored, so the site follows a retrained model's.
    """
    errors: dict[str, str] = {}
    settings = dict(current)
    thresholds: dict[str, dict[str, float]] = {}
    for name in policy.SCORED:
        band: dict[str, float] = {}
        for edge in ("hold", "reject"):
            key = f"{name}_{edge}"
            value = _score(form, key, errors)
            if value is None and key not in errors:
                errors[key] = "is required: a number between 0 and 1"
            if value is not None:
                band[edge] = value
        if len(band) == 2 and band["hold"] >= band["reject"]:
            errors[f"{name}_hold"] = "must be below the reject threshold"
        if band != dict((defaults or {}).get(name) or {}):
            thresholds[name] = band
    settings["thresholds"] = thresholds
    settings["banned_words"] = _words(form, "banned_words", errors)
    settings["suspect_words"] = _words(form, "suspect_words", errors)
    mode = form.get("premoderation", "none")
    if mode not in policy.PREMODERATION_MODES:
        errors["premoderation"] = "must be one of " + ", ".join(policy.PREMODERATION_MODES)
    settings["premoderation"] = mode
    for key, low, high in (("max_links", 0, 100), ("new_commenter_holds", 0, 100)):
        value = _int(form, key, errors)
        if value is None and key not in errors:
            errors[key] = "is required"
        elif value is not None and not low <= value <= high:
            errors[key] = f"must be between {low} and {high}"
        else:
            settings[key] = value
    overrides: dict[str, str] = {}
    for name in LIMIT_NAMES:
        raw = (form.get(f"limit_{name}") or "").strip()
        if not raw:
            continue
        try:
            parse_many(raw)
        except ValueError as exc:
            errors[f"limit_{name}"] = f"is not a limit like 5/minute;100/day ({exc})"
        else:
            overrides[name] = raw
    settings["limits"] = overrides
    allowed, origin_error = _origins(form.get("origins", ""))
    if origin_error:
        errors["origins"] = origin_error
    return settings, allowed, errors


@bp.route(f"/sites/<{ID}:site_id>/settings", methods=["GET", "POST"])
@login_required
def settings(site_id: int) -> Any:
    """Show a site's moderation settings; admins change them."""
    account = _account()
    site = _site_for(account, site_id)
    from .api import pipeline

    effective = comments.site_settings(site, pipeline())
    errors: dict[str, str] = {}
    form: Mapping[str, str] = _settings_form(site, effective)
    if request.method == "POST":
        if not account.is_admin:
            abort(403, "Only administrators may change site settings.")
        form = request.form
        new, allowed, errors = parse_settings(request.form, site.settings or {},
                                              default_thresholds())
        if not errors:
            # The audit compares the settings in force (defaults filled in), so a default
            # stored for the first time is not reported as a change.
            old = {**dataclasses.asdict(effective), "origins": list(site.origins or [])}
            site.settings, site.origins = new, allowed
            now = {**dataclasses.asdict(comments.site_settings(site, pipeline())),
                   "origins": list(allowed)}
            changed = sorted(k for k in old.keys() | now.keys() if old.get(k) != now.get(k))
            db.session.add(ModerationEvent(
                site_id=site.id, actor=account.actor, action="settings",
                reason="changed " + (", ".join(changed) or "nothing"),
                details={"before": {k: old.get(k) for k in changed},
                         "after": {k: now.get(k) for k in changed}}))
            db.session.commit()
            flash("Settings saved.", "ok")
            return redirect(url_for(".settings", site_id=site.id))
    return render_template(
        "dashboard/settings.html",
        site=site,
        form=form,
        errors=errors,
        modes=policy.PREMODERATION_MODES,
        limit_names=LIMIT_NAMES,
        defaults={n: current_app.config[f"LIMIT_{n.upper()}"] for n in LIMIT_NAMES},
        snippet=_embed_snippet(site),
        readonly=not account.is_admin,
    ), (400 if errors else 200)


def _settings_form(site: Site, effective: policy.SiteSettings) -> dict[str, str]:
    form = {
        "origins": "\n".join(site.origins or []),
        "banned_words": "\n".join(effective.banned_words),
        "suspect_words": "\n".join(effective.suspect_words),
        "premoderation": effective.premoderation,
        "max_links": str(effective.max_links),
        "new_commenter_holds": str(effective.new_commenter_holds),
    }
    for name, band in effective.thresholds.items():
        form[f"{name}_hold"], form[f"{name}_reject"] = f"{band.hold:g}", f"{band.reject:g}"
    for name, value in effective.limits.items():
        form[f"limit_{name}"] = value
    return form



# -- moderator accounts ---------------------------------------------------------------------
#
# The same rules as `flask moderator add|disable|enable` (auth.account_email, check_password,
# check_access, disable, enable), plus what only a web form needs: an admin cannot lock
# themselves out, and no change may leave the service without an enabled admin. Every change
# is an audit row (action "account", no site: admins see it); passwords and hashes never are.
#
# Each account's forms post to their own URL ending in the card's fragment (#m-<id>), so a
# refused form's page opens at the card with its message; saved changes go back to the top of
# the Moderators page (#main), where the message saying what changed is.


def _audit_account(account: Account, reason: str, before: Mapping[str, Any] | None = None,
                   after: Mapping[str, Any] | None = None) -> None:
    """Add the audit row of an account change (the caller commits)."""
    details = {"before": dict(before), "after": dict(after or {})} if before else {}
    db.session.add(ModerationEvent(site_id=None, actor=account.actor, action="account",
                                   reason=reason, details=details))


def _target(moderator_id: int) -> Moderator:
    found = db.session.get(Moderator, moderator_id)
    if found is None:
        abort(404, "No such moderator account.")
    return found


def _access_form(form: MultiDict[str, str], errors: dict[str, str]) -> tuple[bool, list[Site]]:
    """Return the admin flag and the sites a form chose, or record why they are refused."""
    is_admin = form.get("admin") == "yes"
    raw = [v for v in form.getlist("sites") if v.strip()]
    ids = {_parse_id(v) for v in raw}
    chosen: list[Site] = []
    if None in ids:
        errors["sites"] = "is not a list of sites: reload the page and choose again"
    elif ids:
        chosen = list(db.session.execute(
            select(Site).where(Site.id.in_(ids)).order_by(Site.name, Site.id)).scalars())
        if len(chosen) != len(ids):
            errors["sites"] = ("names a site that no longer exists: reload the page and "
                               "choose again")
    if "sites" not in errors:
        try:
            auth.check_access(is_admin, chosen)
        except InvalidField as error:
            errors[error.field] = error.message
    return is_admin, chosen


def _password_field(form: Mapping[str, str], name: str, errors: dict[str, str]) -> str:
    """Return a new password field, or record why it is too weak."""
    password = form.get(name) or ""
    try:
        auth.check_password(password)
    except InvalidField as error:
        errors[name] = error.message
    return password


def _access_ids(moderator: Moderator) -> dict[str, Any]:
    """Return what decides whether an account's role or sites changed: sites by id, since two
    sites may have the same name."""
    return {"role": moderator.is_admin, "sites": {s.id for s in moderator.sites}}


def _access_of(moderator: Moderator) -> dict[str, Any]:
    """Return an account's role and sites as the audit log records them (each site by name and
    key, so that two sites of the same name can be told apart)."""
    return {"role": "admin" if moderator.is_admin else "moderator",
            "sites": [auth.site_label(s)
                      for s in sorted(moderator.sites, key=lambda s: (s.name, s.id))]}


def _shared_names() -> set[str]:
    """Return the site names more than one site has."""
    return set(db.session.execute(
        select(Site.name).group_by(Site.name).having(func.count(Site.id) > 1)).scalars())


def _site_namer() -> Callable[[Site], str]:
    """Return how a message names a site: by name, with the key if another site shares it."""
    shared = _shared_names()
    return lambda site: auth.site_label(site) if site.name in shared else site.name


def _to_moderators() -> Any:
    """Go back to the top of the Moderators page, where the flash message is.

    Without a fragment of its own, the browser would keep the posted form's (#m-<id>) and
    land on the card, below the message.
    """
    return redirect(url_for(".moderators", _anchor="main"))


def _keeps_an_admin(account: Account, target: Moderator, errors: dict[str, str],
                    field: str) -> None:
    """Record an error if the target is an enabled admin and losing it would leave none.

    An admin never changes their own flag or status here, so this only refuses when the
    acting admin lost their own rights after this request was let in: two admins demoting or
    disabling each other at the same moment. The enabled admins' rows are locked first
    (auth.lock_enabled_admins, on SQLite and PostgreSQL alike), so such requests run one after
    the other and the second sees the first's change.
    """
    admins = auth.lock_enabled_admins()
    if target.id in admins and not admins - {target.id}:
        errors[field] = ("This is the last enabled admin: make another account an admin "
                         "first, so that someone can still manage accounts.")
    elif account.id not in admins:
        abort(403, "You are no longer an administrator.")


def _moderators_page(errors: dict[str, str] | None = None,
                     form: MultiDict[str, str] | None = None, failed: str = "") -> Any:
    """Render the accounts, the add form and each account's forms (``failed``: which form,
    "add" or "<form>-<id>", the errors and typed values belong to)."""
    rows = db.session.execute(select(Moderator).order_by(Moderator.email)).scalars().all()
    return render_template(
        "dashboard/moderators.html",
        moderators=rows,
        all_sites=db.session.execute(select(Site).order_by(Site.name, Site.id)).scalars().all(),
        errors=errors or {},
        form=form if form is not None else MultiDict(),
        failed=failed,
        shared_names=_shared_names(),
        min_password=auth.MIN_PASSWORD_LENGTH,
    ), (400 if errors else 200)


@bp.route("/moderators", methods=["GET", "POST"])
@admin_required
def moderators() -> Any:
    """List moderator accounts; add one (as `flask moderator add` does)."""
    if request.method != "POST":
        return _moderators_page()
    account = _account()
    form = request.form
    errors: dict[str, str] = {}
    email = ""
    try:
        email = auth.account_email(form.get("email") or "")
    except InvalidField as error:
        errors["email"] = f"is not an email address the sign-in form accepts: it {error.message}"
    is_admin, chosen = _access_form(form, errors)
    password = _password_field(form, "password", errors)
    # Unlike the CLI, adding never resets an existing account: each change has its own form.
    if email and auth.find_account(email) is not None:
        errors["email"] = "already has an account: change it in the list below"
    if not errors:
        moderator = Moderator(email=email, password_hash="", is_admin=is_admin, sites=chosen)
        auth.set_password(moderator, password)
        db.session.add(moderator)
        _audit_account(account,
                       f"added {auth.describe(email, is_admin, chosen, auth.site_label)}")
        try:
            db.session.commit()
        except IntegrityError:  # added by someone else since the check above
            db.session.rollback()
            errors["email"] = "already has an account: change it in the list below"
        else:
            flash(f"Added {auth.describe(email, is_admin, chosen, _site_namer())}: they can "
                  "sign in now.", "ok")
            return redirect(url_for(".moderators"))
    return _moderators_page(errors, form, "add")


@bp.post(f"/moderators/<{ID}:moderator_id>/access")
@admin_required
def moderator_access(moderator_id: int) -> Any:
    """Change an account's admin flag and sites."""
    account = _account()
    target = _target(moderator_id)
    errors: dict[str, str] = {}
    is_admin, chosen = _access_form(request.form, errors)
    if target.is_admin and not is_admin:
        if target.id == account.id:
            errors["admin"] = ("You cannot remove your own admin flag (another admin can): "
                               "someone must always be able to manage accounts.")
        else:
            _keeps_an_admin(account, target, errors, "admin")
    if errors:
        return _moderators_page(errors, request.form, f"access-{target.id}")
    was, before = _access_ids(target), _access_of(target)
    target.is_admin, target.sites = is_admin, chosen
    now, after = _access_ids(target), _access_of(target)
    changed = [k for k in was if was[k] != now[k]]
    if not changed:
        flash(f"Nothing changed for {target.email}.", "ok")
        return _to_moderators()
    _audit_account(account, f"changed {' and '.join(changed)} of {target.email}",
                   {k: before[k] for k in changed}, {k: after[k] for k in changed})
    db.session.commit()
    named = _site_namer()
    scope = "an admin (every site)" if is_admin else "a moderator of " + ", ".join(
        named(s) for s in chosen)
    flash(f"{target.email} is now {scope}.", "ok")
    return _to_moderators()


@bp.post(f"/moderators/<{ID}:moderator_id>/password")
@admin_required
def moderator_password(moderator_id: int) -> Any:
    """Set a new password for another account; its open sessions end."""
    account = _account()
    target = _target(moderator_id)
    errors: dict[str, str] = {}
    password = _password_field(request.form, "password", errors)
    if target.id == account.id:
        # Your own password asks for the current one (a session left open is not enough).
        errors["password"] = ("is your own: change it on your Account page, which asks for "
                              "the current one")
    if errors:
        return _moderators_page(errors, request.form, f"password-{target.id}")
    auth.set_password(target, password)
    _audit_account(account, f"set a new password for {target.email} (its sessions ended)")
    db.session.commit()
    flash(f"New password set for {target.email}: their open sessions have ended.", "ok")
    return _to_moderators()


@bp.post(f"/moderators/<{ID}:moderator_id>/disable")
@admin_required
def moderator_disable(moderator_id: int) -> Any:
    """Disable an account: it cannot sign in and its open sessions end now."""
    account = _account()
    target = _target(moderator_id)
    errors: dict[str, str] = {}
    if target.id == account.id:
        errors["status"] = ("You cannot disable your own account (another admin can): "
                            "someone must always be able to manage accounts.")
    else:
        _keeps_an_admin(account, target, errors, "status")
    if errors:
        return _moderators_page(errors, request.form, f"status-{target.id}")
    if not auth.disable(target):
        flash(f"{target.email} was already disabled: nothing changed.", "ok")
        return _to_moderators()
    _audit_account(account, f"disabled {target.email} (its sessions ended)")
    db.session.commit()
    flash(f"Disabled {target.email}: it can no longer sign in and its open sessions have "
          "ended.", "ok")
    return _to_moderators()


@bp.post(f"/moderators/<{ID}:moderator_id>/enable")
@admin_required
def moderator_enable(moderator_id: int) -> Any:
    """Let a disabled account sign in again (its old sessions stay ended)."""
    account = _account()
    target = _target(moderator_id)
    if not auth.enable(target):
        flash(f"{target.email} was already active: nothing changed.", "ok")
        return _to_moderators()
    _audit_account(account, f"enabled {target.email}")
    db.session.commit()
    flash(f"Enabled {target.email}: it may sign in again.", "ok")
    return _to_moderators()


@bp.get(f"/moderators/<{ID}:moderator_id>/<any(access, password, disable, enable):form>")
@admin_required
def moderator_card(moderator_id: int, form: str) -> Any:
    """Lead a GET of an account form's URL (typed, bookmarked, opened from the history) to
    the account's card, instead of a 405."""
    return redirect(url_for(".moderators", _anchor=f"m-{_target(moderator_id).id}"))


# -- the signed-in moderator's own account --------------------------------------------------


@bp.route("/account", methods=["GET", "POST"])
@login_required
# Wrong current passwords count against the account like failed sign-ins do (a session left
# open in a browser must not become a way to guess the password without limit).
@limits.limiter.limit(
    lambda: current_app.config["LIMIT_LOGIN_ACCOUNT"],
    key_func=auth.own_account_key,
    methods=["POST"],
    scope="own-password",
    override_defaults=False,
    deduct_when=auth.wrong_current_password,
)
def account_page() -> Any:
    """Change your own password; this browser stays signed in, every other session ends."""
    account = _account()
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = request.form
        me = _target(account.id)
        if not auth.password_matches(me, form.get("current_password") or ""):
            errors["current_password"] = "is not your current password"
            auth.note_wrong_current_password()
        new = _password_field(form, "new_password", errors)
        if "new_password" not in errors and form.get("new_password_again") != new:
            errors["new_password_again"] = "does not match the new password: type it again"
        if not errors:
            auth.set_password(me, new)
            _audit_account(account, "changed their own password (their other sessions ended)")
            db.session.commit()
            # The new password's mark ends every session of the account, this one included;
            # a fresh session with the new mark keeps this browser signed in. It keeps the
            # CSRF secret, so forms open in this browser's other tabs still send.
            auth.login(me, keep_csrf=True)
            flash("Password changed. Every other browser signed in to this account must sign "
                  "in again.", "ok")
            return redirect(url_for(".account_page"))
    return render_template("dashboard/account.html", errors=errors,
                           sites=auth.visible_sites(account),
                           min_password=auth.MIN_PASSWORD_LENGTH), (400 if errors else 200)
