"""Private PostgreSQL and Redis servers for tests that stop and start them.

The machine's shared services on 5432/6379 are never touched: each server here has its own
data directory under a temporary folder and its own free port.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: object, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll predicate() until it is true or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def listening(port: int) -> bool:
    """Return whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def need_binary(*candidates: str) -> str:
    """Return the first existing executable, or skip (outside CI) / fail (in CI)."""
    for pattern in candidates:
        for path in sorted(glob.glob(pattern)) or [shutil.which(pattern) or ""]:
            if path and os.access(path, os.X_OK):
                return path
    message = f"none of {', '.join(candidates)} is installed"
    if IN_CI:
        pytest.fail(message + " (CI must provide it)")
    pytest.skip(message)


class PrivateRedis:
    """A throwaway redis-server on its own port, without persistence."""

    def __init__(self) -> None:
        self.binary = need_binary("redis-server")
        self.cli = need_binary("redis-cli")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers."""
        subprocess.run(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "yes",
             "--pidfile", f"/tmp/moderation-test-redis-{self.port}.pid"],
            check=True, capture_output=True,
        )
        wait_for(lambda: listening(self.port), what=f"redis on {self.port}")

    def stop(self) -> None:
        """Shut the server down without saving and wait until the port is closed."""
        subprocess.run([self.cli, "-p", str(self.port), "shutdown", "nosave"],
                       capture_output=True, check=False)
        wait_for(lambda: not listening(self.port), what=f"redis on {self.port} to stop")


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temporary directory, on its own port."""

    def __init__(self) -> None:
        self.initdb = need_binary("/usr/lib/postgresql/*/bin/initdb", "initdb")
        self.pg_ctl = need_binary("/usr/lib/postgresql/*/bin/pg_ctl", "pg_ctl")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="moderation-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        # initdb refuses to run as root: run the server tools as the postgres user then.
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            self.prefix = [need_binary("runuser"), "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            [*self.prefix, self.initdb, "-D", str(self.data), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=50")
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-o", options,
             "-l", str(self.log), "-w", "start"],
            check=True, capture_output=True,
        )
        wait_for(lambda: listening(self.port), what=f"postgres on {self.port}")

    def stop(self) -> None:
        """Stop the server at once (fast mode) and wait until the port is closed."""
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"],
            check=False, capture_output=True,
        )
        wait_for(lambda: not listening(self.port), what=f"postgres on {self.port} to stop")

    def remove(self) -> None:
        """Stop the server and delete its data directory."""
        if listening(self.port):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
