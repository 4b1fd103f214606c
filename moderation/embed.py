"""The embed blueprint: serves the widget's script and styles to any page, cached for a day."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, request, url_for

bp = Blueprint("embed", __name__)

STATIC = Path(__file__).resolve().parent / "static"
# Files the widget is made of, with their content types.
ASSETS = {
    "embed.js": "text/javascript; charset=utf-8",
    "embed.css": "text/css; charset=utf-8",
}
# Browsers and proxies may keep an asset this long (seconds) before asking again with its ETag.
MAX_AGE = 86400
# A URL carrying the asset's own version (?v=) never changes, so it may be kept for a year.
IMMUTABLE_MAX_AGE = 365 * 86400
# Placeholder in embed.js replaced by the stylesheet's version, so the script asks for fresh CSS.
CSS_VERSION_MARK = b"__EMBED_CSS_VERSION__"


@dataclass(frozen=True)
class Asset:
    """One widget file as served: its bytes, version and content type."""

    body: bytes
    version: str
    content_type: str


def _version(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def load_assets(folder: Path = STATIC) -> dict[str, Asset]:
    """Read the widget files and stamp the script with the stylesheet's version."""
    css = (folder / "embed.css").read_bytes()
    js = (folder / "embed.js").read_bytes().replace(CSS_VERSION_MARK, _version(css).encode())
    bodies = {"embed.js": js, "embed.css": css}
    return {name: Asset(body, _version(body), ASSETS[name]) for name, body in bodies.items()}


def assets(app: Flask) -> dict[str, Asset]:
    """Return the app's widget files, read again in debug mode so edits show at once."""
    if app.debug or "embed" not in app.extensions:
        app.extensions["embed"] = load_assets()
    return app.extensions["embed"]


def asset_url(name: str, _external: bool = False) -> str:
    """Return the versioned URL of a widget file, e.g. /embed.js?v=abc123."""
    return url_for("embed.serve", name=name, v=assets(current_app)[name].version,
                   _external=_external)


@bp.get("/<any(embed.js, embed.css):name>")
def serve(name: str) -> Response:
    """Serve a widget file with long-lived caching, an ETag and open CORS."""
    asset = assets(current_app)[name]
    response = Response(asset.body, content_type=asset.content_type)
    response.set_etag(asset.version)
    if request.args.get("v") == asset.version:
        response.headers["Cache-Control"] = f"public, max-age={IMMUTABLE_MAX_AGE}, immutable"
    else:
        response.headers["Cache-Control"] = f"public, max-age={MAX_AGE}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.make_conditional(request)  # 304 when the ETag matches; updates in place
    return response
