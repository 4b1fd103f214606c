"""Command-line tools, grouped by noun: flask --app wsgi site|moderator|model ..."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from .db import Site, db

site_cli = AppGroup("site", help="Manage the sites that embed comments.")


def _origin(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")) or "/" in value.split("://", 1)[1]:
        raise click.BadParameter(f"{value!r} is not an origin like https://blog.example")
    return value


@site_cli.command("add")
@click.option("--name", required=True, help="A name moderators recognise.")
@click.option("--origin", "origins", multiple=True, help="Allowed browser origin (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def site_add(name: str, origins: tuple[str, ...], as_json: bool) -> None:
    """Add a site and print its public key for the embed snippet."""
    site = Site(name=name, origins=[_origin(o) for o in origins], settings={})
    db.session.add(site)
    db.session.commit()
    result = {"id": site.id, "name": site.name, "key": site.key, "origins": site.origins}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"Added site {site.name!r} with key {site.key}")
        click.echo(f"Allowed origins: {', '.join(site.origins) or '(none: same origin only)'}")


@site_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def site_list(as_json: bool) -> None:
    """List sites with their keys and allowed origins."""
    sites = db.session.execute(select(Site).order_by(Site.id)).scalars().all()
    rows = [{"id": s.id, "name": s.name, "key": s.key, "origins": s.origins} for s in sites]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['id']:>4}  {row['key']:<20}  {row['name']}  {' '.join(row['origins'])}")


def init_app(app: Flask) -> None:
    """Register the command groups with the app's CLI."""
    app.cli.add_command(site_cli)
    from .training import model_cli  # scikit-learn itself loads only inside the commands

    app.cli.add_command(model_cli)
