"""The administrators' webhook page in the dashboard: every site's webhooks and delivery log."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from sqlalchemy import func, select

from . import auth, dashboard, webhooks
from .auth import admin_required
from .db import Site, Webhook, WebhookDelivery, db

bp = Blueprint("webhooks_admin", __name__, url_prefix="/dashboard/webhooks")
bp.context_processor(dashboard.layout)

STATES = ("pending", "delivered", "failed")


@bp.get("/")
@admin_required
def index() -> Any:
    """List every webhook with its delivery counts, and the newest deliveries."""
    state = request.args.get("state") or None
    if state is not None and state not in STATES:
        abort(400, "state must be pending, delivered or failed")
    hooks = db.session.execute(
        select(Webhook, Site).join(Site, Site.id == Webhook.site_id).order_by(Site.name, Webhook.id)
    ).all()
    counts: dict[tuple[int, str], int] = {
        (hook_id, st): n for hook_id, st, n in db.session.execute(
            select(WebhookDelivery.webhook_id, WebhookDelivery.state, func.count())
            .group_by(WebhookDelivery.webhook_id, WebhookDelivery.state)
        ).all()
    }
    deliveries = webhooks.recent_deliveries(None, state)
    return render_template("dashboard/webhooks.html", hooks=hooks, counts=counts,
                           deliveries=deliveries, state=state or "", states=STATES)


@bp.post(f"/deliveries/<{dashboard.ID}:delivery_id>/retry")
@admin_required
def retry(delivery_id: int) -> Any:
    """Queue a failed delivery again."""
    auth.protect()
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        abort(404, "No such delivery.")
    if delivery.state != "failed":
        abort(409, "Only failed deliveries can be retried.")
    webhooks.retry(delivery)
    db.session.commit()
    return redirect(url_for("webhooks_admin.index", state="pending"))
