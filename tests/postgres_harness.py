"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, a fresh data folder,
a Unix socket only (no TCP port), trust authentication, stopped at the end of the session.

PostgreSQL refuses to run as root; as root (CI containers) the server runs as the `postgres`
user the Debian package creates. Without the binaries the tests that need a server skip and say
how to get one (scripts/test installs it).
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

USER = "tagd"


def bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    return Path(versions[-1]).parent if versions else None


def why_unavailable() -> str | None:
    if bin_dir() is None:
        return "no PostgreSQL server binaries (pg_ctl): apt-get install postgresql (scripts/test does)"
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed: pip install 'tagd[postgres]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a `postgres` user to run the server as"
    return None


class PgServer:
    def __init__(self) -> None:
        self.bin = bin_dir()
        assert self.bin is not None
        self.root = Path(tempfile.mkdtemp(prefix="tagd-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.socket_dir.mkdir()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for p in (self.root, self.socket_dir):
                os.chown(p, owner.pw_uid, owner.pw_gid)
            os.chmod(self.root, 0o755)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count()

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self, durable: bool = False) -> None:
        """`durable`: fsync and synchronous commits as a real deployment has them (benchmarks);
        the tests go without (their data is thrown away)."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        options = (f"-c listen_addresses='' -c unix_socket_directories={self.socket_dir} "
                   "-c max_connections=100 -c max_locks_per_transaction=256 -c max_pred_locks_per_transaction=256")
        if not durable:
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60",
                  "-l", str(self.root / "server.log"), "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def emptied(self, url: str) -> str:
        """The database at `url` with nothing in it again (much faster than a new database:
        property tests make one index per example)."""
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        return url

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
