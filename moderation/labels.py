"""Moderator decisions as training labels: CSV export for the dashboard and the CLI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from .db import Label, db

COLUMNS = ("text", "author", "website", "email", "label", "spam", "toxicity", "scores",
           "model_version", "source", "created_at", "comment_id", "site_id")
# Labels read from the database per round trip while streaming.
CHUNK = 1000
# Formula prefixes a spreadsheet would execute; such cells get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def rows(
    allowed_sites: tuple[int, ...] | None = None,
    since: datetime | None = None,
    safe_for_spreadsheets: bool = False,
) -> Iterator[list[str]]:
    """Yield the label rows, oldest first, in chunks so memory stays flat."""
    last = 0
    while True:
        query = select(Label).where(Label.id > last).order_by(Label.id).limit(CHUNK)
        if allowed_sites is not None:
            query = query.where(Label.site_id.in_(allowed_sites))
        if since is not None:
            query = query.where(Label.created_at >= since)
        batch = list(db.session.execute(query).scalars())
        if not batch:
            return
        for label in batch:
            scores = dict(label.scores or {})
            text = [label.text, label.author, label.website, label.email]
            if safe_for_spreadsheets:
                text = [_cell(v) for v in text]
            yield [
                *text,
                label.label,
                "" if scores.get("spam") is None else str(scores["spam"]),
                "" if scores.get("toxicity") is None else str(scores["toxicity"]),
                json.dumps(scores, sort_keys=True),
                label.model_version or "",
                label.source,
                label.created_at.isoformat(),
                str(label.comment_id or ""),
                str(label.site_id or ""),
            ]
        last = batch[-1].id
        db.session.expunge_all()


def csv_chunks(
    allowed_sites: tuple[int, ...] | None = None,
    since: datetime | None = None,
    safe_for_spreadsheets: bool = False,
) -> Iterator[str]:
    """Yield the CSV export (header first) as text pieces for streaming."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for n, row in enumerate(rows(allowed_sites, since, safe_for_spreadsheets), start=1):
        writer.writerow(row)
        if n % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@click.command("export-labels")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Only labels from this day on (YYYY-MM-DD, UTC).")
@with_appcontext
def export_labels(output: Path | None, since: datetime | None) -> None:
    """Export moderator decisions and API feedback as CSV for retraining."""
    start = since.replace(tzinfo=UTC) if since else None
    if output is None:
        for piece in csv_chunks(since=start):
            click.echo(piece, nl=False)
        return
    try:
        with output.open("w", encoding="utf-8", newline="") as fh:
            for piece in csv_chunks(since=start):
                fh.write(piece)
    except OSError as error:  # no such folder, no permission, a full disk, a read-only file
        raise click.ClickException(f"cannot write {output}: {error.strerror or error}") from None
    click.echo(f"Wrote labels to {output}", err=True)
