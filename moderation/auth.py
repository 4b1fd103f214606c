"""Moderator accounts: password hashing, session login, permissions, CSRF, the rules for
account changes (shared by the CLI and the dashboard) and the CLI."""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import click
from flask import Flask, Response, abort, current_app, g, redirect, request, session, url_for
from flask.cli import AppGroup
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select, update
from werkzeug.security import check_password_hash, generate_password_hash

from . import limits, sanitising
from .db import Moderator, Site, db, utcnow
from .errors import error_response
from .exceptions import InvalidField

F = TypeVar("F", bound=Callable[..., Any])

csrf = CSRFProtect()
moderator_cli = AppGroup("moderator", help="Manage dashboard accounts.")

MIN_PASSWORD_LENGTH = 10
# Checked when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-password", method="scrypt")


@dataclass(frozen=True)
class Account:
    """The signed-in moderator as plain values, safe to use after any commit."""

    id: int
    email: str
    is_admin: bool
    site_ids: tuple[int, ...]

    @property
    def actor(self) -> str:
        """Return how this moderator is named in the audit trail."""
        return f"moderator:{self.email}"

    @property
    def allowed_sites(self) -> tuple[int, ...] | None:
        """Return the ids of the sites this account may see, or None for every site."""
        return None if self.is_admin else self.site_ids

    def can_see(self, site_id: int | None) -> bool:
        """Return whether this account may see and act on a site."""
        return self.is_admin or (site_id is not None and site_id in self.site_ids)


def hash_password(password: str) -> str:
    """Return the stored form of a password (scrypt, salted)."""
    return generate_password_hash(password, method="scrypt")


def authenticate(email: str, password: str) -> Moderator | None:
    """Return the moderator with this email and password, or None.

    A disabled account is returned too (its password is right): check ``disabled_at`` before
    calling login(), which refuses it.
    """
    found = db.session.execute(
        select(Moderator).where(Moderator.email == email.strip().lower())
    ).scalar_one_or_none()
    if found is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return found if check_password_hash(found.password_hash, password) else None


def _password_mark(moderator: Moderator) -> str:
    """Return a keyed digest of the password hash: it changes with the password, reveals nothing."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, moderator.password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def login(moderator: Moderator, keep_csrf: bool = False) -> None:
    """Start a fresh session for the moderator (a new session defeats fixation).

    ``keep_csrf`` keeps the session's CSRF secret: for renewing a session that is already
    signed in to this account (a new password of its own), so that forms open in the same
    browser's other tabs still send. A sign-in never keeps it: a secret planted before
    sign-in must not outlive it.
    """
    if moderator.disabled_at is not None:
        raise ValueError(f"account {moderator.email} is disabled")
    # Flask-WTF keeps its secret in the session under the token field's name.
    csrf_key = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    csrf_secret = session.get(csrf_key) if keep_csrf else None
    session.clear()
    if csrf_secret is not None:
        session[csrf_key] = csrf_secret
    session["moderator_id"] = moderator.id
    # Changing the password ends every session that was opened with the old one.
    session["pw"] = _password_mark(moderator)
    # Signing out (or disabling the account) bumps the account's epoch: this session then ends.
    session["epoch"] = moderator.session_epoch
    session.permanent = True


def end_sessions(moderator_id: int) -> None:
    """End every open session of an account, on every worker and host (the caller commits).

    The sessions are signed cookies, so the server cannot forget one; each carries the epoch
    it was opened at, and current() accepts only the account's present epoch.
    """
    db.session.execute(
        update(Moderator)
        .where(Moderator.id == moderator_id)
        .values(session_epoch=Moderator.session_epoch + 1)
    )


def logout() -> None:
    """Sign out everywhere: end this session and every other one of the same account.

    Copies of the cookie (another browser, a copied or stolen cookie) stop working too.
    """
    account = current()
    if account is not None:
        end_sessions(account.id)
        db.session.commit()
    session.clear()
    g.pop("account", None)


def current() -> Account | None:
    """Return the signed-in moderator, or None."""
    if "account" in g:
        return g.account  # type: ignore[no-any-return]
    account = None
    ident = session.get("moderator_id")
    if isinstance(ident, int):
        moderator = db.session.get(Moderator, ident)
        mark = session.get("pw")
        epoch = session.get("epoch")
        if (moderator is not None and moderator.disabled_at is None
                and isinstance(epoch, int) and epoch == moderator.session_epoch
                and isinstance(mark, str)
                and hmac.compare_digest(mark, _password_mark(moderator))):
            account = Account(
                moderator.id,
                moderator.email,
                moderator.is_admin,
                tuple(sorted(s.id for s in moderator.sites)),
            )
    g.account = account
    return account


def require() -> Account:
    """Return the signed-in moderator or abort with 401 (views use login_required first)."""
    account = current()
    if account is None:
        abort(401)
    return account


def login_required(view: F) -> F:
    """Send anonymous visitors to the login page, then back."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current() is None:
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def admin_required(view: F) -> F:
    """Allow only administrators (others get 403)."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not require().is_admin:
            abort(403, "Only administrators may open this page.")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def visible_sites(account: Account) -> list[Site]:
    """Return the sites this account may see, by name."""
    query = select(Site).order_by(Site.name, Site.id)
    if not account.is_admin:
        query = query.where(Site.id.in_(account.site_ids))
    return list(db.session.execute(query).scalars())


def protect() -> None:
    """Check the CSRF token of a form post (JSON APIs never call this)."""
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()


def _csrf_failed(error: CSRFError) -> Response:
    """Explain a refused form: the token is bound to the session, so the session has changed."""
    return error_response(
        400, "bad_request",
        f"This form was not sent: {error.description} (CSRF check). The session it was opened "
        "in has ended or changed, for example by signing out. Go back, reload the page (sign in "
        "again if asked) and send the form again.",
    )


# -- sign-in rate-limit keys ----------------------------------------------------------------


def login_account_key() -> str:
    """Key sign-in attempts by the account they target: the email, as authenticate() reads it."""
    return limits.keyed((request.form.get("email") or "").strip().lower())


def failed_sign_in(response: Response) -> bool:
    """Return whether a sign-in attempt failed (wrong email or password), so it is counted."""
    return response.status_code == 401


def own_account_key() -> str:
    """Key password changes by the signed-in account (anonymous posts are sent to sign in)."""
    account = current()
    return limits.keyed(account.email if account else "")


def note_wrong_current_password() -> None:
    """Mark this request as a wrong guess of the account's current password."""
    g.wrong_current_password = True


def wrong_current_password(response: Response) -> bool:
    """Return whether a password change was refused for a wrong current password (counted)."""
    return bool(g.get("wrong_current_password"))


# -- account rules, shared by the CLI and the dashboard -------------------------------------


# An address the sign-in form's <input type="email"> lets a browser send (the HTML standard's
# "valid e-mail address": ASCII, domain labels of letters, digits and inner hyphens).
_SIGN_IN_EMAIL_RE = re.compile(
    r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


def account_email(value: str) -> str:
    """Return a moderator's sign-in email lower-cased, or refuse one no one could sign in with.

    It must pass the checks of readers' emails (sanitising.clean_email), except that a
    domain of one label is allowed (admin@localhost, the demo admin of dev.py), and be an
    address the sign-in form accepts. Raises InvalidField("email", why) otherwise.
    """
    email = value.strip().lower()
    local, at, domain = email.partition("@")
    if not email:
        raise InvalidField("email", "is empty")
    if local and at and not domain:
        raise InvalidField("email", "is missing the domain after '@'")
    # clean_email asks for a dot in the domain; a one-label domain is checked with one.
    sanitising.clean_email(email + ".invalid" if domain and "." not in domain else email)
    if not _SIGN_IN_EMAIL_RE.fullmatch(email):
        raise InvalidField("email", "has characters the sign-in form does not accept "
                           "(ASCII only: write a non-ASCII domain in its xn-- form)")
    return email


def _visible(char: str) -> bool:
    """Return whether a character shows: not a space or separator (Z*), control (Cc) or
    format character (Cf: zero-width spaces and joiners, direction marks)."""
    category = unicodedata.category(char)
    return category not in ("Cc", "Cf") and not category.startswith("Z")


def check_password(password: str) -> None:
    """Refuse a new password that is too short (InvalidField naming "password").

    Only visible characters count: ten spaces, NULs or zero-width spaces have the length but
    are guessed at once, and a password of them may be set by mistake without anyone noticing.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidField("password", f"must have at least {MIN_PASSWORD_LENGTH} characters")
    if sum(map(_visible, password)) < MIN_PASSWORD_LENGTH:
        raise InvalidField("password", f"must have at least {MIN_PASSWORD_LENGTH} visible "
                           "characters: spaces, control characters and invisible ones (such "
                           "as zero-width spaces) do not count")


def check_access(is_admin: bool, sites: Sequence[Site]) -> None:
    """Refuse a moderator who could see nothing: a non-admin needs at least one site."""
    if not is_admin and not sites:
        raise InvalidField("sites", "a moderator needs at least one site (or the admin flag, "
                           "for every site)")


def find_account(email: str) -> Moderator | None:
    """Return the account with this sign-in email (any case), or None."""
    return db.session.execute(
        select(Moderator).where(Moderator.email == email.strip().lower())
    ).scalar_one_or_none()


def set_password(moderator: Moderator, password: str) -> None:
    """Store a new password (the caller checked it and commits).

    Every open session of the account ends with it: sessions carry a mark of the password
    hash (_password_mark), and the new hash has a new salt even for the same password.
    """
    moderator.password_hash = hash_password(password)


def disable(moderator: Moderator) -> bool:
    """Disable an account and end its open sessions (the caller commits); False if it was.

    Re-enabling it later does not bring the old sessions back: their epoch is past.
    """
    if moderator.disabled_at is not None:
        return False
    moderator.disabled_at = utcnow()
    end_sessions(moderator.id)
    return True


def enable(moderator: Moderator) -> bool:
    """Let a disabled account sign in again (the caller commits); False if it was active."""
    if moderator.disabled_at is None:
        return False
    moderator.disabled_at = None
    return True


def password_matches(moderator: Moderator, password: str) -> bool:
    """Return whether this is the account's current password."""
    return check_password_hash(moderator.password_hash, password)


def enabled_admin_ids() -> set[int]:
    """Return the ids of the enabled admins (no lock: see lock_enabled_admins)."""
    return set(db.session.execute(
        select(Moderator.id)
        .where(Moderator.is_admin.is_(True), Moderator.disabled_at.is_(None))
    ).scalars())


def lock_enabled_admins() -> set[int]:
    """Return the ids of the enabled admins, their rows locked until the caller commits.

    A change that could leave no enabled admin checks this set; the lock makes two such
    changes at the same moment wait for each other instead of both passing the check. It is
    taken by writing the rows (setting is_admin to itself) before reading them: a SELECT ...
    FOR UPDATE alone locks nothing on SQLite, whose driver opens no transaction for a SELECT,
    while a write takes SQLite's database write lock (a second writer waits for the commit,
    up to busy_timeout, then reads the first one's change) and locks the rows on PostgreSQL.
    """
    enabled = (Moderator.is_admin.is_(True), Moderator.disabled_at.is_(None))
    db.session.execute(
        update(Moderator).where(*enabled).values(is_admin=Moderator.is_admin),
        execution_options={"synchronize_session": False},
    )
    return set(db.session.execute(
        select(Moderator.id).where(*enabled).order_by(Moderator.id).with_for_update()
    ).scalars())


def site_label(site: Site) -> str:
    """Return a site as the audit log names it: its name and key (names may repeat)."""
    return f"{site.name} ({site.key})"


def describe(email: str, is_admin: bool, sites: Sequence[Site],
             name: Callable[[Site], str] | None = None) -> str:
    """Return an account, its role and its sites as the CLI and the audit log word them
    (``name``: how to name a site, by default its name; the audit log passes site_label)."""
    scope = "every site" if is_admin else ", ".join(
        name(s) if name else s.name for s in sites)
    return f"{'admin' if is_admin else 'moderator'} {email} for {scope}"


# -- CLI ------------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _warn_without_admins() -> None:
    """Warn (on stderr) when no enabled admin is left after a CLI change.

    The dashboard refuses such a change; the CLI makes it, because the CLI is how a locked-out
    team gets back in, but the operator must know that no one can manage accounts now.
    """
    if not enabled_admin_ids():
        click.echo("Warning: no enabled admin is left: `flask --app wsgi moderator add --admin "
                   "--email EMAIL` creates one (or makes an existing account an admin).",
                   err=True)


def _account_email(value: str) -> str:
    """Return account_email(value), or stop with a usage error naming --email."""
    try:
        return account_email(value)
    except InvalidField as error:
        raise click.BadParameter(f"{value!r} is not an email address: it {error.message}",
                                 param_hint="--email") from None


@moderator_cli.command("add")
@click.option("--email", required=True, help="Sign-in email, also shown in the audit log.")
@click.option("--admin", is_flag=True, help="May see every site and change settings.")
@click.option("--site", "site_keys", multiple=True, help="Key of a site to moderate (repeatable).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--if-missing", is_flag=True,
              help="Leave an existing account as it is (its password and open sessions).")
def moderator_add(
    email: str, admin: bool, site_keys: tuple[str, ...], password_stdin: bool, if_missing: bool
) -> None:
    """Add a moderator account (or reset its password, admin flag and sites)."""
    email = _account_email(email)
    sites = []
    for key in site_keys:
        site = db.session.execute(select(Site).where(Site.key == key)).scalar_one_or_none()
        if site is None:
            raise click.BadParameter(f"no site with key {key!r}", param_hint="--site")
        sites.append(site)
    try:
        check_access(admin, sites)
    except InvalidField:
        raise click.UsageError("a moderator needs --site KEY (or --admin for every site)") \
            from None
    password = _read_password(password_stdin)
    try:
        check_password(password)
    except InvalidField as error:
        raise click.UsageError(f"the password {error.message}") from None
    moderator = find_account(email)
    if moderator is not None and if_missing:
        click.echo(f"{email} already has an account: left as it is")
        return
    verb = "Updated" if moderator else "Added"
    if moderator is None:
        moderator = Moderator(email=email, password_hash="")
        db.session.add(moderator)
    set_password(moderator, password)
    moderator.is_admin = admin
    moderator.sites = sites
    db.session.commit()
    click.echo(f"{verb} {describe(email, admin, sites)}")
    if moderator.disabled_at is not None:
        click.echo(f"The account is disabled: `moderator enable {email}` lets it sign in again")
    _warn_without_admins()


@moderator_cli.command("list")
def moderator_list() -> None:
    """List moderator accounts, whether they are active, and their sites."""
    for moderator in db.session.execute(select(Moderator).order_by(Moderator.email)).scalars():
        scope = "all sites" if moderator.is_admin else " ".join(s.key for s in moderator.sites)
        role = "admin" if moderator.is_admin else "moderator"
        state = "active" if moderator.disabled_at is None else "disabled"
        click.echo(f"{moderator.email:<40} {role:<10} {state:<9} {scope}")


def _moderator_named(email: str) -> Moderator:
    """Return the account with this email, or stop with a usage error naming the argument."""
    found = find_account(email)
    if found is None:
        raise click.BadParameter(f"no moderator with email {email!r} (see `moderator list`)",
                                 param_hint="EMAIL")
    return found


@moderator_cli.command("disable")
@click.argument("email")
def moderator_disable(email: str) -> None:
    """Disable an account: it cannot sign in and its open sessions end at once.

    The account and its audit trail stay; `moderator enable EMAIL` undoes this.
    """
    moderator = _moderator_named(email)
    if moderator.disabled_at is not None:
        click.echo(f"{moderator.email} is already disabled (since "
                   f"{moderator.disabled_at:%Y-%m-%d %H:%M} UTC)")
        return
    disable(moderator)
    db.session.commit()
    click.echo(f"Disabled {moderator.email}: it can no longer sign in and its open sessions "
               "have ended")
    _warn_without_admins()


@moderator_cli.command("enable")
@click.argument("email")
def moderator_enable(email: str) -> None:
    """Let a disabled account sign in again (with its old password, unless `add` reset it)."""
    moderator = _moderator_named(email)
    if not enable(moderator):
        click.echo(f"{moderator.email} is already active")
        return
    db.session.commit()
    click.echo(f"Enabled {moderator.email}: it may sign in again")


def init_app(app: Flask) -> None:
    """Set up CSRF so that only dashboard forms are checked, never the JSON APIs."""
    # Flask-WTF would check every POST by default, the JSON APIs (/api/, /v1alpha1/, /1.1/,
    # /embed, /demo) included; instead dashboard views call protect() in before_request,
    # which stays right for blueprints other engineers register later.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    app.register_error_handler(CSRFError, _csrf_failed)
