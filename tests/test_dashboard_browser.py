"""The moderator dashboard in real Chromium: sign in, moderate, ban, audit, stats, screenshots."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import select
from werkzeug.serving import make_server

from moderation.db import (
    Comment,
    ModerationEvent,
    Moderator,
    Site,
    Status,
    Thread,
    db,
    utcnow,
)
from tests import fakes
from tests.conftest import SCREENSHOTS, make_app
from tests.test_dashboard import PASSWORD, ExplainingClassifier, add_moderator

pytestmark = pytest.mark.browser

SHOTS = SCREENSHOTS
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@dataclass
class Live:
    """A running server with one site, its moderator and what the browser reported."""

    app: Flask
    port: int
    site: Site
    console: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self, browser: Any, path: str = "/dashboard/", sign_in: bool = True,
             **context: Any) -> Any:
        """Open a page in a fresh context, signing in first."""
        ctx = browser.new_context(viewport=context.pop("viewport", DESKTOP), **context)
        page = ctx.new_page()
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: d.accept())
        if sign_in:
            page.goto(self.origin + "/dashboard/login")
            page.get_by_label("Email").fill("mod@example.org")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/dashboard/queue/pending")
        page.goto(self.origin + path)
        return page

    def post(self, text: str, **fields: Any) -> Any:
        """Post a comment through the public API, as a reader would."""
        body = {"site": self.site.key, "uri": "/posts/one", "text": text, **fields}
        return self.app.test_client().post("/api/v1/comments", json=body,
                                           environ_base={"REMOTE_ADDR": "198.51.100.7"})

    def status(self, comment_id: int) -> str:
        with self.app.app_context():
            comment = db.session.get(Comment, comment_id)
            assert comment is not None
            return comment.status


def seed_history(app: Flask, site: Site, days: int = 21) -> None:
    """Store a few weeks of comments, so the charts have something to draw."""
    rng = random.Random(5)
    now = utcnow()
    with app.app_context():
        thread = Thread(site_id=site.id, uri="/posts/archive", title="Archive post")
        db.session.add(thread)
        db.session.flush()
        for day in range(days, 0, -1):
            for _ in range(rng.randint(4, 14)):
                created = now - timedelta(days=day, hours=rng.uniform(0, 20))
                spam, toxic = rng.betavariate(0.6, 3), rng.betavariate(0.7, 3)
                status = (Status.SPAM if spam > 0.9 else Status.REJECTED if toxic > 0.9
                          else Status.PUBLISHED)
                held = status == Status.PUBLISHED and (spam > 0.5 or toxic > 0.5)
                decided = created + timedelta(hours=rng.uniform(0.2, 9)) if held else created
                db.session.add(Comment(
                    site_id=site.id, thread_id=thread.id, author=f"Reader {rng.randint(1, 40)}",
                    text="An older comment.", html="<p>An older comment.</p>", status=status,
                    spam_score=round(spam, 4), toxicity_score=round(toxic, 4),
                    scores={"spam": round(spam, 4), "toxicity": round(toxic, 4)},
                    created_at=created, decided_at=decided, author_key=f"k{rng.randint(1, 40)}",
                ))
        db.session.commit()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """Start the app on a temp-file SQLite with one site, a moderator and some history."""
    app = make_app(f"sqlite:///{tmp_path}/dashboard.db")
    app.extensions["classifier"] = fakes.ModelStatus(ExplainingClassifier(), None)  # type: ignore[arg-type]
    with app.app_context():
        site = Site(name="Civic Notes", origins=["https://civic.example"], settings={})
        db.session.add(site)
        db.session.commit()
        db.session.refresh(site)
        db.session.expunge(site)
    add_moderator(app, "mod@example.org", site)
    seed_history(app, site)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    running = Live(app, server.port, site)
    yield running
    server.shutdown()
    server.server_close()
    problems = [m for m in running.console
                if "Content Security Policy" in m or m.startswith("pageerror")]
    assert problems == []


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot for people to look at."""
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"dashboard-{name}.png"), full_page=True)


def card(page: Any, text: str) -> Any:
    return page.locator("article.card", has_text=text)


def test_moderate_ban_audit_and_stats_end_to_end(live: Live, browser: Any) -> None:
    fair = live.post("A borderline but fair point about the budget", author="Mei",
                     email="mei@example.org").json["comment"]["id"]
    first = live.post("borderline pile-on number one", author="Crowd").json["comment"]["id"]
    second = live.post("borderline pile-on number two", author="Crowd").json["comment"]["id"]
    troll = live.post("you are a borderline clown, go away", author="Troll",
                      email="troll@example.org").json["comment"]["id"]

    # Anonymous visitors land on the sign-in page.
    page = live.open(browser, sign_in=False)
    expect(page.get_by_role("heading", name="Sign in to moderate")).to_be_visible()
    page.close()

    page = live.open(browser, "/dashboard/queue/pending")
    expect(page.get_by_role("heading", name="Pending")).to_contain_text("4 matching")
    held = card(page, "fair point about the budget")
    expect(held.locator("mark.m-toxicity")).to_have_text("borderline")
    expect(held).to_contain_text("toxicity 0.60 ≥ hold threshold 0.50")
    shot(page, "queue")

    # Approve one: it is then in the public API.
    held.get_by_role("button", name="Approve").click()
    expect(page.locator(".flash")).to_contain_text(f"Comment #{fair} approved.")
    public = live.app.test_client().get(
        "/api/v1/comments", query_string={"site": live.site.key, "uri": "/posts/one"}).json
    assert [c["id"] for c in public["comments"]] == [fair]

    # Bulk-reject a selection, one by click and one with the keyboard. After the approve the
    # card that took the approved one's place is the current one, so j moves on from there.
    expect(page.locator("article.card.current")).to_contain_text("pile-on number one")
    card(page, "pile-on number one").get_by_label("Select comment").check()
    page.locator("body").press("j")
    expect(page.locator("article.card.current")).to_contain_text("pile-on number two")
    page.keyboard.press("x")
    expect(page.locator(".selected-count")).to_have_text("(2)")
    page.get_by_label("Action").select_option("reject")
    page.get_by_role("button", name="Apply to selected").click()
    expect(page.locator(".flash")).to_contain_text("2 comments rejected.")
    assert live.status(first) == live.status(second) == Status.REJECTED
    assert live.status(troll) == Status.PENDING

    # Ban the troll by email: their next post through the API is rejected.
    card(page, "clown").get_by_role("link", name="Edit, ban, trust").click()
    expect(page.get_by_role("heading", name=f"Comment #{troll}")).to_be_visible()
    shot(page, "comment")
    page.get_by_role("textbox", name="Reason", exact=True).fill("repeat insults")
    page.get_by_role("button", name="Ban on Civic Notes").click()
    expect(page.locator(".flash")).to_contain_text("Banned email troll@example.org.")
    assert live.post("Hello again, friends", author="Troll",
                     email="troll@example.org").status_code == 422

    # The audit log shows all of it.
    page.get_by_role("link", name="Audit log").click()
    log = page.locator("table.events")
    expect(log).to_contain_text("moderator:mod@example.org")
    def rows(action: str) -> Any:
        return log.locator("tr", has=page.locator(f"span.action-{action}"))

    expect(rows("approve")).to_contain_text("pending → published")
    expect(rows("ban")).to_contain_text("email troll@example.org: repeat insults")
    expect(rows("reject")).to_have_count(2)
    expect(log.locator("tr", has_text="banned: email troll@example.org")).to_contain_text(
        "→ rejected")
    shot(page, "audit")

    # Stats: six charts, drawn with real size.
    page.get_by_role("link", name="Stats").click()
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(6)
    for i in range(6):
        box = charts.nth(i).bounding_box()
        assert box and box["width"] > 200 and box["height"] > 80
    assert page.locator("svg.chart rect.s-published").count() > 10
    assert page.locator("svg.chart line.threshold").count() == 4
    bar = page.locator("svg.chart rect.s-published").first.bounding_box()
    assert bar and bar["height"] > 0 and bar["width"] > 0
    shot(page, "stats")

    with live.app.app_context():
        actors = set(db.session.execute(
            select(ModerationEvent.actor).where(ModerationEvent.action != "submit")
        ).scalars())
    assert actors == {"moderator:mod@example.org"}


def test_keyboard_approve_and_bulk_confirmation_dialog(live: Live, browser: Any) -> None:
    ids = [live.post(f"borderline comment {i}").json["comment"]["id"] for i in range(3)]
    page = live.open(browser, "/dashboard/queue/pending?sort=oldest")
    page.locator("body").press("j")
    page.keyboard.press("a")
    expect(page.locator(".flash")).to_contain_text(f"Comment #{ids[0]} approved.")
    assert live.status(ids[0]) == Status.PUBLISHED
    # The focus comes back to where it was, so "a" again takes the next comment.
    expect(page.locator("article.card.current")).to_contain_text("borderline comment 1")
    page.keyboard.press("s")
    expect(page.locator(".flash")).to_contain_text(f"Comment #{ids[1]} marked as spam.")
    assert live.status(ids[1]) == Status.SPAM


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_pages_in_light_and_dark_at_desktop_and_phone_width(
    live: Live, browser: Any, scheme: str, width: str
) -> None:
    live.post("Buy cheap viagra at https://spam.example now", author="Promo",
              website="https://spam.example")
    live.post("A borderline take on the bus lanes, 公交专用道 seems fine", author="李明",
              email="li@example.org")
    with live.app.app_context():
        site_id = live.site.id
        held = db.session.execute(
            select(Comment.id).where(Comment.status == Status.PENDING)).scalar_one()
    viewport = PHONE if width == "phone" else DESKTOP
    page = live.open(browser, "/dashboard/queue/pending", viewport=viewport,
                     color_scheme=scheme)
    name = f"{width}-{scheme}"
    pages = {
        "queue": "/dashboard/queue/pending",
        "rejected": "/dashboard/queue/rejected",
        "stats": "/dashboard/stats",
        "bans": "/dashboard/bans",
        "audit": "/dashboard/audit",
        "comment": f"/dashboard/comments/{held}",
        "settings": f"/dashboard/sites/{site_id}/settings",
        "sites": "/dashboard/sites",
        "account": "/dashboard/account",
        "error": "/dashboard/comments/999999",
    }
    for label, path in pages.items():
        response = page.goto(live.origin + path)
        assert response.status == (404 if label == "error" else 200)
        shot(page, f"{label}-{name}")
        # Nothing may be wider than the screen.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{label} overflows by {overflow}px at {width} width"
    page.goto(live.origin + "/dashboard/logout")  # a GET: 405 page
    shot(page, f"405-{name}")
    login = live.open(browser, sign_in=False, viewport=viewport, color_scheme=scheme)
    shot(login, f"login-{name}")


def test_mouse_moderation_keeps_the_moderators_place(live: Live, browser: Any) -> None:
    ids = [live.post(f"borderline comment {i}").json["comment"]["id"] for i in range(3)]
    linked = live.post("borderline, see [the official report](http://casino-bonus.example/win)"
                       ).json["comment"]["id"]
    page = live.open(browser, "/dashboard/queue/pending?sort=oldest&q=borderline")
    # Link text hides where a link goes: the card says it.
    expect(card(page, "the official report")).to_contain_text(
        "Link to http://casino-bonus.example/win")
    # Approving the second card by mouse comes back to the card that took its place.
    card(page, "borderline comment 1").get_by_role("button", name="Approve").click()
    expect(page.locator(".flash")).to_contain_text(f"Comment #{ids[1]} approved.")
    expect(page.locator("article.card.current")).to_contain_text("borderline comment 2")
    bar = page.locator(".bulk").bounding_box()
    current = page.locator("article.card.current").bounding_box()
    assert bar and current and current["y"] >= bar["y"] + bar["height"]

    # The comment's own page leads back to the same filtered queue, and asks before deleting.
    card(page, "borderline comment 2").get_by_role("link", name="Edit, ban, trust").click()
    asked: list[str] = []
    page.on("dialog", lambda dialog: asked.append(dialog.message))
    page.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash")).to_contain_text(f"Comment #{ids[2]} deleted.")
    assert asked == ["Delete this comment?"]
    shot(page, "undo")
    page.get_by_role("button", name="Undo").click()
    expect(page.locator(".flash")).to_contain_text("Undone: 1 comment back where it was.")
    assert live.status(ids[2]) == Status.PENDING
    page.get_by_role("link", name="Back to the queue").click()
    page.wait_for_url("**/dashboard/queue/pending?sort=oldest&q=borderline")
    expect(page.locator("article.card")).to_have_count(3)
    assert {live.status(ids[0]), live.status(linked)} == {Status.PENDING}


def test_settings_save_with_thresholds_of_any_precision(live: Live, browser: Any) -> None:
    with live.app.app_context():
        site = db.session.get(Site, live.site.id)
        assert site is not None
        site.settings = {"thresholds": {"spam": {"hold": 0.0375, "reject": 0.9875}}}
        moderator = db.session.execute(select(Moderator)).scalar_one()
        moderator.is_admin = True  # only admins change settings
        db.session.commit()
    page = live.open(browser, f"/dashboard/sites/{live.site.id}/settings")
    expect(page.get_by_label("Spam: hold at")).to_have_value("0.0375")
    page.get_by_label("Suspect words").fill("casino")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator(".flash")).to_contain_text("Settings saved.")
    with live.app.app_context():
        saved = db.session.get(Site, live.site.id)
        assert saved is not None and saved.settings["suspect_words"] == ["casino"]
        assert saved.settings["thresholds"]["spam"]["hold"] == 0.0375


def test_an_admin_adds_a_moderator_who_then_changes_their_password(
    live: Live, browser: Any
) -> None:
    with live.app.app_context():
        moderator = db.session.execute(select(Moderator)).scalar_one()
        moderator.is_admin = True  # only admins manage accounts
        db.session.add(Site(name="Harbour Herald", origins=[], settings={}))
        db.session.commit()
    page = live.open(browser, "/dashboard/moderators")
    expect(page.get_by_role("heading", name="Moderators", exact=True)).to_be_visible()
    add = page.locator("form", has=page.get_by_role("button", name="Add moderator"))

    # A moderator without a site is refused; what was typed stays, except the password.
    add.get_by_label("Email").fill("newcomer@example.org")
    add.get_by_label("Password").fill("a long enough password")
    add.get_by_role("button", name="Add moderator").click()
    expect(page.locator(".flash.error")).to_contain_text("Nothing was saved")
    expect(add.locator("#add-sites-error")).to_contain_text("at least one site")
    expect(add.get_by_label("Email")).to_have_value("newcomer@example.org")
    expect(add.get_by_label("Password")).to_have_value("")
    shot(page, "moderators-error")

    add.get_by_label("Password").fill("a long enough password")
    add.get_by_label("Civic Notes").check()
    add.get_by_role("button", name="Add moderator").click()
    expect(page.locator(".flash")).to_contain_text(
        "Added moderator newcomer@example.org for Civic Notes")
    newcomer = page.locator("article.account", has_text="newcomer@example.org")
    expect(newcomer).to_contain_text("Sites: Civic Notes")
    newcomer.get_by_text("Change role, sites or password").click()
    newcomer.get_by_label("Harbour Herald").check()
    newcomer.get_by_role("button", name="Save role and sites").click()
    expect(page.locator(".flash")).to_contain_text(
        "newcomer@example.org is now a moderator of Civic Notes, Harbour Herald")
    page.locator("article.account", has_text="newcomer@example.org").get_by_text(
        "Change role, sites or password").click()
    shot(page, "moderators")
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the Moderators page overflows by {overflow}px"
    shot(page, "moderators-phone")
    page.set_viewport_size(DESKTOP)

    # The newcomer signs in and changes the password from the Account page.
    other = browser.new_context(viewport=PHONE)
    mine = other.new_page()
    mine.goto(live.origin + "/dashboard/login")
    mine.get_by_label("Email").fill("newcomer@example.org")
    mine.get_by_label("Password").fill("a long enough password")
    mine.get_by_role("button", name="Sign in").click()
    mine.wait_for_url("**/dashboard/queue/pending")
    mine.get_by_role("link", name="Account").click()
    mine.get_by_label("Current password").fill("a long enough password")
    mine.get_by_label("New password (at least").fill("my own secret phrase")
    mine.get_by_label("New password again").fill("my own secret phrase")
    mine.get_by_role("button", name="Change password").click()
    expect(mine.locator(".flash")).to_contain_text("Password changed.")
    shot(mine, "account-phone")
    assert mine.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    other.close()

    # The admin sees both changes in the audit log.
    page.get_by_role("link", name="Audit log").click()
    rows = page.locator("table.events tr", has=page.locator("span.action-account"))
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("changed their own password")
    expect(rows.nth(1)).to_contain_text("changed sites of newcomer@example.org")


def test_a_refused_account_form_opens_at_its_card(live: Live, browser: Any) -> None:
    """A field error in an account's card below the fold is on screen when the page comes
    back, its field focused; a saved change comes back to the top, where its message is."""
    with live.app.app_context():
        moderator = db.session.execute(select(Moderator)).scalar_one()
        moderator.is_admin = True  # only admins manage accounts
        site = db.session.get(Site, live.site.id)
        for n in range(12):  # cards enough to push the last one far below the fold
            db.session.add(Moderator(email=f"team{n:02}@example.org", password_hash="-",
                                     sites=[site]))
        db.session.commit()
        last = db.session.execute(
            select(Moderator.id).where(Moderator.email == "team11@example.org")).scalar_one()
    page = live.open(browser, "/dashboard/moderators")
    account = page.locator(f"#m-{last}")
    account.get_by_text("Change role, sites or password").click()
    account.get_by_label("Civic Notes").uncheck()
    account.get_by_role("button", name="Save role and sites").click()

    page.wait_for_url(f"**/dashboard/moderators/{last}/access#m-{last}")
    expect(page.locator(".flash.error")).to_contain_text("Nothing was saved")
    expect(account.locator(f"#m{last}-sites-error")).to_be_in_viewport()
    expect(account.get_by_label("Civic Notes")).to_be_focused()
    expect(page.get_by_role("link", name="Moderators")).to_have_attribute("aria-current", "page")
    shot(page, "moderators-card-error")

    account.get_by_label("Civic Notes").check()
    account.get_by_role("button", name="Save role and sites").click()
    page.wait_for_url("**/dashboard/moderators#main")
    expect(page.locator(".flash")).to_contain_text("Nothing changed for team11@example.org.")
    expect(page.locator(".flash")).to_be_in_viewport()
