"""Numbers for the stats page and the server-rendered SVG charts that draw them."""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    any_,
    case,
    cast,
    false,
    func,
    or_,
    select,
    union,
)

from .db import Comment, ModerationEvent, Site, Status, db, utcnow

OUTCOMES = (Status.PUBLISHED, Status.PENDING, Status.SPAM, Status.REJECTED, Status.DELETED)
BINS = 20
WIDTH, HEIGHT = 640, 240
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 12, 16, 40


@dataclass(frozen=True)
class Window:
    """The days a stats page covers and the sites it counts."""

    allowed_sites: tuple[int, ...] | None
    site_id: int | None
    days: int = 30

    @property
    def first(self) -> date:
        """Return the first day shown."""
        return utcnow().date() - timedelta(days=self.days - 1)

    def dates(self) -> list[date]:
        """Return every day shown, oldest first."""
        return [self.first + timedelta(days=i) for i in range(self.days)]

    def sites(self, rows: Any = Comment) -> list[ColumnElement[bool]]:
        """Return the site conditions for queries on ``rows``: comments, or the audit trail
        (a ModerationEvent, an alias or a subquery's columns)."""
        where: list[ColumnElement[bool]] = []
        if self.allowed_sites is not None:
            where.append(rows.site_id.in_(self.allowed_sites) if self.allowed_sites else false())
        if self.site_id is not None:
            where.append(rows.site_id == self.site_id)
        return where


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _day(value: Any) -> str:
    return str(value)[:10]


def per_day(window: Window) -> dict[str, dict[str, int]]:
    """Return, per day, how many comments were submitted and where they stand now."""
    day = func.date(Comment.created_at)
    rows = db.session.execute(
        select(day, Comment.status, func.count(Comment.id))
        .where(*window.sites(), Comment.created_at >= _start(window.first))
        .group_by(day, Comment.status)
    ).all()
    out: dict[str, dict[str, int]] = {d.isoformat(): {} for d in window.dates()}
    for when, status, n in rows:
        out.setdefault(_day(when), {})[status] = int(n)
    return out


def shares(
    window: Window, thresholds: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float | None]]:
    """Return, per day, the share of comments scoring at or above each hold threshold."""
    day = func.date(Comment.created_at)
    spam_hold = float(thresholds["spam"]["hold"])
    toxic_hold = float(thresholds["toxicity"]["hold"])
    rows = db.session.execute(
        select(
            day,
            func.count(Comment.id),
            func.sum(cast(Comment.spam_score >= spam_hold, Integer)),
            func.sum(cast(Comment.toxicity_score >= toxic_hold, Integer)),
        )
        .where(*window.sites(), Comment.created_at >= _start(window.first),
               Comment.spam_score.is_not(None))
        .group_by(day)
    ).all()
    out: dict[str, dict[str, float | None]] = {
        d.isoformat(): {"spam": None, "toxicity": None} for d in window.dates()
    }
    for when, total, spam, toxic in rows:
        if total:
            out[_day(when)] = {"spam": (spam or 0) / total, "toxicity": (toxic or 0) / total}
    return out


def held_periods(
    window: Window, decided_from: datetime, held_before: datetime | None = None,
    waiting_too: bool = False,
) -> list[tuple[datetime, datetime | None]]:
    """Return when comments were held for a moderator and when each was decided.

    Taken from the audit trail, not from ``Comment.decided_at`` (which every later action
    moves, so a published comment moderated afterwards would look as if it had waited): a
    wait starts with an entry that puts a comment in the pending queue (its submission, or an
    author's edit that holds it again) and ends with the comment's next entry that takes it
    out. Waits ended from ``decided_from`` on are returned, and with ``waiting_too`` also
    those not ended yet (decided None). A click that was undone and the entry of its undo are
    left out: Undo put the comment back where it was, so a held comment's wait goes on through
    them, as if the click had not been made.

    The cost follows the window, not the whole audit trail: only the trails of comments with
    an entry taking them out of the queue from ``decided_from`` on (found through the
    ``created_at`` index), and with ``waiting_too`` of the comments pending now, are read. A
    wait still open is one with no later entry out of the queue, so its comment is pending
    now: every status change writes an entry, from the comment's status, in the same commit.
    Each entry's end (the earliest later entry out of the queue) is computed once, by a
    window function over the comment's trail.
    """
    event = ModerationEvent
    leaves = and_(event.to_status.is_not(None), event.to_status != Status.PENDING)
    # Each undo entry goes with the click it undid (marked undone in the same commit), so the
    # trail without both still runs from status to status.
    counted = and_(event.action != "undo", event.details["undone"].as_boolean().is_not(True))
    # An entry's site is its comment's, so the site conditions may narrow the search here.
    comments = select(event.comment_id).where(
        event.created_at >= decided_from, event.comment_id.is_not(None), leaves, counted,
        *window.sites(event),
    )
    if waiting_too:
        pending = select(Comment.id).where(*window.sites(), Comment.status == Status.PENDING)
        if not window.sites():
            # Naming every site lets the (site, status, created) index find the pending
            # comments instead of a scan of them all.
            pending = pending.where(Comment.site_id.in_(select(Site.id)))
        comments = union(comments, pending)
    if db.session.get_bind().dialect.name == "postgresql":
        # An array of ids is read with one scan of the comment index; for IN (subquery) the
        # planner may choose a hash join over the whole audit trail instead.
        ids = func.array(comments.scalar_subquery())
        among: ColumnElement[bool] = event.comment_id == any_(ids)
    else:
        among = event.comment_id.in_(comments)
    trail = (
        select(
            event.site_id,
            event.from_status,
            event.to_status,
            event.created_at.label("held"),
            func.min(case((leaves, event.created_at)))
            .over(partition_by=event.comment_id, order_by=event.id.desc(), rows=(None, -1))
            .label("decided"),
        )
        .where(among, counted)
        .subquery()
    )
    held = [
        trail.c.to_status == Status.PENDING,
        or_(trail.c.from_status.is_(None), trail.c.from_status != Status.PENDING),
        *window.sites(trail.c),
    ]
    if held_before is not None:
        held.append(trail.c.held < held_before)
    ended = trail.c.decided >= decided_from
    held.append(or_(trail.c.decided.is_(None), ended) if waiting_too else ended)
    rows = db.session.execute(select(trail.c.held, trail.c.decided).where(*held)).all()
    return [(held_at, decided_at) for held_at, decided_at in rows]


def queue_sizes(window: Window) -> dict[str, int]:
    """Return how many comments were waiting for a moderator at the end of each day."""
    first_end = _start(window.first + timedelta(days=1))
    last_end = _start(window.dates()[-1] + timedelta(days=1))
    # Only held comments matter: the rest were decided the moment they were stored.
    rows = held_periods(window, first_end, held_before=last_end, waiting_too=True)
    # Waiting at ``end``: held before it and not decided before it. Counted with two sorted
    # lists rather than a pass over every wait per day: the held ones, less those held and
    # decided before it (both before it means the later of the two is).
    held = sorted(created for created, _ in rows)
    over = sorted(max(created, decided) for created, decided in rows if decided is not None)
    out: dict[str, int] = {}
    for day in window.dates():
        end = _start(day + timedelta(days=1))
        out[day.isoformat()] = bisect_left(held, end) - bisect_left(over, end)
    return out


def decision_hours(window: Window) -> dict[str, float | None]:
    """Return, per day, the median hours held comments waited for a moderator's decision."""
    rows = held_periods(window, _start(window.first))
    waits: dict[str, list[float]] = {}
    for created, decided in rows:
        if decided is None:  # excluded by the query; keeps the type checker informed
            continue
        waits.setdefault(decided.date().isoformat(), []).append(
            (decided - created).total_seconds() / 3600
        )
    return {
        d.isoformat(): (statistics.median(waits[d.isoformat()]) if d.isoformat() in waits
                        else None)
        for d in window.dates()
    }


def histogram(window: Window, column: Any) -> list[int]:
    """Return the counts of a score in equal bins from 0 to 1 over the window."""
    scaled = column * BINS
    if db.session.get_bind().dialect.name == "postgresql":
        bucket: Any = cast(func.floor(scaled), Integer)
    else:
        bucket = cast(scaled, Integer)  # SQLite truncates, and scores are never negative
    rows = db.session.execute(
        select(bucket, func.count(Comment.id))
        .where(*window.sites(), Comment.created_at >= _start(window.first),
               column.is_not(None))
        .group_by(bucket)
    ).all()
    bins = [0] * BINS
    for index, n in rows:
        bins[min(max(int(index), 0), BINS - 1)] += int(n)
    return bins


def decided_outcomes(window: Window) -> dict[str, int]:
    """Return the totals per status over the window."""
    totals: dict[str, int] = {}
    for counts in per_day(window).values():
        for status, n in counts.items():
            totals[status] = totals.get(status, 0) + n
    return totals


# -- SVG ------------------------------------------------------------------------------------


def _nice_max(value: float) -> float:
    """Return a round axis maximum at or above value whose quarters are round too."""
    if value <= 0:
        return 1.0
    magnitude = 0.1
    while True:
        for step in (4, 8, 12, 16, 20, 40, 60, 80):
            if value <= step * magnitude:
                return round(step * magnitude, 6)
        magnitude *= 10


def _frame(title: str, summary: str, body: list[str], ident: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{ident}-t {ident}-d" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{ident}-t">{escape(title)}</title>'
        f'<desc id="{ident}-d">{escape(summary)}</desc>' + "".join(body) + "</svg>"
    )


def _axes(
    y_max: float, labels: Sequence[str], percent: bool = False, every: int | None = None
) -> list[str]:
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    out = []
    for i in range(5):
        value = y_max * i / 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        text = f"{value:.0%}" if percent else (f"{value:g}" if value < 10 else f"{value:.0f}")
        out.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" '
                   f'y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{text}</text>')
    step = every or max(1, len(labels) // 6)
    slot = plot_w / max(len(labels), 1)
    for i, label in enumerate(labels):
        if label and (i % step == 0 or (every is None and i == len(labels) - 1)):
            x = PAD_LEFT + slot * (i + 0.5)
            out.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" '
                       f'text-anchor="middle">{escape(label)}</text>')
    return out


def _legend(items: Sequence[tuple[str, str]]) -> list[str]:
    out, x = [], PAD_LEFT
    for name, css in items:
        out.append(f'<rect class="{css}" x="{x}" y="{HEIGHT - 14}" width="10" height="10"/>')
        out.append(f'<text class="legend" x="{x + 14}" y="{HEIGHT - 5}">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return out


def stacked_bars(
    ident: str, title: str, days: Sequence[str], series: Sequence[tuple[str, str, list[float]]]
) -> Markup:
    """Draw one stacked bar per day, one colour per series."""
    totals = [sum(values[i] for _, _, values in series) for i in range(len(days))]
    y_max = _nice_max(max(max(totals, default=0), 4))
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(len(days), 1)
    body = _axes(y_max, [d[5:] for d in days])
    for i, day in enumerate(days):
        y = float(PAD_TOP + plot_h)
        for name, css, values in series:
            if not values[i]:
                continue
            h = plot_h * values[i] / y_max
            y -= h
            body.append(
                f'<rect class="{css}" x="{PAD_LEFT + slot * i + slot * 0.15:.1f}" y="{y:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{h:.1f}"><title>{day} {escape(name)}: '
                f'{values[i]:g}</title></rect>'
            )
    body += _legend([(name, css) for name, css, _ in series])
    summary = f"{sum(totals):g} in {len(days)} days; " + ", ".join(
        f"{name} {sum(values):g}" for name, _, values in series
    )
    return _frame(title, summary, body, ident)


def lines(
    ident: str,
    title: str,
    days: Sequence[str],
    series: Sequence[tuple[str, str, list[float | None]]],
    percent: bool = False,
    unit: str = "",
) -> Markup:
    """Draw one line per series over the days; missing values break the line."""
    peak = max((v for _, _, vals in series for v in vals if v is not None), default=0.0)
    if percent:
        y_max = next(m for m in (0.2, 0.4, 0.8, 1.0) if peak <= m)  # quarters stay round
    else:
        y_max = _nice_max(max(peak, 4 if not unit else peak))
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(len(days), 1)
    body = _axes(y_max, [d[5:] for d in days], percent)
    for name, css, values in series:
        runs: list[list[str]] = [[]]
        for i, value in enumerate(values):
            if value is None:
                runs.append([])
                continue
            x = PAD_LEFT + slot * (i + 0.5)
            y = PAD_TOP + plot_h - plot_h * value / y_max
            runs[-1].append(f"{x:.1f},{y:.1f}")
            shown = f"{value:.0%}" if percent else f"{value:.1f}{unit}"
            body.append(f'<circle class="{css}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                        f"<title>{days[i]} {escape(name)}: {shown}</title></circle>")
        for run in runs:
            if len(run) > 1:
                body.append(f'<polyline class="{css} line" points="{" ".join(run)}"/>')
    body += _legend([(name, css) for name, css, _ in series])
    summary = "; ".join(
        f"{name}: latest "
        + next(((f"{v:.0%}" if percent else f"{v:.1f}{unit}") for v in reversed(vals)
                if v is not None), "none")
        for name, _, vals in series
    )
    return _frame(title, summary, body, ident)


def histogram_chart(
    ident: str, title: str, bins: Sequence[int], css: str, marks: Sequence[tuple[str, float]]
) -> Markup:
    """Draw a score histogram from 0 to 1 with the thresholds as labelled vertical lines."""
    y_max = _nice_max(max(bins, default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / len(bins)
    # Ticks at the bin edges 0, 0.2, ..., 1.0 rather than at bin centres.
    body = _axes(y_max, [""] * len(bins))
    for i in range(0, len(bins) + 1, max(1, len(bins) // 5)):
        x = PAD_LEFT + slot * i
        body.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" '
                    f'text-anchor="middle">{i / len(bins):.1f}</text>')
    for i, n in enumerate(bins):
        if not n:
            continue
        h = plot_h * n / y_max
        low, high = i / len(bins), (i + 1) / len(bins)
        body.append(
            f'<rect class="{css}" x="{PAD_LEFT + slot * i + 1:.1f}" '
            f'y="{PAD_TOP + plot_h - h:.1f}" width="{slot - 2:.1f}" height="{h:.1f}">'
            f"<title>{low:.2f}–{high:.2f}: {n}</title></rect>"
        )
    for k, (name, value) in enumerate(marks):
        x = PAD_LEFT + plot_w * value
        body.append(f'<line class="threshold {escape(name)}" x1="{x:.1f}" x2="{x:.1f}" '
                    f'y1="{PAD_TOP}" y2="{PAD_TOP + plot_h}"/>')
        # Near the right edge the label goes left of its line, so it is not cut off; each
        # label has its own line of the plot, so two close thresholds do not overprint.
        side = (f'x="{x - 4:.1f}" text-anchor="end"' if value > 0.75 else f'x="{x + 4:.1f}"')
        body.append(f'<text class="threshold-label" {side} y="{PAD_TOP + 12 + 14 * k}">'
                    f"{escape(name)} {value:.2f}</text>")
    summary = f"{sum(bins)} scored comments; thresholds " + ", ".join(
        f"{name} {value:.2f}" for name, value in marks
    )
    return _frame(title, summary, body, ident)


def charts(window: Window, thresholds: Mapping[str, Mapping[str, float]]) -> dict[str, Markup]:
    """Return every chart of the stats page, keyed by name."""
    days = [d.isoformat() for d in window.dates()]
    counts = per_day(window)
    outcome = [
        (status.value.capitalize(), f"s-{status.value}",
         [float(counts.get(d, {}).get(status, 0)) for d in days])
        for status in OUTCOMES
    ]
    share = shares(window, thresholds)
    queue = queue_sizes(window)
    waits = decision_hours(window)
    return {
        "outcomes": stacked_bars("outcomes", "Comments per day by outcome", days, outcome),
        "shares": lines(
            "shares", "Share of comments at or above the hold threshold", days,
            [("Spam", "s-spam", [share[d]["spam"] for d in days]),
             ("Toxic", "s-rejected", [share[d]["toxicity"] for d in days])],
            percent=True,
        ),
        "queue": lines("queue", "Comments waiting at the end of each day", days,
                       [("Waiting", "s-pending", [float(queue[d]) for d in days])]),
        "decision": lines("decision", "Median hours from submission to decision", days,
                          [("Hours", "s-published", [waits[d] for d in days])], unit=" h"),
        "spam_hist": histogram_chart(
            "spam_hist", "Spam scores", histogram(window, Comment.spam_score), "s-spam",
            [("hold", float(thresholds["spam"]["hold"])),
             ("reject", float(thresholds["spam"]["reject"]))],
        ),
        "toxicity_hist": histogram_chart(
            "toxicity_hist", "Toxicity scores", histogram(window, Comment.toxicity_score),
            "s-rejected",
            [("hold", float(thresholds["toxicity"]["hold"])),
             ("reject", float(thresholds["toxicity"]["reject"]))],
        ),
    }


def totals(window: Window) -> dict[str, int]:
    """Return the window's totals per status and the current pending count."""
    out = decided_outcomes(window)
    out["waiting"] = db.session.execute(
        select(func.count(Comment.id)).where(*window.sites(), Comment.status == Status.PENDING)
    ).scalar_one()
    return out

