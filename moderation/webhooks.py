"""Webhooks: queue signed events in the database and deliver them outside the request."""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import io
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

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
# Seconds a worker holds a claimed delivery before another worker may take it again. A worker
# starts an attempt only while its lease has room for the whole attempt (at most
# WEBHOOK_TIMEOUT_SECONDS, from resolving the host to the answer's headers) plus
# CLAIM_MARGIN_SECONDS, gives back what it has no time for, and records an outcome only while the
# row still holds its lease: no other worker takes a delivery over while an attempt runs.
CLAIM_SECONDS = 120
CLAIM_MARGIN_SECONDS = 10
# Seconds the background thread sleeps when nothing is due.
POLL_SECONDS = 2.0
BATCH = 20

webhooks_cli = AppGroup("webhooks", help="Deliver queued webhook events and show the log.")


# -- signing and targets ----------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the signature header value: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">.

    The timestamp is the X-Moderation-Timestamp header sent with the same attempt, so a receiver
    that checks its age rejects an old request replayed with a fresh timestamp.
    """
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def new_secret() -> str:
    """Return a fresh signing secret for a webhook."""
    return "whsec_" + secrets.token_urlsafe(24)


# Seconds check_url waits for a new webhook's host name to resolve.
RESOLVE_SECONDS = 5.0
# Seconds a connection to one of a host's addresses may take at least, when the attempt has them.
CONNECT_MIN_SECONDS = 1.0
# The longest wait between two attempts of a delivery, however many attempts are allowed.
MAX_BACKOFF_SECONDS = 86400.0
# What a request line cannot carry as such: spaces, control and non-ASCII characters.
_UNSENDABLE = re.compile(r"[^\x21-\x7e]")

Address = tuple[int, tuple[Any, ...]]  # (address family, socket address) to connect to


class _Deadline:
    """The end of one delivery attempt: each network step may use only the time that is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Return the seconds left, or raise TimeoutError once none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out: the attempt took more than {self.seconds:g} s")
        return left


def _resolve(host: str, port: int, deadline: _Deadline) -> list[Address]:
    """Return the addresses host resolves to, in the resolver's order, before the deadline."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(family, sockaddr) for family, _, _, _, sockaddr in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)]
    # getaddrinfo has no timeout of its own: wait for it in a thread, only as long as allowed.
    found: list[Any] = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as error:  # noqa: BLE001 - handed to the caller below
            found.append(error)

    thread = threading.Thread(target=lookup, daemon=True, name="webhook-resolve")
    thread.start()
    thread.join(deadline.left())
    if not found:
        raise TimeoutError(f"timed out resolving {host}")
    if isinstance(found[0], BaseException):
        raise found[0]
    return [(family, sockaddr) for family, _, _, _, sockaddr in found[0]]


# IPv6 ranges that carry an IPv4 address but that ip.is_global may call global: the IPv4-compatible
# ::/96 and Teredo 2001::/32 are always refused, NAT64 64:ff9b::/96 and 6to4 2002::/16 only
# unless the IPv4 address inside is public, the local-use NAT64 64:ff9b:1::/48 always.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _is_public(address: Address) -> bool:
    """Return whether a resolved address is public, and so is any IPv4 address it carries."""
    ip = ipaddress.ip_address(str(address[1][0]).split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _IPV4_COMPATIBLE or ip in _TEREDO or ip in _NAT64_LOCAL:
            return False
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF).is_global
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None and not embedded.is_global:
            return False
    return ip.is_global


def _public_host(host: str) -> bool:
    try:
        addresses = _resolve(host, 0, _Deadline(RESOLVE_SECONDS))
    except (OSError, ValueError):  # ValueError: UnicodeError for a label IDNA cannot encode
        return False
    return bool(addresses) and all(_is_public(a) for a in addresses)


def check_url(url: object, allow_private: bool) -> str:
    """Return a webhook URL if it is http(s) with a host (public unless allowed), else raise."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidField("url", "is required: an http(s) URL that receives POST requests")
    url = url.strip()
    if _UNSENDABLE.search(url):
        raise InvalidField("url", "must not contain spaces, control or non-ASCII characters "
                                  "(percent-encode them; use the punycode form of the host)")
    try:
        parts = urllib.parse.urlsplit(url)  # raises on a malformed [IPv6] host
        port = parts.port  # raises on a port that is not a number from 0 to 65535
    except ValueError:
        raise InvalidField("url", "is not a valid URL (check the host and the port)") from None
    if port == 0:
        raise InvalidField("url", "has an invalid port: 0")
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


def _claim(limit: int) -> tuple[list[int], datetime]:
    """Take up to limit due deliveries by pushing their next attempt to the lease's end.

    Return the ids and the lease: the rows' next_attempt_at for as long as they are this
    worker's (whole seconds, so that every database compares it exactly).
    """
    now = utcnow()
    lease = (now + timedelta(seconds=CLAIM_SECONDS)).replace(microsecond=0)
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
        return ids, lease
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
    return claimed, lease


def _leased(lease: datetime) -> Any:
    """Return the condition that a delivery is pending and still holds this worker's lease."""
    return (WebhookDelivery.state == "pending") & (WebhookDelivery.next_attempt_at == lease)


def _release(ids: list[int], lease: datetime) -> None:
    """Make claimed deliveries this pass has no time left for due again for any worker."""
    db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id.in_(ids), _leased(lease))
        .values(next_attempt_at=utcnow())
    )
    db.session.commit()


def _reason(error: BaseException) -> str:
    """Return why an attempt failed, on one short line."""
    text = " ".join(str(error).split())
    return (f"{type(error).__name__}: {text}" if text else type(error).__name__)[:300]


class _DeadlineReader(io.RawIOBase):
    """A socket's incoming bytes, each read allowed only what is left of the attempt's time."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        super().__init__()
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._deadline.left())
        return self._sock.recv_into(buffer)


class _DeadlineResponse(http.client.HTTPResponse):
    """An answer whose status line and headers must all arrive before the attempt's deadline."""

    def __init__(self, sock: socket.socket, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # the plain reader made above: each read would get a fresh timeout
        self.fp = io.BufferedReader(_DeadlineReader(sock, deadline))


def _tls_context() -> ssl.SSLContext:
    """Return the TLS settings for https receivers: the system's CAs, host names checked."""
    return ssl.create_default_context()


class _PinnedConnection(http.client.HTTPConnection):
    """A connection to addresses checked beforehand, never resolved again, for the URL's host.

    The Host header, and with TLS the SNI name and the certificate check, use the host name;
    every step (connecting, the TLS handshake, sending, reading the answer) ends by the deadline.
    """

    def __init__(self, host: str, port: int, addresses: list[Address], deadline: _Deadline,
                 tls: bool) -> None:
        self.default_port = 443 if tls else 80  # the Host header leaves out a default port
        super().__init__(host, port, timeout=deadline.seconds)
        self._addresses, self._deadline, self._tls = addresses, deadline, tls
        self.response_class = cast(type[http.client.HTTPResponse],
                                   functools.partial(_DeadlineResponse, deadline=deadline))

    def connect(self) -> None:
        """Connect to the first address that answers, in order, before the deadline.

        Each address may use only its share of the time left (the time left divided by the
        addresses still to try, at least CONNECT_MIN_SECONDS), so an address that silently drops
        the connection (say, an AAAA record where IPv6 is broken) leaves time for the next one.
        Once connected, the TLS handshake may use all the time that is left.
        """
        error: OSError = OSError(f"{self.host} has no address")
        for index, (family, sockaddr) in enumerate(self._addresses):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                left = self._deadline.left()
                share = left / (len(self._addresses) - index)
                sock.settimeout(min(left, max(share, CONNECT_MIN_SECONDS)))
                sock.connect(sockaddr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._tls:
                    sock.settimeout(self._deadline.left())  # the whole handshake, not each step
                    sock = _tls_context().wrap_socket(sock, server_hostname=self.host)
            except OSError as failed:  # ssl.SSLError and TimeoutError are OSErrors too
                sock.close()
                error = failed
                continue
            except BaseException:
                sock.close()
                raise
            self.sock = sock
            return
        raise error

    def send(self, data: Any) -> None:
        if self.sock is None:
            self.connect()
        if not isinstance(data, bytes | bytearray):
            self.sock.settimeout(self._deadline.left())
            super().send(data)
            return
        view = memoryview(data)
        # In pieces: a TLS socket's sendall restarts its timeout for every record it sends.
        for start in range(0, len(view), 16384):
            self.sock.settimeout(self._deadline.left())
            self.sock.sendall(view[start:start + 16384])


def post(url: str, body: bytes, headers: dict[str, str], timeout: float,
         allow_private: bool = False) -> tuple[int | None, str]:
    """POST body to url within timeout seconds in all; return (HTTP status or None, error text).

    The host is resolved once; unless allow_private, every address must be public, and the
    request goes to those checked addresses, so a DNS answer that changes in between (DNS
    rebinding) cannot point it elsewhere. Redirects are not followed. Never raises: any failure
    is returned as its error text, with the status None when no answer came.
    """
    deadline = _Deadline(timeout)
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None, "URL is not an http(s) URL with a host"
        tls = parts.scheme == "https"
        if parts.port == 0:  # stored before check_url refused it; never the default port
            return None, "URL has an invalid port: 0"
        host = parts.hostname
        port = parts.port if parts.port is not None else (443 if tls else 80)
        addresses = _resolve(host, port, deadline)
        if not allow_private and not all(_is_public(a) for a in addresses):
            return None, "target does not resolve to a public address"
        connection = _PinnedConnection(host, port, addresses, deadline, tls)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            status, reason = response.status, response.reason
        finally:
            connection.close()
    except Exception as error:  # noqa: BLE001 - whatever goes wrong, this attempt failed
        return None, _reason(error)
    if 200 <= status < 300:
        return status, ""
    return status, f"HTTP {status} {reason}".strip()[:300]


@dataclass(frozen=True)
class _Job:
    """What one attempt needs from a delivery and its webhook, read before the attempt starts."""

    id: int
    event: str
    payload: dict[str, Any]
    attempts: int
    url: str
    secret: str
    active: bool

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> _Job:
        """Return the plain values of delivery and its webhook (reads the webhook's row)."""
        hook = delivery.webhook
        return cls(id=delivery.id, event=delivery.event, payload=dict(delivery.payload),
                   attempts=delivery.attempts, url=hook.url, secret=hook.secret,
                   active=bool(hook.active))


def attempt(job: _Job, config: dict[str, Any] | Any,
            timeout: float | None = None) -> dict[str, Any]:
    """Send one delivery once; return the column values that record its outcome.

    Nothing is changed: deliver_due writes the values while the row is still its own. Any
    failure is a failed attempt (retried after the backoff, failed after the last attempt).
    timeout is the attempt's total time, WEBHOOK_TIMEOUT_SECONDS unless given; the database
    is not used at all.
    """
    status, error = None, "webhook is inactive"
    if job.active:
        try:
            body = json.dumps({"id": job.id, **job.payload}, separators=(",", ":"),
                              ensure_ascii=False).encode()
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "moderation-webhooks/1",
                "X-Moderation-Event": job.event,
                "X-Moderation-Delivery": str(job.id),
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(job.secret, timestamp, body),
            }
            status, error = post(
                job.url, body, headers,
                float(config["WEBHOOK_TIMEOUT_SECONDS"]) if timeout is None else timeout,
                bool(config.get("WEBHOOK_ALLOW_PRIVATE_TARGETS")),
            )
        except Exception as failed:  # noqa: BLE001 - a failed attempt, not a failed batch
            status, error = None, _reason(failed)
    return _outcome(job.attempts + 1, job.active, status, error, config)


def _outcome(attempts: int, active: bool, status: int | None, error: str,
             config: dict[str, Any] | Any) -> dict[str, Any]:
    """Return the column values after attempt number attempts answered status (or error)."""
    now = utcnow()
    values: dict[str, Any] = {"attempts": attempts, "last_status": status}
    if status is not None and 200 <= status < 300:
        return {**values, "state": "delivered", "delivered_at": now, "last_error": ""}
    values["last_error"] = error or f"HTTP {status}"
    if attempts >= int(config["WEBHOOK_MAX_ATTEMPTS"]) or not active:
        return {**values, "state": "failed"}
    # Capped (the exponent too), so no number of attempts makes the next time overflow.
    backoff = min(float(config["WEBHOOK_BACKOFF_SECONDS"]) * 2.0 ** min(attempts - 1, 64),
                  MAX_BACKOFF_SECONDS)
    return {**values, "next_attempt_at": now + timedelta(seconds=backoff)}


def _deliver_one(delivery_id: int, lease: datetime, timeout: float) -> None:
    """Attempt one claimed delivery and record the outcome if the row is still this worker's.

    No transaction is open during the attempt: what it needs is read first, that transaction
    ends, and the outcome is written in a fresh one, so a server that drops a connection left
    idle in a transaction (idle_in_transaction_session_timeout) cannot lose the outcome.
    """
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.state != "pending":
        db.session.rollback()
        return
    attempts = delivery.attempts
    try:
        job = _Job.of(delivery)
        db.session.rollback()  # nothing was changed: end the read before the network wait
        values = attempt(job, current_app.config, timeout)
    except Exception as error:  # noqa: BLE001 - e.g. the webhook row could not be read
        db.session.rollback()
        current_app.logger.exception("webhook delivery %s could not be attempted", delivery_id)
        values = _outcome(attempts + 1, True, None, _reason(error), current_app.config)
    recorded = db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, _leased(lease))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount == 1  # type: ignore[attr-defined]
    db.session.commit()
    if not recorded:
        current_app.logger.warning(
            "webhook delivery %s: another worker took it over or it was deleted during the "
            "attempt; this outcome is not recorded", delivery_id)
        return
    current_app.logger.info(
        "webhook delivery %s attempt %s: %s %s", delivery_id, values["attempts"],
        values.get("state", "pending"), values["last_status"] or values["last_error"],
    )


def deliver_due(limit: int = BATCH) -> int:
    """Claim due deliveries, attempt each once and record the outcome; return how many ran.

    One delivery's failure, whatever it is, is recorded on that delivery; the others still go.
    """
    started = time.monotonic()
    ids, lease = _claim(limit)
    # An attempt (at most budget seconds) starts only if it ends a margin before the lease.
    budget = min(float(current_app.config["WEBHOOK_TIMEOUT_SECONDS"]),
                 CLAIM_SECONDS - 2 * CLAIM_MARGIN_SECONDS)
    ran = 0
    for index, delivery_id in enumerate(ids):
        if time.monotonic() + budget > started + CLAIM_SECONDS - CLAIM_MARGIN_SECONDS:
            _release(ids[index:], lease)  # the lease could end during the attempt
            break
        ran += 1
        try:
            _deliver_one(delivery_id, lease, budget)
        except Exception:  # noqa: BLE001 - the database failed: the lease runs out, it is retried
            db.session.rollback()
            current_app.logger.exception("webhook delivery %s failed to record", delivery_id)
    return ran


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
        if once:
            click.echo(f"Attempted {deliver_due()} deliveries")
            return
        try:
            ran = deliver_due()
        except Exception:  # noqa: BLE001 - keep delivering after a database hiccup
            db.session.rollback()
            current_app.logger.exception("webhook delivery pass failed")
            ran = 0
        if not ran:
            time.sleep(POLL_SECONDS)


@webhooks_cli.command("log")
@click.option("--site", "site_key", help="Only this site's webhooks.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="Most recent deliveries to show.")
def log_command(site_key: str | None, limit: int) -> None:
    """Show recent webhook deliveries with their state, attempts and last outcome."""
    query = (select(WebhookDelivery, Webhook).join(Webhook)
             .order_by(WebhookDelivery.id.desc()).limit(limit))
    if site_key is not None:
        site_id = db.session.execute(select(Site.id).where(Site.key == site_key)).scalar()
        if site_id is None:
            raise click.BadParameter(f"no site with key {site_key!r} (see `site list`)",
                                     param_hint="--site")
        query = query.where(Webhook.site_id == site_id)
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
