#!/usr/bin/env python3
"""Set up and run the service or the test suite with nothing but Python 3.11+.

    python3 dev.py serve     # virtualenv, migrations, demo blog, server on 127.0.0.1:5000
    python3 dev.py test      # virtualenv, then the whole test suite (extra args go to pytest)
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
INSTANCE = ROOT / "instance"


def say(message: str) -> None:
    """Print a progress line."""
    print(f"==> {message}", flush=True)


def ensure_venv() -> None:
    """Create .venv and install the project with its dev extras when pyproject.toml changes."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        sys.exit(f"Python 3.11 or newer is required (this is {sys.version.split()[0]}).")
    if not PYTHON.exists():
        say(f"creating virtualenv in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if stamp.exists():
        return
    say("installing dependencies (first run takes a minute)")
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-e", f"{ROOT}[dev]"],
        check=True,
    )
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def flask(*args: str, env: dict[str, str] | None = None, capture: bool = False) -> str:
    """Run a `flask --app wsgi` command in the virtualenv and return its output."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT, env=env, check=True, text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def ensure_secret() -> None:
    """Write instance/config.py with a random SECRET_KEY on first run."""
    INSTANCE.mkdir(exist_ok=True)
    config = INSTANCE / "config.py"
    if not config.exists():
        config.write_text(
            "# Written by dev.py on first run; keep it private.\n"
            f"SECRET_KEY = {secrets.token_urlsafe(32)!r}\n"
        )


def ensure_demo_admin(env: dict[str, str]) -> tuple[str, str]:
    """Make sure the demo admin account exists with the password printed; return both.

    The password is chosen once and kept in instance/; the account is created whenever it is
    missing (so it also works after the database was deleted) and otherwise left alone, so a
    restart signs no one out.
    """
    path = INSTANCE / "demo-admin.txt"
    if path.exists():
        email, password = path.read_text().split()
    else:
        email, password = "admin@localhost", secrets.token_urlsafe(9)
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "moderator", "add", "--email", email, "--admin",
         "--password-stdin", "--if-missing"],
        cwd=ROOT, env=env, check=True, input=password + "\n", text=True,
        stdout=subprocess.DEVNULL,
    )
    path.write_text(f"{email} {password}\n")
    path.chmod(0o600)
    return email, password


def serve(args: list[str]) -> None:
    """Migrate, seed the demo blog and run the server on 127.0.0.1:5000."""
    port = args[0] if args else os.environ.get("PORT", "5000")
    ensure_venv()
    ensure_secret()
    # The demo runs over plain http on 127.0.0.1, so the dashboard cookie cannot be https-only.
    env = {**os.environ, "MODERATION_DEMO": "true", "MODERATION_SESSION_COOKIE_SECURE": "false"}
    say("applying database migrations")
    flask("db", "upgrade", env=env)
    say("seeding the demo blog")
    snippet = flask("demo", "seed", "--origin", f"http://localhost:{port}", env=env,
                    capture=True)
    email, password = ensure_demo_admin(env)
    print(snippet.rstrip())
    print(
        f"\n  Demo blog (English):  http://localhost:{port}/demo/\n"
        f"  Moderator dashboard:  http://127.0.0.1:{port}/dashboard/  ({email} / {password})\n"
        f"  API health:           http://127.0.0.1:{port}/api/v1/health\n",
        flush=True,
    )
    os.execve(
        str(BIN / "flask"),
        [str(BIN / "flask"), "--app", "wsgi", "run", "--host", "127.0.0.1", "--port", port],
        env,
    )


def test(args: list[str]) -> None:
    """Run the whole test suite in the virtualenv."""
    ensure_venv()
    say("running the test suite")
    code = subprocess.call([str(PYTHON), "-m", "pytest", *args], cwd=ROOT)
    sys.exit(code)


def main() -> None:
    """Dispatch to serve or test."""
    commands = {"serve": serve, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
