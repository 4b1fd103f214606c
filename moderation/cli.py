"""Command-line tools, grouped by noun: flask --app wsgi site|moderator|model ..."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from . import keys, origins
from .db import Site, db

site_cli = AppGroup("site", help="Manage the sites that embed comments.")


def origin_option(value: str, option: str = "--origin") -> str:
    """Return an origin option's value as browsers send it (see origins.normalise), or refuse
    it naming the option."""
    try:
        return origins.normalise(value)
    except origins.InvalidOrigin as error:
        raise click.BadParameter(str(error), param_hint=option) from None


# The longest site name the database stores.
MAX_SITE_NAME = 200


@site_cli.command("add")
@click.option("--name", required=True, help="A name moderators recognise.")
@click.option("--origin", "origin_values", multiple=True,
              help="Allowed browser origin, e.g. https://blog.example (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def site_add(name: str, origin_values: tuple[str, ...], as_json: bool) -> None:
    """Add a site and print its public key for the embed snippet."""
    name = " ".join(name.split())
    if not name or len(name) > MAX_SITE_NAME:
        raise click.BadParameter(f"give a name of 1 to {MAX_SITE_NAME} characters",
                                 param_hint="--name")
    allowed: list[str] = []
    for value in origin_values:
        if (origin := origin_option(value)) not in allowed:
            allowed.append(origin)
    site = Site(name=name, origins=allowed, settings={})
    db.session.add(site)
    db.session.flush()
    issued = keys.issue(site)
    db.session.commit()
    result = {"id": site.id, "name": site.name, "key": site.key, "origins": site.origins,
              "api_key": issued.key, "api_key_scopes": list(issued.scopes)}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"Added site {site.name!r} with key {site.key}")
        click.echo(f"Allowed origins: {', '.join(site.origins) or '(none: same origin only)'}")
        click.echo(f"API key (shown once, store it now): {issued.key}")


@site_cli.command("rotate-key")
@click.argument("site_key")
@click.option("--scopes", default=",".join(keys.SCOPES), show_default=True,
              help="Comma-separated scopes of the new key.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def site_rotate_key(site_key: str, scopes: str, as_json: bool) -> None:
    """Revoke a site's API keys and print a new one."""
    site = db.session.execute(select(Site).where(Site.key == site_key)).scalar_one_or_none()
    if site is None:
        raise click.BadParameter(f"no site with key {site_key!r}", param_hint="SITE_KEY")
    try:
        wanted = keys.parse_scopes(scopes)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--scopes") from None
    revoked = len(keys.active_keys(site))
    issued = keys.rotate(site, wanted)
    db.session.commit()
    if as_json:
        click.echo(json.dumps({"site": site.key, "api_key": issued.key,
                               "scopes": list(issued.scopes), "revoked": revoked}))
    else:
        click.echo(f"Revoked {revoked} key(s) of site {site.key}")
        click.echo(f"API key (shown once, store it now): {issued.key}")
        click.echo(f"Scopes: {', '.join(issued.scopes)}")


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
    from .demo import demo_cli

    app.cli.add_command(demo_cli)
    from .training import model_cli  # scikit-learn itself loads only inside the commands

    app.cli.add_command(model_cli)
    from .auth import moderator_cli
    from .labels import export_labels

    app.cli.add_command(moderator_cli)
    model_cli.add_command(export_labels)
