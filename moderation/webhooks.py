"""Webhooks: queue signed events in the database and deliver them outside the request."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select, update

from . import comments, sitecache
from .db import Comment, ModerationEvent, Site, Webhook, WebhookDelivery, db, utcnow
from .exceptions import InvalidField
from .policy import Decision

EVENTS = ("comment.created", "comment.held", "comment.moderated")
SIGNATURE_HEADER = "X-Moderation-Signature"
TIMESTAMP_HEADER = "X-Moderation-Timestamp"
# Seconds a worker holds a claimed delivery before another worker may take it again.
CLAIM_SECONDS = 120
# Seconds the background thread sleeps when nothing is due.
POLL_SECONDS = 2.0
BATCH = 20

webhooks_cli = AppGroup("webhooks", help="Deliver queued webhook events and show the log.")


# -- signing and targets ----------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """Return the signature header value: sha256=<hex HMAC-SHA256 of the raw body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def new_secret() -> str:
    """Return a fresh signing secret for a webhook."""
    return "whsec_" + secrets.token_urlsafe(24)


def _public_host(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not ip.is_global:
            return False
    return True


def check_url(url: object, allow_private: bool) -> str:
    """Return a webhook URL if it is http(s) with a host (public unless allowed), else raise."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidField("url", "is required: an http(s) URL that receives POST requests")
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 1000:
        raise InvalidField("url", "must be an http(s) URL with a host, at most 1000 characters")
    if not allow_private and not _public_host(parts.hostname):
        raise InvalidField("url", "must resolve to a public address")
    return url


def check_events(events: object) -> list[str]:
    """Return the subscribed events, or raise naming the field."""
    if not isinstance(events, list) or not events or not all(e in EVENTS for e in events):
        raise InvalidField("events", "must be a non-empty list of " + ", ".join(EVENTS))
    return list(dict.fromkeys(events))


# -- queueing ---------------------------------------------------------------------------------


def comment_payload(comment: Comment) -> dict[str, Any]:
    """Return what a webhook receiver learns about a comment (never e-mail or address)."""
    return {
        "id": comment.id,
        "uri": comment.thread.uri,
        "parent": comment.parent_id,
        "status": comment.status,
        "author": comment.author,
        "website": comment.website,
        "text": comment.text,
        "html": comment.html,
        "scores": dict(comment.scores or {}),
        "reasons": list(comment.reasons or []),
        "created": comments.iso(comment.created_at),
        "edited": comments.iso(comment.edited_at),
    }


def enqueue(site_id: int, event: str, data: Callable[[], dict[str, Any]]) -> int:
    """Queue one delivery per active webhook of the site subscribed to event; return the count."""
    if site_id not in sitecache.cache().hooked_sites():
        return 0
    hooks = db.session.execute(
        select(Webhook).where(Webhook.site_id == site_id, Webhook.active.is_(True))
    ).scalars().all()
    if not hooks:
        return 0
    site_key = db.session.execute(select(Site.key).where(Site.id == site_id)).scalar_one()
    body = data()
    queued = 0
    for hook in hooks:
        if event not in (hook.events or EVENTS):
            continue
        payload = {"event": event, "site": site_key, "created": comments.iso(utcnow()),
                   **body}
        db.session.add(WebhookDelivery(webhook_id=hook.id, event=event, payload=payload))
        queued += 1
    if queued:
        db.session.commit()
        _wake(current_app._get_current_object())  # type: ignore[attr-defined]
    return queued


def _safely(site_id: int, event: str, data: Callable[[], dict[str, Any]]) -> None:
    # The comment is already committed: a queueing failure is logged, never the reader's error.
    try:
        enqueue(site_id, event, data)
    except Exception:  # noqa: BLE001
        db.session.rollback()
        current_app.logger.exception("could not queue webhook event %s", event)


def on_submitted(comment: Comment, decision: Decision, **_: Any) -> None:
    """Queue comment.held or comment.created after a comment is stored."""
    event = "comment.held" if decision.status == "pending" else "comment.created"
    _safely(comment.site_id, event, lambda: {
        "comment": comment_payload(comment),
        "decision": {"action": str(decision.action), "reasons": list(decision.reasons)},
    })


def on_moderated(comment: Comment, event: ModerationEvent, **_: Any) -> None:
    """Queue comment.moderated after a moderator or API key changes a comment's status."""
    _safely(comment.site_id, "comment.moderated", lambda: {
        "comment": comment_payload(comment),
        "moderation": {"action": event.action, "actor": event.actor, "reason": event.reason,
                       "from": event.from_status, "to": event.to_status},
    })


# -- delivering -------------------------------------------------------------------------------


def _claim(limit: int) -> list[int]:
    """Take up to limit due deliveries by pushing their next attempt past the claim lease."""
    now = utcnow()
    lease = now + timedelta(seconds=CLAIM_SECONDS)
    due = (
        select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        rows = db.session.execute(due.with_for_update(skip_locked=True)).all()
        ids = [row.id for row in rows]
        if ids:
            db.session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                .values(next_attempt_at=lease)
            )
        db.session.commit()
        return ids
    claimed = []
    for row in db.session.execute(due).all():
        # Another worker that read the same row changes next_attempt_at first and wins.
        result = db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == row.id, WebhookDelivery.state == "pending",
                   WebhookDelivery.next_attempt_at == row.next_attempt_at)
            .values(next_attempt_at=lease)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(row.id)
    db.session.commit()
    return claimed


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """POST body to url; return (HTTP status or None, error text or "")."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(req, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, f"HTTP {error.code} {error.reason}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return None, f"{type(error).__name__}: {reason}"[:500]


def attempt(delivery: WebhookDelivery, config: dict[str, Any] | Any) -> None:
    """Send one delivery once and record the outcome and the next attempt (caller commits)."""
    hook = delivery.webhook
    body = json.dumps({"id": delivery.id, **delivery.payload}, separators=(",", ":"),
                      ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "moderation-webhooks/1",
        "X-Moderation-Event": delivery.event,
        "X-Moderation-Delivery": str(delivery.id),
        TIMESTAMP_HEADER: str(int(time.time())),
        SIGNATURE_HEADER: sign(hook.secret, body),
    }
    status, error = None, "webhook is inactive"
    allow_private = bool(config.get("WEBHOOK_ALLOW_PRIVATE_TARGETS"))
    if hook.active:
        host = urllib.parse.urlsplit(hook.url).hostname or ""
        if not allow_private and not _public_host(host):
            error = "target does not resolve to a public address"
        else:
            status, error = post(hook.url, body, headers,
                                 float(config["WEBHOOK_TIMEOUT_SECONDS"]))
    now = utcnow()
    delivery.attempts += 1
    delivery.last_status = status
    if status is not None and 200 <= status < 300:
        delivery.state, delivery.delivered_at, delivery.last_error = "delivered", now, ""
        return
    delivery.last_error = error or f"HTTP {status}"
    if delivery.attempts >= int(config["WEBHOOK_MAX_ATTEMPTS"]) or not hook.active:
        delivery.state = "failed"
        return
    backoff = float(config["WEBHOOK_BACKOFF_SECONDS"]) * 2 ** (delivery.attempts - 1)
    delivery.next_attempt_at = now + timedelta(seconds=backoff)


def deliver_due(limit: int = BATCH) -> int:
    """Claim due deliveries, attempt each once and record the outcome; return how many ran."""
    ids = _claim(limit)
    for delivery_id in ids:
        delivery = db.session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.state != "pending":
            continue
        attempt(delivery, current_app.config)
        current_app.logger.info(
            "webhook delivery %s attempt %s: %s %s", delivery.id, delivery.attempts,
            delivery.state, delivery.last_status or delivery.last_error,
        )
        db.session.commit()
    return len(ids)


# -- the background worker --------------------------------------------------------------------

_lock = threading.Lock()


def _state(app: Flask) -> dict[str, Any]:
    return app.extensions.setdefault("webhooks", {})


def _wake(app: Flask) -> None:
    event = _state(app).get("wake")
    if event is not None:
        event.set()


def _run(app: Flask, wake: threading.Event, stop: threading.Event) -> None:
    while not stop.is_set():
        ran = 0
        try:
            with app.app_context():
                ran = deliver_due()
        except Exception:  # noqa: BLE001 - keep delivering after a database hiccup
            app.logger.exception("webhook delivery pass failed")
        finally:
            with app.app_context():
                db.session.remove()
        if not ran:
            wake.wait(POLL_SECONDS)
            wake.clear()


def start_worker(app: Flask) -> threading.Thread | None:
    """Start this process's delivery thread once (again after a fork); return it."""
    state = _state(app)
    with _lock:
        thread = state.get("thread")
        if thread is not None and thread.is_alive() and state.get("pid") == os.getpid():
            return thread
        wake, stop = threading.Event(), threading.Event()
        thread = threading.Thread(target=_run, args=(app, wake, stop), daemon=True,
                                  name="webhook-delivery")
        state.update(thread=thread, wake=wake, stop=stop, pid=os.getpid())
        thread.start()
        return thread


def stop_worker(app: Flask, timeout: float = 5.0) -> None:
    """Stop this process's delivery thread, if it runs."""
    state = _state(app)
    stop, wake, thread = state.get("stop"), state.get("wake"), state.get("thread")
    if stop is None or wake is None or thread is None:
        return
    stop.set()
    wake.set()
    thread.join(timeout)
    state.clear()


# -- CLI --------------------------------------------------------------------------------------


@webhooks_cli.command("deliver")
@click.option("--once", is_flag=True, help="Make one pass over due deliveries, then exit.")
def deliver_command(once: bool) -> None:
    """Deliver due webhook events: one pass with --once, else until interrupted."""
    while True:
        ran = deliver_due()
        if once:
            click.echo(f"Attempted {ran} deliveries")
            return
        if not ran:
            time.sleep(POLL_SECONDS)


@webhooks_cli.command("log")
@click.option("--site", "site_key", help="Only this site's webhooks.")
@click.option("--limit", default=50, show_default=True, help="Most recent deliveries to show.")
def log_command(site_key: str | None, limit: int) -> None:
    """Show recent webhook deliveries with their state, attempts and last outcome."""
    query = (select(WebhookDelivery, Webhook).join(Webhook)
             .order_by(WebhookDelivery.id.desc()).limit(limit))
    if site_key:
        query = query.join(Site, Site.id == Webhook.site_id).where(Site.key == site_key)
    for delivery, hook in db.session.execute(query).all():
        outcome = delivery.last_status or delivery.last_error or "-"
        click.echo(f"{delivery.id:>6}  {delivery.event:<18} {delivery.state:<9} "
                   f"attempts={delivery.attempts}  {outcome}  {hook.url}")


# -- wiring -----------------------------------------------------------------------------------

_connected = False


def init_app(app: Flask) -> None:
    """Listen for comment events, add the CLI and start the worker with the first request."""
    global _connected
    if not _connected:
        # The signals are process-wide; the handlers act on whichever app is current.
        comments.comment_submitted.connect(on_submitted, weak=False)
        comments.comment_moderated.connect(on_moderated, weak=False)
        _connected = True
    app.cli.add_command(webhooks_cli)
    if app.config.get("WEBHOOKS_WORKER"):

        def ensure_worker() -> None:
            start_worker(app)

        app.before_request(ensure_worker)


def retry(delivery: WebhookDelivery) -> None:
    """Queue a failed delivery again with a fresh set of attempts (caller commits)."""
    delivery.state, delivery.attempts, delivery.next_attempt_at = "pending", 0, utcnow()


def recent_deliveries(
    site_ids: list[int] | None, state: str | None, limit: int = 100
) -> list[tuple[WebhookDelivery, Webhook, Site]]:
    """Return the newest deliveries with their webhook and site, optionally filtered."""
    query = (select(WebhookDelivery, Webhook, Site)
             .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
             .join(Site, Site.id == Webhook.site_id)
             .order_by(WebhookDelivery.id.desc()).limit(limit))
    if site_ids is not None:
        query = query.where(Site.id.in_(site_ids))
    if state:
        query = query.where(WebhookDelivery.state == state)
    return [(d, h, s) for d, h, s in db.session.execute(query).all()]
