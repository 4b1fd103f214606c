"""Security headers on every response, a strict CSP on our HTML pages, hardened cookies."""

from __future__ import annotations

import secrets

from flask import Flask, Request, Response, current_app, g, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

# Headers that make sense on any response, JSON and scripts included.
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
# Headers for our own HTML pages (dashboard, error pages); the embed script runs on other
# sites under their policy, so it is served without these.
HTML_ONLY = {
    "X-Frame-Options": "DENY",
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), microphone=(), "
        "payment=(), usb=(), interest-cohort=()"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
}


def csp_nonce() -> str:
    """Return this request's CSP nonce, for the few inline <script>/<style> tags we allow."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


def content_security_policy(template: str) -> str:
    """Return the configured policy with this request's nonce filled in."""
    return template.replace("{nonce}", csp_nonce())


def _secure_headers(response: Response) -> Response:
    for name, value in ALWAYS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        for name, value in HTML_ONLY.items():
            response.headers.setdefault(name, value)
        policy = current_app.config["CONTENT_SECURITY_POLICY"]
        if policy:
            response.headers.setdefault("Content-Security-Policy", content_security_policy(policy))
    hsts = int(current_app.config["HSTS_SECONDS"])
    if request.is_secure and hsts > 0:
        response.headers.setdefault(
            "Strict-Transport-Security", f"max-age={hsts}; includeSubDomains"
        )
    return response


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building a signer for requests that have none.

    Readers and API clients never send the dashboard's session cookie; for them Flask would
    build an itsdangerous serializer on every request only to find no cookie to check.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Return an empty session when there is no cookie, else verify the cookie."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Harden the session cookie and add security headers to every response."""
    if app.config.get("SESSION_COOKIE_SECURE") is None:
        # Browsers drop Secure cookies over plain http, which local development uses.
        app.config["SESSION_COOKIE_SECURE"] = not (app.debug or app.testing)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if not app.config.get("SESSION_COOKIE_SAMESITE"):
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.session_interface = CookieSessionInterface()
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(_secure_headers)
