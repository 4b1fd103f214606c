"""Demo blog posts that embed the widget from another origin, and the CLI that seeds them."""

from __future__ import annotations

import re
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import click
from flask import Blueprint, Response, abort, current_app, render_template, request
from flask.cli import AppGroup
from sqlalchemy import func, select

from . import comments
from .cli import origin_option
from .db import Comment, Site, Status, Thread, db, utcnow

bp = Blueprint("demo", __name__, url_prefix="/demo")
demo_cli = AppGroup("demo", help="Serve and seed the demo blog posts.")

DEMO_SITE_NAME = "Demo blog"
LOOPBACK_TWINS = {"localhost": "127.0.0.1", "127.0.0.1": "localhost"}
# data-* options of the snippet a demo post takes from its query string (?max_depth=2 ...).
WIDGET_OPTIONS = ("lang", "sort", "max-depth", "theme", "per-page")


@dataclass(frozen=True)
class Post:
    """One demo blog post: where it lives, its template and its title."""

    uri: str
    template: str
    title: str
    lang: str


POSTS = {
    "en": Post("/demo/posts/tariffs-and-the-grocery-bill", "demo/post_en.html",
               "Who really pays for the new tariffs?", "en"),
    "zh": Post("/demo/zh/posts/old-neighbourhood-renewal", "demo/post_zh.html",
               "老旧小区改造，居民的声音在哪里？", "zh-CN"),
}


def twin_origin(origin: str) -> str:
    """Return the origin with localhost and 127.0.0.1 swapped (same scheme and port)."""
    parts = urllib.parse.urlsplit(origin)
    twin = LOOPBACK_TWINS.get(parts.hostname or "")
    if twin is None:
        return origin.rstrip("/")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{twin}{port}"


def api_origin() -> str:
    """Return the origin the demo pages load the widget from: configured, else the twin."""
    configured = str(current_app.config.get("DEMO_API_ORIGIN") or "")
    return configured.rstrip("/") or twin_origin(request.host_url)


def demo_site() -> Site | None:
    """Return the demo site created by `flask demo seed`, if there is one."""
    query = select(Site).where(Site.name == DEMO_SITE_NAME).order_by(Site.id).limit(1)
    return db.session.execute(query).scalar_one_or_none()


def _page(template: str, **context: object) -> Response:
    origin = api_origin()
    site = demo_site()
    body = render_template(template, site=site, api=origin, posts=POSTS, **context)
    response = Response(body, mimetype="text/html")
    # The same policy a careful blog would set: the widget needs only script, style and fetch.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {origin}; style-src 'self' {origin}; "
        f"connect-src 'self' {origin}; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return response


def widget_options() -> dict[str, str]:
    """Return the widget options given in the query string, to try them on a demo post."""
    options = {}
    for name in WIDGET_OPTIONS:
        value = request.args.get(name.replace("-", "_"), "")
        if re.fullmatch(r"[\w-]{1,10}", value):
            options[name] = value
    return options


@bp.get("/")
def index() -> Response:
    """Show the English demo blog's front page, with comment counts."""
    return _page("demo/index.html", lang="en")


@bp.get("/zh/")
def index_zh() -> Response:
    """Show the Chinese-interface demo blog's front page, with comment counts."""
    return _page("demo/index_zh.html", lang="zh-CN")


@bp.get("/posts/<slug>")
@bp.get("/zh/posts/<slug>")
def post(slug: str) -> Response:
    """Show a demo post with the embed snippet under it."""
    for item in POSTS.values():
        if item.uri == request.path:
            return _page(item.template, post=item, lang=item.lang, options=widget_options())
    abort(404)


# -- seeding --------------------------------------------------------------------------------

# (ref, reply-to ref, author, website, text, hours ago) per post; replies follow their parent.
SEED: dict[str, list[tuple[str, str | None, str, str, str, float]]] = {
    "en": [
        ("a", None, "Maria Okafor", "",
         "The section on pass-through rates is the clearest explanation I've read. Most "
         "coverage just says \"consumers pay\" without showing the numbers.", 30),
        ("b", "a", "Tom H.", "https://tomh.example",
         "Agreed, though the 2018 washing-machine study covered a market with very few "
         "domestic producers. Would food prices behave the same way?", 27),
        ("c", "b", "Maria Okafor", "",
         "Fair point. Staples have thinner margins, so I'd expect *more* of the cost to reach "
         "shelves, not less.", 25),
        ("d", None, "Daniel Reyes", "",
         "I run a small bakery. Flour is up 11% since spring and I can't tell how much of that "
         "is tariffs and how much is the harvest. Would love a follow-up on that.", 9),
        ("e", None, "Priya S.", "",
         "Worth adding: the exemption list is where the real lobbying happens. Look at which "
         "products dropped off it between the draft and the final bill.", 2.5),
    ],
    "zh": [
        ("a", None, "老周", "",
         "我们小区去年加装了电梯，最难的不是钱，是一楼和六楼的住户谈不拢。文章说到点子上了。", 40),
        ("b", "a", "林晓", "",
         "同感。我们那儿最后是街道出面开了三次协调会，低层住户的补偿方案公开以后才签下来。", 36),
        ("c", None, "Chen Wei", "https://chenwei.example",
         "希望能多写写资金来源。中央补助、地方配套、居民自筹各占多少，很多人其实不清楚。", 12),
        ("d", "c", "小雨", "",
         "附议。公示材料里往往只有总额，没有明细。", 6),
    ],
}


# Submissions that arrive after the sample thread and go through the policy as any reader's
# would, so the dashboard opens with something to moderate: (author, website, text, hours ago).
# With the shipped model the link spam is rejected (Spam / rejected) and the rest are held.
INCOMING: dict[str, list[tuple[str, str, str, float]]] = {
    "en": [
        ("Lucky Win 888", "https://best-casino-bonus.example",
         "Great article! I made $500 last week from home, check out my site for free spins and "
         "bonus codes: https://best-casino-bonus.example", 1.5),
        ("Realist", "",
         "Only an idiot would believe these numbers. Did you even read your own sources, or do "
         "you just make things up?", 1),
    ],
    "zh": [
        ("兼职赚钱", "", "加微信 abc12345 日赚500元，免费领取福利！", 2),
        ("看不下去", "", "作者就是个脑残，写的什么垃圾文章，滚吧。", 0.5),
    ],
}


def ensure_site(origins: tuple[str, ...]) -> Site:
    """Return the demo site, creating it or adding missing origins (and their loopback twins)."""
    wanted: list[str] = []
    for origin in origins:
        for value in (origin.rstrip("/"), twin_origin(origin)):
            if value not in wanted:
                wanted.append(value)
    site = demo_site()
    if site is None:
        site = Site(name=DEMO_SITE_NAME, origins=wanted, settings={})
        db.session.add(site)
    else:
        site.origins = list(site.origins or []) + [o for o in wanted if o not in site.origins]
    db.session.commit()
    return site


def _send(site: Site, item: Post, client: comments.Client, author: str, website: str,
          text: str, hours: float, parent: int | None = None, approve: bool = False) -> Comment:
    """Submit one comment to a demo post as posted ``hours`` ago, through the real policy
    (approved afterwards if told to), and return it."""
    from .api import pipeline

    payload = {"site": site.key, "uri": item.uri, "title": item.title, "author": author,
               "website": website, "text": text, "parent": parent}
    submission = comments.submit(payload, client, pipeline(), site=site, actor="system")
    comment = db.session.get_one(Comment, submission.comment.id)
    if approve and comment.status != Status.PUBLISHED:
        comments.moderate(comment, "approve", "system", "demo seed")
    comment.created_at = utcnow() - timedelta(hours=hours)
    if comment.decided_at is not None:
        comment.decided_at = comment.created_at
    db.session.commit()
    return comment


def seed_comments(site: Site, incoming: bool = True) -> Counter[str]:
    """Add the sample thread and (unless told not to) the incoming submissions to each demo post
    that has no comments yet; return how many comments were added, per status ("published",
    "pending", "spam")."""
    added: Counter[str] = Counter()
    client = comments.Client("127.0.0.1", "flask demo seed")
    for key, rows in SEED.items():
        item = POSTS[key]
        existing = db.session.execute(
            select(func.count(Comment.id)).join(Thread, Comment.thread_id == Thread.id)
            .where(Thread.site_id == site.id, Thread.uri == item.uri)
        ).scalar_one()
        if existing:
            continue
        ids: dict[str, int] = {}
        for ref, parent, author, website, text, hours in rows:
            comment = _send(site, item, client, author, website, text, hours,
                            parent=ids.get(parent or ""), approve=True)
            ids[ref] = comment.id
            added[str(comment.status)] += 1
        for author, website, text, hours in INCOMING[key] if incoming else ():
            added[str(_send(site, item, client, author, website, text, hours).status)] += 1
    return added


def _added_line(added: Counter[str]) -> str:
    """Say what seeding added, by where it went: "Added 9 sample comments and 4 ..."."""
    thread = added.pop("published", 0)
    queued = ", ".join(f"{n} {status}" for status, n in sorted(added.items()))
    return (f"Added {thread} sample comments"
            + (f" and {sum(added.values())} for the moderation queue ({queued})." if added
               else "."))


@demo_cli.command("seed")
@click.option("--origin", "origins", multiple=True, default=("http://localhost:5000",),
              show_default=True, help="Origin the demo pages are opened on (repeatable).")
@click.option("--api-origin", default="",
              help="Origin serving embed.js in the printed snippet [default: the other "
              "loopback name of the first --origin].")
@click.option("--queue/--no-queue", default=True, show_default=True,
              help="Also send the sample submissions that the policy holds or rejects.")
def seed(origins: tuple[str, ...], api_origin: str, queue: bool) -> None:
    """Create the demo site and sample comments (safe to run again), then print the snippet."""
    # As browsers send them, or refused naming the option.
    origins = tuple(origin_option(origin) for origin in origins)
    api = origin_option(api_origin, "--api-origin") if api_origin else twin_origin(origins[0])
    site = ensure_site(origins)
    added = seed_comments(site, incoming=queue)
    click.echo(f"Demo site {site.name!r}, key {site.key}")
    click.echo(f"Allowed origins: {', '.join(site.origins)}")
    click.echo(_added_line(added) if added else "Sample comments already there.")
    click.echo("Embed snippet:")
    click.echo(f'<div id="comments"></div><script src="{api}/embed.js" data-site="{site.key}" '
               "async></script>")
    if not current_app.config["DEMO"]:
        click.echo(f"Serve with MODERATION_DEMO=true, then open {origins[0].rstrip('/')}/demo/.")
