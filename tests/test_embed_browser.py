"""The widget in real Chromium: demo page on http://localhost:PORT, API on http://127.0.0.1:PORT."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import select
from werkzeug.serving import make_server

from moderation import comments
from moderation.db import Comment, Report, Site, db
from moderation.sanitising import normalise, render
from tests import fakes
from tests.conftest import SCREENSHOTS, make_app

pytestmark = pytest.mark.browser

SHOTS = SCREENSHOTS
EN_POST = "/demo/posts/tariffs-and-the-grocery-bill"
ZH_POST = "/demo/zh/posts/old-neighbourhood-renewal"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1000, "height": 900}


@dataclass
class Live:
    """A running demo server: its app, port and what the browser did."""

    app: Flask
    port: int
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def page_origin(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def api_origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self, browser: Any, path: str, **context: Any) -> Any:
        """Open a demo page in a fresh browser context and wait for the thread."""
        ctx = browser.new_context(viewport=context.pop("viewport", DESKTOP), **context)
        page = ctx.new_page()
        page.on("request", lambda r: self.requests.append(f"{r.method} {r.url}"))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.goto(self.page_origin + path)
        if path.startswith("/demo/posts") or path.startswith("/demo/zh/posts"):
            page.wait_for_selector(".cm-loading", state="hidden")
        return page

    def comments(self) -> list[Comment]:
        with self.app.app_context():
            rows = db.session.execute(select(Comment).order_by(Comment.id)).scalars().all()
            db.session.expunge_all()
            return list(rows)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[..., Live]]:
    """Start demo servers on a temp-file SQLite with the keyword classifier."""
    servers: list[Any] = []

    def start(**config: Any) -> Live:
        config.setdefault("MIN_FILL_MS", 50)
        app = make_app(f"sqlite:///{tmp_path}/demo-{len(servers)}.db", DEMO=True, **config)
        fakes.install(app)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        result = app.test_cli_runner().invoke(
            # The sample thread only: these tests count and page its five comments.
            args=["demo", "seed", "--no-queue", "--origin", f"http://localhost:{server.port}"]
        )
        assert result.exit_code == 0, result.output
        return Live(app, server.port)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot for people to look at."""
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if page.locator("#comments").count():
        page.locator("#comments").screenshot(path=str(SHOTS / f"{name}-widget.png"))


def post(page: Any, text: str, author: str = "", scope: str = ".cm-widget > .cm-form") -> None:
    form = page.locator(scope)
    form.get_by_role("textbox", name=re.compile("comment|reply|评论|回复", re.I)).fill(text)
    if author:
        form.get_by_label(re.compile("^(Name|昵称)")).fill(author)
    page.wait_for_timeout(80)  # the server's minimum fill time in these tests is 50 ms
    form.locator("button[type=submit]").click()


def item(page: Any, text: str) -> Any:
    return page.locator(".cm-item", has=page.locator(":scope > .cm-comment .cm-body",
                                                     has_text=text))


def assert_clean(live: Live) -> None:
    """No third-party requests, no CSP violations, no script errors, no dialogs."""
    origins = {re.match(r"\w+ (https?://[^/]+)", r).group(1) for r in live.requests}  # type: ignore[union-attr]
    assert origins <= {live.page_origin, live.api_origin}, origins
    problems = [m for m in live.console
                if "Content Security Policy" in m or m.startswith("pageerror")]
    assert problems == []
    assert live.dialogs == []


# -- the thread, posting, held comments -----------------------------------------------------


def test_thread_loads_and_posts_publish_or_hold_for_the_author_only(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    widget = page.locator("#comments")
    expect(widget.locator(".cm-title")).to_have_text("5 comments")
    expect(widget.locator(".cm-item")).to_have_count(5)
    reply = item(page, "Agreed, though the 2018")
    assert reply.locator("xpath=..").get_attribute("class") == "cm-replies"
    time = widget.locator("time").first
    assert re.match(r"\d{4}-\d\d-\d\dT", time.get_attribute("datetime"))
    assert re.search(r"2026|\d{4}", time.get_attribute("title"))
    # The page is on localhost, the API on 127.0.0.1: every call is cross-origin.
    assert any(r.startswith(f"GET {server.api_origin}/api/v1/comments?") for r in server.requests)
    assert any(r.startswith(f"GET {server.api_origin}/embed.js") for r in server.requests)

    post(page, "Good point about **pass-through** rates.", author="Ana")
    status = page.locator(".cm-widget > .cm-form .cm-status")
    expect(status).to_have_text("Your comment is published.")
    expect(widget.locator(".cm-title")).to_have_text("6 comments")
    mine = item(page, "Good point about pass-through rates.")
    expect(mine.locator("strong")).to_have_text("pass-through")
    expect(mine.locator(".cm-author")).to_have_text("Ana")

    post(page, "This is a borderline remark about the minister.")
    expect(status).to_have_text(re.compile("^Thank you! Your comment is awaiting moderation"))
    held = item(page, "borderline remark")
    expect(held.locator(".cm-badge")).to_have_text("Awaiting moderation")
    expect(held.locator(".cm-note")).to_contain_text("Only you can see this")
    expect(widget.locator(".cm-title")).to_have_text("6 comments")
    assert [c.status for c in server.comments()[-2:]] == ["published", "pending"]
    shot(page, "en-light-after-posting")

    page.reload()
    page.wait_for_selector(".cm-badge")
    expect(item(page, "borderline remark").locator(".cm-badge")).to_have_text("Awaiting moderation")
    assert page.context.cookies() == []

    stranger = server.open(browser, EN_POST)
    expect(stranger.locator(".cm-title")).to_have_text("6 comments")
    expect(item(stranger, "Good point about")).to_have_count(1)
    expect(stranger.get_by_text("borderline remark")).to_have_count(0)
    expect(stranger.locator(".cm-badge")).to_have_count(0)
    assert_clean(server)

    # Once a moderator approves it, everyone sees it and the author's badge goes away.
    with server.app.app_context():
        pending = db.session.execute(
            select(Comment).where(Comment.status == "pending")
        ).scalar_one()
        comments.moderate_many([pending], "approve", "moderator@example")
    page.reload()
    page.wait_for_selector(".cm-loading", state="hidden")
    expect(page.locator(".cm-title")).to_have_text("7 comments")
    expect(item(page, "borderline remark").locator(".cm-badge")).to_have_count(0)


def test_reply_edit_delete_and_report(live: Callable[..., Live], browser: Any) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    parent = item(page, "I run a small bakery")
    parent.locator(":scope > .cm-comment .cm-reply").click()
    reply_form = parent.locator(".cm-slot .cm-form")
    textarea = reply_form.get_by_role("textbox", name="Reply to Daniel Reyes")
    assert textarea.evaluate("el => el === document.activeElement")
    post(page, "Same here: rye went up even more.", scope=".cm-slot .cm-form")
    reply = item(page, "rye went up")
    assert reply.locator("xpath=../..").get_attribute("id") == parent.get_attribute("id")
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    assert server.comments()[-1].parent_id is not None

    # Edit: the own comment has Edit and Delete, even after a reload (token in localStorage).
    page.reload()
    page.wait_for_selector(".cm-edit")
    reply = item(page, "rye went up")
    reply.locator(":scope > .cm-comment .cm-edit").click()
    editor = reply.locator(".cm-editform textarea")
    assert editor.input_value() == "Same here: rye went up even more."
    editor.fill("Same here: *rye* went up even more than wheat.")
    expect(reply.locator(".cm-editform .cm-preview em")).to_have_text("rye")
    reply.locator(".cm-editform button[type=submit]").click()
    edited = item(page, "went up even more than wheat")
    edited.locator(".cm-edited").wait_for()
    expect(edited.locator(".cm-body em")).to_have_text("rye")
    # Keyboard focus is back on the (rebuilt) Edit button, not lost to the page.
    expect(edited.locator(":scope > .cm-comment .cm-edit")).to_be_focused()
    assert server.comments()[-1].text == "Same here: *rye* went up even more than wheat."
    expect(item(page, "I run a small bakery").locator(".cm-report")).to_have_count(1)
    expect(edited.locator(":scope > .cm-comment .cm-report")).to_have_count(0)

    # Delete asks inline (no browser dialog), then removes the comment everywhere.
    edited.locator(":scope > .cm-comment .cm-delete").click()
    expect(edited.locator(".cm-confirm")).to_have_text("Delete this comment?")
    edited.get_by_role("button", name="Yes, delete").click()
    expect(page.locator(".cm-title")).to_have_text("5 comments")
    expect(page.get_by_text("went up even more than wheat")).to_have_count(0)
    assert server.comments()[-1].status == "deleted"
    expect(page.locator(".cm-sr[aria-live=polite][role=status]")).to_have_text(
        "Your comment is deleted.")
    # Keyboard focus does not fall to the page: it goes to the parent, the only neighbour left.
    expect(item(page, "I run a small bakery").locator(":scope > .cm-comment")).to_be_focused()

    # Report someone else's comment with a reason.
    target = item(page, "Worth adding: the exemption list")
    target.locator(":scope > .cm-comment .cm-report").click()
    target.get_by_label("Reason").select_option("off-topic")
    target.get_by_label(re.compile("^Note")).fill("Not about tariffs.")
    target.get_by_role("button", name="Send report").click()
    expect(target.locator(".cm-good")).to_have_text("Thank you. A moderator will look at it.")
    with server.app.app_context():
        flag = db.session.execute(select(Report)).scalar_one()
        assert (flag.reason, flag.note) == ("off-topic", "Not about tariffs.")
    assert_clean(server)


def test_keyboard_reply_and_escape(live: Callable[..., Live], browser: Any) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    button = item(page, "I run a small bakery").locator(":scope > .cm-comment .cm-reply")
    button.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".cm-slot textarea")).to_be_focused()
    page.keyboard.type("Typed with the keyboard only.")
    page.keyboard.press("Escape")
    expect(page.locator(".cm-slot .cm-form")).to_have_count(0)
    expect(button).to_be_focused()
    outline = button.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid"  # visible focus
    # The main form's label is a real <label>: clicking it focuses the field.
    page.locator(".cm-widget > .cm-form label", has_text="Leave a comment").click()
    expect(page.locator(".cm-widget > .cm-form textarea")).to_be_focused()


@pytest.mark.usefixtures("steady_window")
def test_too_many_comments_shows_when_to_retry(live: Callable[..., Live], browser: Any) -> None:
    server = live(RATELIMIT_ENABLED=True, LIMIT_POST="1/minute", LIMIT_READ="1000/minute")
    page = server.open(browser, EN_POST)
    post(page, "First comment gets through.")
    status = page.locator(".cm-widget > .cm-form .cm-status")
    expect(status).to_have_text("Your comment is published.")
    post(page, "Second comment is one too many.")
    page.wait_for_selector(".cm-status.cm-bad")
    expect(status).to_have_text(re.compile(r"^Too many comments: try again in \d+ s\.$"))
    seconds = int(re.search(r"\d+", status.inner_text()).group())  # type: ignore[union-attr]
    assert 1 <= seconds <= 60
    # The reader's text is still there to send later.
    assert page.locator(".cm-widget > .cm-form textarea").input_value() == (
        "Second comment is one too many."
    )
    assert len(server.comments()) == 10
    shot(page, "en-light-429")


def test_load_more_sort_and_depth_cap(live: Callable[..., Live], browser: Any) -> None:
    server = live()
    page = server.open(browser, EN_POST + "?per_page=2&max_depth=2")
    roots = page.locator(".cm-list > .cm-item > .cm-comment .cm-author")
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes"])
    more = page.get_by_role("button", name="Load more comments")
    more.click()
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes", "Priya S."])
    expect(more).to_be_hidden()
    # Level 3 is beyond max-depth 2: it is listed flat at level 2, saying whom it answers.
    deep = item(page, "Staples have thinner margins")
    expect(deep.locator(".cm-replyto")).to_have_text("in reply to Tom H.")
    expect(page.locator(".cm-replies .cm-replies")).to_have_count(0)
    assert deep.locator("xpath=..").get_attribute("class") == "cm-replies"

    page.get_by_label("Sort").select_option("newest")
    expect(roots).to_have_text(["Priya S.", "Daniel Reyes"])
    assert_clean(server)


def test_widget_sends_honeypot_and_fill_time(live: Callable[..., Live], browser: Any) -> None:
    server = live(MIN_FILL_MS=60_000)  # no test reader spends a minute on the form
    page = server.open(browser, EN_POST)
    post(page, "Posted faster than any person types.")
    status = page.locator(".cm-widget > .cm-form .cm-status")
    expect(status).to_have_text("Your comment was not accepted.")
    assert server.comments()[-1].status == "spam"
    assert server.comments()[-1].reasons[0].startswith("bot: form filled in")

    server.app.config["MIN_FILL_MS"] = 0
    hidden = page.locator("input[name=homepage]")
    expect(hidden).not_to_be_in_viewport()
    assert hidden.get_attribute("tabindex") == "-1"
    hidden.evaluate("el => { el.value = 'http://spam.example'; }")  # what a form-filling bot does
    post(page, "A bot that fills in every field.")
    expect(status).to_have_text("Your comment was not accepted.")
    assert server.comments()[-1].reasons[0] == "bot: honeypot field filled in"
    expect(page.locator(".cm-title")).to_have_text("5 comments")


XSS = [
    '<img src=x onerror="window.__xss=1;alert(1)">',
    "<script>window.__xss=1;alert(2)</script>",
    "[click me](javascript:window.__xss=1;alert(3))",
    '<a href="javascript:alert(4)">link</a> <svg onload=alert(5)>',
]


def test_xss_attempts_render_as_inert_text(live: Callable[..., Live], browser: Any) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    textarea = page.locator(".cm-widget > .cm-form textarea")
    text = "\n\n".join(XSS)
    textarea.fill(text)
    preview = page.locator(".cm-widget > .cm-form .cm-preview-body")
    expect(preview.locator("img, script, svg, a")).to_have_count(0)
    expect(preview).to_contain_text("<img src=x onerror=")
    page.locator(".cm-widget > .cm-form").get_by_label(re.compile("^Name")).fill(
        '<img src=x onerror="window.__xss=1">'
    )
    page.wait_for_timeout(80)
    page.locator(".cm-widget > .cm-form button[type=submit]").click()
    page.wait_for_selector(".cm-own")
    mine = page.locator(".cm-own")
    body = mine.locator(".cm-body")
    expect(body.locator("img, script, svg, iframe")).to_have_count(0)
    assert body.locator("a[href^='javascript']").count() == 0
    assert "<script>window.__xss=1;alert(2)</script>" in body.inner_text()
    expect(mine.locator(".cm-author")).to_have_text('<img src=x onerror="window.__xss=1">')
    body.get_by_text("click me", exact=False).first.click()
    page.reload()
    page.wait_for_selector(".cm-own")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    expect(page.locator("#comments img, #comments script")).to_have_count(0)
    assert_clean(server)


# -- languages, themes and the count widget -------------------------------------------------


def test_chinese_interface(live: Callable[..., Live], browser: Any) -> None:
    server = live()
    page = server.open(browser, ZH_POST, viewport=PHONE)
    expect(page.locator(".cm-title")).to_have_text("4 条评论")
    form = page.locator(".cm-widget > .cm-form")
    expect(form.locator("button[type=submit]")).to_have_text("发表评论")
    expect(form.get_by_label(re.compile("^昵称"))).to_have_count(1)
    expect(page.locator(".cm-sortbox label")).to_have_text("排序")
    assert re.search(r"天前|小时前|昨天|前天", page.locator("time").first.inner_text())
    expect(page.locator(".cm-reply").first).to_have_text("回复")
    shot(page, "zh-light-phone")
    post(page, "这个方案有点 borderline，希望再讨论一下。", author="读者甲")
    expect(form.locator(".cm-status")).to_have_text(re.compile("^谢谢！你的评论正在等待审核"))
    expect(page.locator(".cm-badge")).to_have_text("等待审核")
    form.locator("textarea").fill("好")
    form.locator("button[type=submit]").click()
    expect(form.locator(".cm-field-text .cm-error")).to_have_text("请填写评论内容（至少 2 个字）。")
    assert_clean(server)

    dark = server.open(browser, ZH_POST, color_scheme="dark", viewport=PHONE)
    expect(dark.locator("#comments")).to_have_class(re.compile(r"\bcm-dark\b"))
    shot(dark, "zh-dark-phone")


def test_themes_follow_the_page(live: Callable[..., Live], browser: Any) -> None:
    server = live()
    light = server.open(browser, EN_POST)
    color = "getComputedStyle(document.querySelector('.cm-author')).color"
    expect(light.locator("#comments")).to_have_class(re.compile(r"\bcm-light\b"))
    dark = server.open(browser, EN_POST, color_scheme="dark")
    expect(dark.locator("#comments")).to_have_class(re.compile(r"\bcm-dark\b"))
    assert light.evaluate(color) != dark.evaluate(color)
    shot(dark, "en-dark-desktop")
    forced = server.open(browser, EN_POST + "?theme=dark", viewport=PHONE)
    expect(forced.locator("#comments")).to_have_class(re.compile(r"\bcm-solid\b"))
    shot(forced, "en-forced-dark-phone")
    phone = server.open(browser, EN_POST, viewport=PHONE)
    phone.locator(".cm-reply").first.click()
    shot(phone, "en-light-phone-reply")
    assert_clean(server)


def test_count_widget_uses_one_request(live: Callable[..., Live], browser: Any) -> None:
    server = live()
    page = server.open(browser, "/demo/")
    links = page.locator("[data-comments-count]")
    expect(links).to_have_text(["5 comments", "4 comments"])
    counts = [r for r in server.requests if r.endswith("/api/v1/counts")]
    assert counts == [f"POST {server.api_origin}/api/v1/counts"]
    zh = server.open(browser, "/demo/zh/")
    expect(zh.locator("[data-comments-count]")).to_have_text("4 条评论")
    shot(page, "en-index-counts")
    assert_clean(server)


# -- the snippet before its target, pages that overlap, held edits, the preview -------------


def snippet_page(live: Live, browser: Any, html: str) -> Any:
    """Open a page on the blog's origin whose HTML is given here (no server route needed).

    In html, {api} is the comment server's origin, {key} the demo site's key and {uri} the
    English demo post's thread; the page is served at /snippet, any other URL goes through.
    """
    with live.app.app_context():
        key = db.session.execute(select(Site.key)).scalar_one()
    body = html.format(api=live.api_origin, key=key, uri=EN_POST)
    # A page fulfilled here has no address, so Chromium would treat the API on 127.0.0.1 as a
    # local network to ask permission for; a real blog and comment server are both public.
    ctx = browser.new_context(viewport=DESKTOP, permissions=["local-network-access"])
    page = ctx.new_page()
    page.on("request", lambda r: live.requests.append(f"{r.method} {r.url}"))
    page.on("console", lambda m: live.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: live.console.append(f"pageerror: {e}"))
    page.route(f"{live.page_origin}/snippet", lambda route: route.fulfill(
        status=200, content_type="text/html; charset=utf-8", body=body))
    return page


SNIPPETS = {
    "sync script in the head": (
        '<!doctype html><html lang="en"><head><title>Post</title>'
        '<script src="{api}/embed.js" data-site="{key}" data-uri="{uri}"></script></head>'
        '<body><h1>Post</h1><div id="comments"></div></body></html>'),
    "data-target before its element": (
        '<!doctype html><html lang="en"><head><title>Post</title></head><body>'
        '<script src="{api}/embed.js" data-site="{key}" data-uri="{uri}" data-target="#c2">'
        '</script><p>The post.</p><div id="c2"></div></body></html>'),
    # async in the head, and the script wins the race: it runs while the parser still waits
    # for a slow script above the target (held by the test until embed.js has run).
    "async script that wins the race": (
        '<!doctype html><html lang="en"><head><title>Post</title>'
        '<script src="{api}/embed.js" data-site="{key}" data-uri="{uri}" async '
        'onload="window.embedRanWhile = document.readyState + \' \' + '
        '!!document.querySelector(\'#comments\')"></script>'
        '<script src="/slow.js"></script></head>'
        '<body><div id="comments"></div></body></html>'),
}


@pytest.mark.parametrize("html", SNIPPETS.values(), ids=list(SNIPPETS))
def test_snippet_that_runs_before_its_target_exists_still_shows_the_widget(
    live: Callable[..., Live], browser: Any, html: str
) -> None:
    server = live()
    page = snippet_page(server, browser, html)
    held: list[Any] = []
    page.route(f"{server.page_origin}/slow.js", lambda route: held.append(route))
    page.goto(server.page_origin + "/snippet", wait_until="commit")
    if "slow.js" in html:
        page.wait_for_function("window.embedRanWhile", polling=50)  # no frames yet: no rAF
        assert page.evaluate("window.embedRanWhile") == "loading false"
        held[0].fulfill(status=200, content_type="text/javascript", body="")
    widget = page.locator("#c2" if "#c2" in html else "#comments")
    expect(widget.locator(".cm-title")).to_have_text("5 comments")
    expect(widget.locator(".cm-item")).to_have_count(5)
    assert_clean(server)


def unique_ids(page: Any) -> bool:
    ids = page.evaluate("Array.from(document.querySelectorAll('[id]'), n => n.id)")
    return len(ids) == len(set(ids))


def test_load_more_skips_the_readers_own_new_comment(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    # Oldest first: the comment posted here is also on the next page.
    page = server.open(browser, EN_POST + "?per_page=2")
    post(page, "A fresh top-level note about bread prices.", author="Ana")
    expect(page.locator(".cm-widget > .cm-form .cm-status")).to_have_text(
        "Your comment is published.")
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    more = page.get_by_role("button", name="Load more comments")
    more.click()
    expect(more).to_be_hidden()
    expect(item(page, "Worth adding: the exemption list")).to_have_count(1)
    expect(item(page, "A fresh top-level note")).to_have_count(1)
    expect(page.locator(".cm-item")).to_have_count(6)
    # In the order a reload shows: the page that came goes before the reader's newer comment.
    roots = page.locator(".cm-list > .cm-item > .cm-comment .cm-author")
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes", "Priya S.", "Ana"])
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    assert unique_ids(page)
    assert_clean(server)


def test_load_more_after_a_new_comment_brings_the_next_page(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST + "?per_page=1&sort=newest")
    roots = page.locator(".cm-list > .cm-item > .cm-comment .cm-author")
    expect(roots).to_have_text(["Priya S."])
    # Someone else publishes a comment (on top, newest first) and a reply to one not shown yet.
    stranger = server.open(browser, EN_POST)
    post(stranger, "Someone else weighs in.", author="Sam")
    expect(stranger.locator(".cm-title")).to_have_text("6 comments")
    item(stranger, "I run a small bakery").locator(":scope > .cm-comment .cm-reply").click()
    post(stranger, "Which flour do you use?", author="Sam", scope=".cm-slot .cm-form")
    expect(stranger.locator(".cm-title")).to_have_text("7 comments")

    # Load more brings the comment after Priya's (by offset it was Priya's again: nothing new),
    # with the reply; then the last one, and the button goes.
    more = page.get_by_role("button", name="Load more comments")
    more.click()
    expect(roots).to_have_text(["Priya S.", "Daniel Reyes"])
    reply = item(page, "Which flour do you use?")
    expect(reply).to_have_count(1)
    assert reply.locator("xpath=../..").get_attribute("id") == item(
        page, "I run a small bakery").get_attribute("id")
    expect(more).to_be_visible()
    more.click()
    expect(roots).to_have_text(["Priya S.", "Daniel Reyes", "Maria Okafor"])
    expect(more).to_be_hidden()
    # The new top-level comment is above where the reader started: it shows after a reload.
    expect(item(page, "Someone else weighs in.")).to_have_count(0)
    expect(page.locator(".cm-item")).to_have_count(6)
    expect(page.locator(".cm-title")).to_have_text("7 comments")
    assert unique_ids(page)
    shot(page, "en-load-more-after-new-comment")
    assert_clean(server)


def test_load_more_after_an_earlier_comment_is_removed_skips_none(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST + "?per_page=2")
    roots = page.locator(".cm-list > .cm-item > .cm-comment .cm-author")
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes"])
    # A moderator removes Daniel's comment, already on the reader's screen.
    with server.app.app_context():
        daniel = db.session.execute(
            select(Comment).where(Comment.author == "Daniel Reyes")
        ).scalar_one()
        comments.moderate_many([daniel], "delete", "moderator@example")
    more = page.get_by_role("button", name="Load more comments")
    more.click()
    # By offset, page 2 of what was left was empty and Priya's comment never came.
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes", "Priya S."])
    expect(more).to_be_hidden()
    assert unique_ids(page)
    assert_clean(server)


# -- the reader's own comments across pages -------------------------------------------------


def reopen(page: Any, live: Live, query: str) -> None:
    """Open the English demo post again in the same browser (its own comments remembered)."""
    page.goto(live.page_origin + EN_POST + query)
    page.wait_for_selector(".cm-loading", state="hidden")


def reply_to(page: Any, parent: str, text: str) -> None:
    item(page, parent).locator(":scope > .cm-comment .cm-reply").click()
    post(page, text, scope=".cm-slot .cm-form")
    expect(item(page, text)).to_have_count(1)


ROOTS = ".cm-list > .cm-item > .cm-comment .cm-author"


@pytest.mark.parametrize("meanwhile", ["load more", "sort newest", "sort oldest"])
def test_own_comment_a_page_brings_before_the_post_answers_shows_once(
    live: Callable[..., Live], browser: Any, meanwhile: str
) -> None:
    server = live()
    start = "?per_page=2" + ("&sort=newest" if meanwhile == "sort oldest" else "")
    page = server.open(browser, EN_POST + start)
    held: list[Any] = []

    def slow(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        held.append((route, route.fetch()))  # stored on the server; its answer waits

    page.route(f"{server.api_origin}/api/v1/comments", slow)
    text = "A note sent on a slow connection."
    post(page, text, author="Ana")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert [c.author for c in server.comments()][-1] == "Ana"
    roots = page.locator(ROOTS)
    # Before the answer comes, a page that already holds the new comment comes in.
    if meanwhile == "load more":
        page.get_by_role("button", name="Load more comments").click()
        expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes", "Priya S.", "Ana"])
    elif meanwhile == "sort newest":
        page.get_by_label("Sort").select_option("newest")
        expect(roots).to_have_text(["Ana", "Priya S."])
    else:  # oldest first, the new comment is on a page not shown yet; the total counts it
        page.get_by_label("Sort").select_option("oldest")
        expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes"])
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    route, response = held[0]
    route.fulfill(response=response)

    expect(page.locator(".cm-widget > .cm-form .cm-status")).to_have_text(
        "Your comment is published.")
    mine = item(page, text)
    expect(mine).to_have_count(1)
    expect(mine.locator(":scope > .cm-comment .cm-edit")).to_have_count(1)
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    page.wait_for_timeout(300)  # nothing more comes to change it
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    expect(item(page, text)).to_have_count(1)
    assert unique_ids(page)
    if meanwhile == "sort oldest":  # it waits at the end, then takes its place
        expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes", "Ana"])
        page.get_by_role("button", name="Load more comments").click()
        expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes", "Priya S.", "Ana"])
        expect(item(page, text)).to_have_count(1)
        expect(page.locator(".cm-title")).to_have_text("6 comments")
    shot(page, f"en-own-comment-during-{meanwhile.replace(' ', '-')}")
    assert_clean(server)


@pytest.mark.parametrize(("sort", "depth"), [("oldest", 3), ("oldest", 1), ("newest", 3)])
def test_own_held_reply_waits_for_its_parents_page_then_nests_under_it(
    live: Callable[..., Live], browser: Any, sort: str, depth: int
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    reply_to(page, "I run a small bakery", "A borderline remark about my own bakery.")
    reopen(page, server, f"?per_page=1&sort={sort}&max_depth={depth}")
    held = item(page, "A borderline remark about my own bakery.")
    # Its parent is on a later page: until it comes, the reply waits at the end of the list.
    expect(held.locator(".cm-badge")).to_have_text("Awaiting moderation")
    expect(page.locator(".cm-list > .cm-item").last).to_have_id(held.get_attribute("id"))
    more = page.get_by_role("button", name="Load more comments")
    first, second, third = (["Maria Okafor", "Daniel Reyes", "Priya S."] if sort == "oldest"
                            else ["Priya S.", "Daniel Reyes", "Maria Okafor"])
    more.click()
    expect(page.locator(ROOTS).filter(has_text="Daniel Reyes")).to_have_count(1)
    parent = item(page, "I run a small bakery")

    def nested() -> None:
        if depth > 1:  # in the parent's replies
            expect(parent.locator(":scope > .cm-replies > .cm-item")).to_have_id(
                held.get_attribute("id"))
            expect(held.locator(".cm-replyto")).to_have_count(0)
        else:  # below the depth cap: listed flat right after it, saying whom it answers
            expect(parent.locator("xpath=following-sibling::li[1]")).to_have_id(
                held.get_attribute("id"))
            expect(held.locator(".cm-replyto")).to_have_text("in reply to Daniel Reyes")
        expect(held.locator(".cm-badge")).to_have_text("Awaiting moderation")
        expect(held.locator(".cm-note")).to_contain_text("Only you can see this")
        expect(held.locator(":scope > .cm-comment .cm-edit")).to_have_count(1)

    nested()
    more.click()
    expect(more).to_be_hidden()
    # Top-level: not the replies listed flat below the depth cap, which say whom they answer.
    top = page.locator(".cm-list > .cm-item > .cm-comment:not(:has(.cm-replyto)) .cm-author")
    expect(top).to_have_text([first, second, third])
    nested()
    expect(page.locator(".cm-waiting")).to_have_count(0)
    expect(page.locator(".cm-title")).to_have_text("5 comments")
    assert unique_ids(page)
    shot(page, f"en-held-reply-nested-{sort}-depth{depth}")
    assert_clean(server)


def test_own_published_comments_on_later_pages_can_be_edited_and_deleted(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    post(page, "My own note on flour prices.", author="Ana")
    expect(page.locator(".cm-widget > .cm-form .cm-status")).to_have_text(
        "Your comment is published.")
    reply_to(page, "I run a small bakery", "Same here: rye went up even more.")
    reopen(page, server, "?per_page=1")
    more = page.get_by_role("button", name="Load more comments")
    expect(page.locator(ROOTS)).to_have_text(["Maria Okafor"])
    more.click()  # Daniel's comment, with the reader's reply
    reply = item(page, "rye went up")
    expect(reply.locator(":scope > .cm-comment .cm-edit")).to_have_count(1)
    expect(reply.locator(":scope > .cm-comment .cm-delete")).to_have_count(1)
    expect(reply.locator(":scope > .cm-comment .cm-report")).to_have_count(0)
    more.click()
    more.click()  # Priya's, then the reader's own
    expect(more).to_be_hidden()
    note = item(page, "My own note on flour prices.")
    expect(note.locator(":scope > .cm-comment .cm-delete")).to_have_count(1)
    expect(note.locator(":scope > .cm-comment .cm-report")).to_have_count(0)
    # The controls work: the edit token came back with them.
    note.locator(":scope > .cm-comment .cm-edit").click()
    note.locator(".cm-editform textarea").fill("My own note on flour and rye prices.")
    note.locator(".cm-editform button[type=submit]").click()
    expect(item(page, "flour and rye prices").locator(".cm-edited")).to_have_count(1)
    assert server.comments()[-2].text == "My own note on flour and rye prices."
    reply.locator(":scope > .cm-comment .cm-delete").click()
    reply.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_text("rye went up")).to_have_count(0)
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    assert server.comments()[-1].status == "deleted"
    assert_clean(server)


@pytest.mark.parametrize("depth", [3, 1])
def test_own_held_comments_approved_meanwhile_show_as_published_when_their_page_comes(
    live: Callable[..., Live], browser: Any, depth: int
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    reply_to(page, "I run a small bakery", "A borderline aside about the bakery.")
    expect(page.locator(".cm-badge")).to_have_count(1)
    post(page, "A borderline remark about the minister.")
    expect(page.locator(".cm-badge")).to_have_count(2)
    stranger = server.open(browser, EN_POST)
    reply_to(stranger, "I run a small bakery", "Which flour do you use?")
    reopen(page, server, f"?per_page=1&max_depth={depth}")
    expect(page.locator(".cm-badge")).to_have_count(2)
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    # A moderator approves both while the reader reads the first page.
    with server.app.app_context():
        pending = db.session.execute(
            select(Comment).where(Comment.status == "pending")
        ).scalars().all()
        assert len(pending) == 2
        comments.moderate_many(pending, "approve", "moderator@example")
    ids = {c.text: f"cm-{c.id}" for c in server.comments()}
    more = page.get_by_role("button", name="Load more comments")
    more.click()  # Daniel's comment, with the reader's reply now published, then Sam's
    aside = item(page, "A borderline aside about the bakery.")
    expect(aside.locator(".cm-badge")).to_have_count(0)
    expect(aside.locator(".cm-note")).to_have_count(0)
    expect(page.locator(".cm-title")).to_have_text("8 comments")  # the server counts both
    daniel = item(page, "I run a small bakery")
    answers = [ids["A borderline aside about the bakery."], ids["Which flour do you use?"]]
    remark = ids["A borderline remark about the minister."]
    listed = page.locator(".cm-list > .cm-item")
    if depth > 1:  # under Daniel's comment, in the order a reload shows
        expect(daniel.locator(":scope > .cm-replies > .cm-item")).to_have_count(2)
        assert daniel.locator(":scope > .cm-replies > .cm-item").evaluate_all(
            "items => items.map(li => li.id)") == answers
        expect(listed).to_have_count(3)
    else:  # below the depth cap: listed flat right after it
        expect(listed).to_have_count(7)
        assert listed.evaluate_all("items => items.map(li => li.id)")[3:] == [
            daniel.get_attribute("id"), *answers, remark]
        expect(aside.locator(".cm-replyto")).to_have_text("in reply to Daniel Reyes")
    more.click()
    more.click()
    expect(more).to_be_hidden()
    top = page.locator(".cm-list > .cm-item > .cm-comment:not(:has(.cm-replyto)) .cm-author")
    expect(top).to_have_text(["Maria Okafor", "Daniel Reyes", "Priya S.", "Anonymous"])
    assert page.locator(f"#{remark}").evaluate("li => li.parentNode.lastElementChild === li")
    for mine in (aside, item(page, "A borderline remark about the minister.")):
        expect(mine.locator(".cm-badge")).to_have_count(0)
        expect(mine.locator(".cm-note")).to_have_count(0)
        expect(mine.locator(":scope > .cm-comment")).not_to_have_class(re.compile("cm-pending"))
        # Published: others can answer it now, and it is still the reader's to edit.
        expect(mine.locator(":scope > .cm-comment .cm-reply")).to_have_count(1)
        expect(mine.locator(":scope > .cm-comment .cm-edit")).to_have_count(1)
    expect(page.locator(".cm-title")).to_have_text("8 comments")
    assert unique_ids(page)
    shot(page, f"en-held-comments-approved-meanwhile-depth{depth}")
    assert_clean(server)


def test_edit_that_publishes_a_held_comment_counts_it(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    post(page, "This is a borderline remark about the minister.")
    expect(page.locator(".cm-widget > .cm-form .cm-status")).to_have_text(
        re.compile("^Thank you! Your comment is awaiting moderation"))
    expect(page.locator(".cm-title")).to_have_text("5 comments")
    held = item(page, "borderline remark")
    held.locator(":scope > .cm-comment .cm-edit").click()
    held.locator(".cm-editform textarea").fill("A measured remark about the minister.")
    held.locator(".cm-editform button[type=submit]").click()
    mine = item(page, "A measured remark")
    expect(mine.locator(".cm-edited")).to_have_count(1)
    expect(mine.locator(".cm-badge")).to_have_count(0)
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    expect(page.locator(".cm-sr[aria-live=polite][role=status]")).to_have_text(
        "Your comment is updated.")
    assert server.comments()[-1].status == "published"
    page.reload()
    page.wait_for_selector(".cm-loading", state="hidden")
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    assert_clean(server)


@pytest.mark.parametrize(("text", "shown", "links"), [
    ("[a](https://x.com/) [b](https://y.com/\u00010\u0002) `c\u00011\u0002`", "a b c1",
     [["href rel", "https://x.com/", "a"], ["href rel", "https://y.com/0", "b"]]),
    ("[a](https://x.com/\u00010\u0002) refers to itself", "a refers to itself",
     [["href rel", "https://x.com/0", "a"]]),
], ids=["other-link", "itself"])
def test_preview_ignores_placeholder_characters_typed_by_the_reader(
    live: Callable[..., Live], browser: Any, text: str, shown: str, links: list[list[str]]
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    textarea = page.locator(".cm-widget > .cm-form textarea")
    preview = page.locator(".cm-widget > .cm-form .cm-preview-body")
    textarea.fill(text)
    assert "\u0001" in textarea.input_value()
    expect(preview).to_have_text(shown)  # as the server publishes it: the controls removed
    assert preview.evaluate("el => Array.from(el.querySelectorAll('a'), a => "
                            "[a.getAttributeNames().join(' '), a.getAttribute('href'), "
                            "a.textContent])") == links
    assert_clean(server)  # no "Maximum call stack size exceeded"


# What the preview shows must be what the server publishes (sanitising.render): CommonMark's
# flanking rules for * and _ next to punctuation, and the linkifier's boundaries.
PARITY = [
    "这是**“重点”**内容",
    "请看**《规划》**的第三条",
    "详见https://example.com/路径，谢谢",
    "详见 https://example.com/路径，谢谢。",
    "这是 **“重点”** 内容",
    "**重点**内容，*强调*。",
    "中文_下划线_中文 and snake_case_name",
    "好**😀**好，**😀**",
    "***both*** and *a **b** c*",
    "See https://example.com/a_(b)). Done.",
    "Visit https://example.com/p?q=1&x=2, thanks",
    "（https://example.com/路径）",
    "https://例子.测试/路径！",
    "[`code` *em*](https://x.com/) `a*b*` ``x ` y``",
    "**a\nb** c",
    "> 引用 *文字*\n\n- **一** 项\n- 二",
    # A line after a list item or a quoted line, starting no block, carries on its text.
    "- 一项\n接着写",
    "- a\n- b\n  c\nd",
    "1. 第一\n续行\n2. 第二",
    "> 引用\n续行",
    "> a\nb\n> c",
    "> - item\nlazy",
    "> a\n>\nb",
    "- a\n\nb",
    "p\n2. x",
    "* a\n+ b",
    "```\ncode\n```\n> q",
]


def test_preview_matches_what_the_server_publishes(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, ZH_POST)
    textarea = page.locator(".cm-widget > .cm-form textarea")
    preview = page.locator(".cm-widget > .cm-form .cm-preview-body")

    def look(text: str) -> tuple[str, int, list[str]]:
        textarea.fill(text)  # the preview updates on input, at once
        return (preview.inner_text(), preview.locator("strong").count(),
                preview.locator("a").all_inner_texts())

    assert [look(text) for text in PARITY[:4]] == [
        ("这是**“重点”**内容", 0, []),
        ("请看**《规划》**的第三条", 0, []),
        ("详见https://example.com/路径，谢谢", 0, []),
        ("详见 https://example.com/路径，谢谢。", 0, ["https://example.com/路径，谢谢"]),
    ]
    serialise = "h => { const t = document.createElement('template'); t.innerHTML = h; " \
        "return t.innerHTML; }"
    differ = []
    for text in PARITY:
        textarea.fill(text)
        published = page.evaluate(serialise, re.sub(r">\n", ">", render(normalise(text))))
        shown = preview.inner_html()
        if shown != published:
            differ.append((text, shown, published))
    assert differ == []
    assert_clean(server)


def test_preview_keeps_many_unbalanced_closing_parens_out_of_the_link(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    textarea = page.locator(".cm-widget > .cm-form textarea")
    preview = page.locator(".cm-widget > .cm-form .cm-preview-body")
    serialise = "h => { const t = document.createElement('template'); t.innerHTML = h; " \
        "return t.innerHTML; }"
    for text in ["https://a.b/" + ")" * 9988, "https://a.b/(x" + ")" * 500 + ".",
                 "See https://a.b/((c)d)" + ")" * 300 + "!?)", "https://a.b/" + "(" * 3 + ")" * 3]:
        textarea.fill(text)
        url = re.match(r"https?://\S*", text[text.index("http"):]).group()  # type: ignore[union-attr]
        opens = url.count("(")
        # What the server does: drop trailing punctuation and each ")" beyond the "(" count.
        while url and (url[-1] in ".!?" or (url[-1] == ")" and url.count(")") > opens)):
            url = url[:-1]
        expect(preview.locator("a")).to_have_count(1)
        assert preview.locator("a").get_attribute("href") == url
        assert preview.inner_text() == text
        published = page.evaluate(serialise, re.sub(r">\n", ">", render(normalise(text))))
        assert preview.inner_html() == published
    assert_clean(server)


def test_replies_below_the_depth_caps_name_their_real_parent(
    live: Callable[..., Live], browser: Any
) -> None:
    from datetime import timedelta

    from moderation.db import Status, Thread, utcnow

    server = live()
    # A chain of 40 replies goes past the server's depth cap (32) as well as the widget's (3).
    # Written straight to the database: posting 40 comments would meet the rate limits.
    removed = {5, 35}  # placeholders: each still has a published reply
    with server.app.app_context():
        thread = db.session.execute(select(Thread).where(Thread.uri == EN_POST)).scalar_one()
        start = utcnow() - timedelta(hours=1)
        parent: Comment | None = None
        ids: list[int] = []
        for n in range(1, 41):
            text = f"Chain message number {n} here"
            row = Comment(site_id=thread.site_id, thread_id=thread.id, author=f"Person{n}",
                          text=text, html=f"<p>{text}</p>",
                          status=Status.DELETED if n in removed else Status.PUBLISHED,
                          parent_id=parent.id if parent else None,
                          root_id=(parent.root_id or parent.id) if parent else None,
                          created_at=start + timedelta(seconds=n))
            db.session.add(row)
            db.session.flush()
            parent = row
            ids.append(row.id)
        db.session.commit()
    assert comments.MAX_DEPTH < 35

    page = server.open(browser, EN_POST + "?max_depth=3")
    expect(item(page, "Chain message number 40 here")).to_have_count(1)
    shown = dict(page.locator(".cm-item").evaluate_all("""items => items.map(li => {
        const to = li.querySelector(':scope > .cm-comment .cm-replyto');
        const a = to && to.querySelector('a');
        return [li.id, [li.querySelector(':scope > .cm-comment .cm-body').textContent.trim(),
                        to && to.textContent, a && a.getAttribute('href')]];
    })"""))
    for n in range(1, 41):
        key = f"cm-{ids[n - 1]}"
        if n in removed:
            # 5 stays as a placeholder; 35, below the server's cap, may be pruned from the JSON.
            assert shown.get(key, [None])[0] in (
                ["This comment was removed."] + ([None] if n > comments.MAX_DEPTH else [])), n
            continue
        body, replyto, href = shown[key]
        assert body == f"Chain message number {n} here", n
        if n <= 3:  # nested under their parent: no pointer
            assert (replyto, href) == (None, None), n
        elif n - 1 in removed:  # it links to the placeholder, when there is one
            parent_key = f"cm-{ids[n - 2]}"
            assert (replyto, href) == ("in reply to a removed comment",
                                       "#" + parent_key if parent_key in shown else None), n
        else:
            assert (replyto, href) == (f"in reply to Person{n - 1}", f"#cm-{ids[n - 2]}"), n
    # Past level 3 every reply is listed flat beside its level-3 ancestor.
    expect(page.locator(".cm-replies .cm-replies .cm-replies")).to_have_count(0)
    assert unique_ids(page)
    assert_clean(server)


# -- what a reader sees when things go wrong, keyboard focus, order and layout ---------------


def test_rejected_edit_keeps_the_comment_in_place_and_says_so(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    post(page, "A calm note about bread prices.", author="Ana")
    status = page.locator(".cm-widget > .cm-form .cm-status")
    expect(status).to_have_text("Your comment is published.")
    expect(page.locator(".cm-title")).to_have_text("6 comments")
    mine = page.locator("#" + item(page, "A calm note").get_attribute("id"))
    mine.locator(":scope > .cm-comment .cm-edit").click()
    mine.locator(".cm-editform textarea").fill("On second thought, you are an idiot.")
    mine.locator(".cm-editform button[type=submit]").click()

    # The comment keeps its place, saying what happened; the reader's text is still there.
    message = mine.locator(":scope > .cm-comment > .cm-bad")
    expect(message).to_have_text(
        "Your edit was not accepted, so this comment is now hidden from other readers. "
        "Moderators can still see it and may restore it.")
    expect(message).to_be_visible()
    expect(message).to_be_focused()
    assert mine.locator(".cm-editform textarea").input_value() == (
        "On second thought, you are an idiot.")
    expect(mine.get_by_text("A calm note")).to_have_count(0)
    expect(mine.locator(":scope > .cm-comment .cm-actions button")).to_have_count(0)
    expect(mine.get_by_role("button", name="Save")).to_have_count(0)
    expect(status).to_have_text("")  # no longer "Your comment is published."
    expect(page.locator(".cm-title")).to_have_text("5 comments")
    assert server.comments()[-1].status == "rejected"
    shot(page, "en-light-rejected-edit")

    mine.get_by_role("button", name="Close").click()
    expect(mine.locator(".cm-editform")).to_have_count(0)
    expect(message).to_be_focused()
    page.reload()
    page.wait_for_selector(".cm-loading", state="hidden")
    expect(page.get_by_text("A calm note")).to_have_count(0)
    expect(page.get_by_text("you are an idiot")).to_have_count(0)
    assert page.evaluate("localStorage.getItem('moderation-comments:own')") == "{}"
    assert_clean(server)


@pytest.mark.parametrize(("path", "fields"), [
    (ZH_POST, {"email": ("a@b", "邮箱：请填写有效的邮箱地址，例如 name@example.com。"),
               "website": ("javascript:alert(1)", "网站：请填写有效的网址（http:// 或 https://）。")}),
    (EN_POST, {"email": ("a@b", "Email: must have a domain name with a dot"),
               "website": ("javascript:alert(1)", "Website: must start with http:// or https://")}),
], ids=["zh", "en"])
def test_field_errors_are_in_the_widgets_language(
    live: Callable[..., Live], browser: Any, path: str, fields: dict[str, tuple[str, str]]
) -> None:
    server = live()
    page = server.open(browser, path)
    form = page.locator(".cm-widget > .cm-form")
    for name, (value, shown) in fields.items():
        for other in fields:
            form.locator(f"[name={other}]").fill(value if other == name else "")
        post(page, "A comment with a typo in one field.")
        expect(form.locator(f".cm-field-{name} .cm-error")).to_have_text(shown)
        expect(form.locator(f"[name={name}]")).to_be_focused()
    assert len(server.comments()) == 9  # nothing stored
    assert_clean(server)


def test_sort_change_that_fails_keeps_the_list_and_its_pages(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST + "?per_page=2")
    roots = page.locator(".cm-list > .cm-item > .cm-comment .cm-author")
    sort = page.get_by_label("Sort")
    more = page.get_by_role("button", name="Load more comments")
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes"])
    page.context.set_offline(True)
    sort.select_option("newest")
    expect(page.locator(".cm-loading")).to_have_text("Comments could not be loaded. Retry")
    # Nothing changed: the list, its heading, Load more, and the order it is in.
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes"])
    expect(page.locator(".cm-title")).to_have_text("5 comments")
    expect(more).to_be_visible()
    expect(sort).to_have_value("oldest")

    page.context.set_offline(False)
    more.click()
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes", "Priya S."])
    expect(more).to_be_hidden()
    sort.select_option("newest")
    expect(roots).to_have_text(["Priya S.", "Daniel Reyes"])
    page.context.set_offline(True)
    sort.select_option("oldest")
    expect(page.locator(".cm-loading")).to_be_visible()
    page.context.set_offline(False)
    page.locator(".cm-loading").get_by_role("button", name="Retry").click()
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes"])
    expect(sort).to_have_value("oldest")
    expect(page.locator(".cm-loading")).to_be_hidden()
    more.click()
    expect(roots).to_have_text(["Maria Okafor", "Daniel Reyes", "Priya S."])
    assert_clean(server)


def test_a_sort_change_during_load_more_clears_its_loading_note(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST + "?per_page=1")
    stalled: list[Any] = []
    page.route(lambda url: "cursor=" in url, lambda route: stalled.append(route))
    page.get_by_role("button", name="Load more comments").click()
    expect(page.locator(".cm-more-status")).to_have_text("Loading comments…")
    page.route(lambda url: "sort=newest" in url, lambda route: route.abort())
    page.get_by_label("Sort").select_option("newest")
    expect(page.locator(".cm-loading")).to_have_text("Comments could not be loaded. Retry")
    # The stalled page belongs to a load that was taken over: nothing says it is coming.
    expect(page.locator(".cm-more-status")).to_have_text("")
    assert stalled
    assert_clean(server)


@pytest.mark.parametrize(("path", "failed"), [
    (EN_POST, "Could not load more comments. Retry"),
    (ZH_POST, "更多评论加载失败。 重试"),
], ids=["en", "zh"])
def test_load_more_that_fails_says_so_beside_the_button_and_focus_moves_on(
    live: Callable[..., Live], browser: Any, path: str, failed: str
) -> None:
    server = live()
    page = server.open(browser, path + "?per_page=1")
    roots = page.locator(".cm-list > .cm-item")
    expect(roots).to_have_count(1)
    more = page.locator(".cm-more")
    more.focus()
    page.context.set_offline(True)
    page.keyboard.press("Enter")
    beside = page.locator(".cm-more + .cm-more-status")
    expect(beside).to_have_text(failed)
    assert beside.get_attribute("role") == "status"
    expect(page.locator(".cm-loading")).to_be_hidden()  # nothing at the top of the thread
    expect(more).to_be_focused()
    box, note = more.bounding_box(), beside.bounding_box()
    assert 0 <= note["y"] - (box["y"] + box["height"]) < 40  # type: ignore[index]
    shot(page, f"{'zh' if path == ZH_POST else 'en'}-load-more-failed")

    page.context.set_offline(False)
    beside.get_by_role("button").click()
    expect(roots).to_have_count(2)
    expect(beside).to_have_text("")
    # Focus goes to the first comment the page brought, not to <body>.
    expect(roots.nth(1).locator(":scope > .cm-comment")).to_be_focused()
    if path == EN_POST:  # three top-level comments: once more, and the button goes
        more.focus()
        page.keyboard.press("Enter")
        expect(roots).to_have_count(3)
        expect(more).to_be_hidden()
        expect(roots.nth(2).locator(":scope > .cm-comment")).to_be_focused()
    assert_clean(server)


def test_live_replies_below_the_depth_cap_come_in_the_order_a_reload_shows(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST + "?max_depth=2")
    flat = page.locator(".cm-list > .cm-item > .cm-replies > .cm-item > .cm-comment .cm-body")
    expect(flat).to_have_count(2)

    def reply(to: str, text: str) -> None:
        item(page, to).locator(":scope > .cm-comment .cm-reply").click()
        post(page, text, scope=".cm-slot .cm-form")
        expect(item(page, text)).to_have_count(1)

    reply("Agreed, though the 2018", "First reply to Tom.")
    reply("Agreed, though the 2018", "Second reply to Tom.")
    reply("Staples have thinner margins", "A reply to the staples point.")
    reply("First reply to Tom.", "A reply to the first reply.")
    shown = flat.all_inner_texts()
    assert [t.split(".")[0] for t in shown] == [
        "Agreed, though the 2018 washing-machine study covered a market with very few "
        "domestic producers", "Fair point", "A reply to the staples point",
        "First reply to Tom", "A reply to the first reply", "Second reply to Tom"]
    page.reload()
    page.wait_for_selector(".cm-loading", state="hidden")
    expect(flat).to_have_text(shown)
    assert_clean(server)


def test_own_held_comments_come_back_in_the_order_they_were_written(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    post(page, "A borderline remark, the first.")
    expect(page.locator(".cm-badge")).to_have_count(1)
    post(page, "A borderline remark, the second.")
    expect(page.locator(".cm-badge")).to_have_count(2)
    first, second = (c.id for c in server.comments()[-2:])
    # The answer about the first comes in last.
    held: list[Any] = []
    page.route(f"{server.api_origin}/api/v1/comments/{first}", lambda route: (
        held.append(route) if route.request.method == "GET" else route.continue_()))
    with page.expect_response(lambda r: r.url.endswith(f"/comments/{second}")
                              and r.request.method == "GET"):
        page.reload()
    page.wait_for_timeout(200)
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator(".cm-badge")).to_have_count(2)
    roots = page.locator(".cm-list > .cm-item > .cm-comment .cm-body")
    expect(roots).to_have_text([re.compile("pass-through rates"), re.compile("small bakery"),
                                re.compile("exemption list"), "A borderline remark, the first.",
                                "A borderline remark, the second."])
    assert_clean(server)


def test_published_lists_have_filled_bullets_and_numbers(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    post(page, "Prices:\n\n- bread\n- flour\n  - rye\n  - wheat\n\n1. first\n2. second")
    body = page.locator(".cm-own .cm-body")
    expect(body.locator("ul ul li")).to_have_count(2)
    styles = body.evaluate("b => Array.from(b.querySelectorAll('ul, ol'), "
                           "l => [l.tagName, getComputedStyle(l).listStyleType])")
    assert styles == [["UL", "disc"], ["UL", "disc"], ["OL", "decimal"]]
    assert_clean(server)


def test_an_error_under_one_field_leaves_the_others_in_line(
    live: Callable[..., Live], browser: Any
) -> None:
    server = live()
    page = server.open(browser, EN_POST)
    form = page.locator(".cm-widget > .cm-form")
    names = ("author", "email", "website")

    def tops(selector: str) -> list[float]:
        """Where each field's label or input starts, from the top of their row."""
        return form.locator(".cm-row").evaluate(
            "(f, [names, sel]) => names.map(n => f.querySelector(`.cm-field-${n} ${sel}`)"
            ".getBoundingClientRect().top - f.getBoundingClientRect().top)", [names, selector])

    labels, inputs = tops("label"), tops("input")
    assert len(set(labels)) == 1 and len(set(inputs)) == 1, (labels, inputs)
    form.locator("[name=website]").fill("javascript:alert(1)")
    post(page, "A comment with a bad website.")
    expect(form.locator(".cm-field-website .cm-error")).to_be_visible()
    assert (tops("label"), tops("input")) == (labels, inputs)
    shot(page, "en-light-field-error")
    assert_clean(server)
