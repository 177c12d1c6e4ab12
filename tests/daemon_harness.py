"""Running the real daemon (`python -m tagd run`) as a subprocess, and reading what it did.

Everything here observes from outside: the daemon's log (stderr), the index through SQLite,
the files through a fresh exiftool process. Waits poll with deadlines; nothing sleeps long.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from PIL import Image

T = TypeVar("T")

TEMP_MARK = ".tagd-tmp-"
TAGGED_LINE = re.compile(r"^INFO (/.+?): \+\[", re.M)  # pipeline: "<path>: +[tags] 12 ms"


def write_config(path: Path, *, settle_s: float = 0.5, roots: Iterable[Path] = (), queue_size: int | None = None,
                 extra: str = "") -> Path:
    """A small config: fast settling, no periodic rescans, two inference threads."""
    lines = ["[watch]", f"settle_s = {settle_s}", "rescan_interval_s = 0", "batch_ms = 50"]
    if roots:
        lines.append("roots = [" + ", ".join(json.dumps(str(r)) for r in roots) + "]")
    if queue_size is not None:
        lines.append(f"queue_size = {queue_size}")
    lines += ["[model]", "threads = 2", "decode_workers = 2", "batch_size = 8", extra]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1,
               on_fail: Callable[[], str] | None = None) -> T:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_fail() if on_fail else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{detail}")
        time.sleep(interval)


class DaemonProcess:
    """One `tagd run` process; its stderr goes to a log file the test reads."""

    def __init__(self, workdir: Path, roots: Iterable[Path] = (), *, config: Path, index: Path,
                 env: dict[str, str] | None = None, name: str = "daemon", argv: list[str] | None = None) -> None:
        """`argv`: the command line after `python -m tagd`, for a test of the command line itself
        (default: run --config CONFIG --index INDEX ROOTS...)."""
        self.workdir = workdir
        n = 0
        while (workdir / f"{name}-{n}.log").exists():
            n += 1
        self.log_path = workdir / f"{name}-{n}.log"
        self.cmd = [sys.executable, "-m", "tagd", *(argv or ["run", "--config", str(config), "--index", str(index),
                                                            *(str(r) for r in roots)])]
        # Children inherit this marker: after a kill -9 the daemon's exiftool (which keeps waiting
        # for commands once its parent is gone) is found by it and ended too.
        self.marker = f"TAGD_TEST_DAEMON={uuid.uuid4().hex}"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {}), "TAGD_TEST_DAEMON": self.marker.split("=")[1]}
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            if env is None or key not in env:
                full_env.pop(key, None)  # never talk to a real systemd that runs the tests
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=workdir)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.log_path.name} (last {lines} lines) ---\n" + "\n".join(self.log().splitlines()[-lines:])

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_log(self, pattern: str, timeout: float = 60.0, count: int = 1) -> str:
        regex = re.compile(pattern, re.M)

        def found() -> str | None:
            text = self.log()
            if len(regex.findall(text)) >= count:
                return text
            if not self.running():
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before logging {pattern!r}\n{self.tail()}")
            return None

        return wait_until(found, timeout, f"log line {pattern!r} x{count}", on_fail=self.tail)

    def wait_for(self, predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
        """`wait_until`, failing at once (with the log) if the daemon exits meanwhile."""

        def check() -> T:
            value = predicate()
            if not value and not self.running():
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting for {what}\n{self.tail()}")
            return value

        return wait_until(check, timeout, what, interval, on_fail=self.tail)

    def wait_ready(self, timeout: float = 90.0) -> None:
        self.wait_log(r"^INFO ready: watching ", timeout)

    def wait_reconciled(self, timeout: float = 90.0) -> re.Match[str]:
        text = self.wait_log(r"^INFO reconciled ", timeout)
        return re.search(r"reconciled .*: (\d+) to tag, (\d+) moved, (\d+) gone, (\d+) unchanged", text)  # type: ignore[return-value]

    def tagged_paths(self) -> list[str]:
        return TAGGED_LINE.findall(self.log())

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def terminate(self, timeout: float = 30.0) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds until it exited)."""
        t0 = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"daemon did not exit within {timeout} s of SIGTERM\n{self.tail()}") from None
        finally:
            self._log.close()
        seconds = time.monotonic() - t0
        # A clean stop ends exiftool too: nothing of this daemon may be left running.
        deadline = time.monotonic() + 5
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            self.kill()
            raise AssertionError(f"processes {left} still running after the daemon stopped\n{self.tail()}")
        return rc, seconds

    def kill(self) -> None:
        """SIGKILL, like a crash; then end what it left running (its exiftool)."""
        if self.running():
            self.proc.kill()
        self.proc.wait(30)
        self._log.close()
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def leftovers(self) -> list[int]:
        """Processes this daemon started that are still alive (found by the marker in their env)."""
        found = []
        needle = self.marker.encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if needle in fh.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
        return found

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# ---- the index, read from outside --------------------------------------------------------------

def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    return conn


def index_rows(db: Path) -> dict[str, dict[str, Any]]:
    """Every photo row by path (empty while the daemon has not created the index yet)."""
    if not db.exists():
        return {}
    conn = _connect(db)
    try:
        cur = conn.execute("SELECT id, path, status, content_hash, size, mtime_ns, tagged_at, error, model_version FROM photo")
        cols = [c[0] for c in cur.description]
        return {row[1]: dict(zip(cols, row)) for row in cur}
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    finally:
        conn.close()


def path_counts(db: Path) -> dict[str, int]:
    conn = _connect(db)
    try:
        return dict(conn.execute("SELECT path, count(*) FROM photo GROUP BY path"))
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = _connect(db)
    try:
        return "\n".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def tagged(db: Path, paths: Iterable[Path]) -> bool:
    rows = index_rows(db)
    return all(rows.get(str(p), {}).get("status") == "tagged" for p in paths)


def index_keywords(db: Path, path: Path) -> set[str]:
    """The keywords the index says the file carries (tags kept or added)."""
    from tagd.index.db import Index

    with Index(db, readonly=True) as index:
        record = index.get(path, embedding=False)
    assert record is not None, f"{path} not in the index"
    return {t.name for t in record.tags if t.state in ("added", "kept")}


# ---- the files, read with a fresh exiftool -------------------------------------------------------

READ_ARGS = ["-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject", "-XMP-tagd:all"]


def exiftool_many(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """One exiftool process for many files (an independent reader, not tagd's warm one)."""
    if not paths:
        return {}
    argfile = "\n".join(str(p) for p in paths) + "\n"
    proc = subprocess.run(["exiftool", "-j", "-a", "-G1", "-struct", *READ_ARGS, "-@", "-"], input=argfile,
                          capture_output=True, text=True, timeout=300)
    records = json.loads(proc.stdout or "[]", parse_int=str, parse_float=str)
    return {r["SourceFile"]: r for r in records}


def subjects(record: dict[str, Any]) -> list[str]:
    value = record.get("XMP-dc:Subject")
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def has_provenance(record: dict[str, Any]) -> bool:
    return "XMP-tagd:Version" in record and "XMP-tagd:ModelVersion" in record


def temp_files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if TEMP_MARK in p.name)


def decodes(path: Path) -> str | None:
    """None when Pillow decodes the whole file, else the reason."""
    try:
        with Image.open(path) as im:
            im.load()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"{type(exc).__name__}: {exc}"


# ---- photos -------------------------------------------------------------------------------------

def make_photos(real_photo_dir: Path, dest: Path, n: int, size: tuple[int, int] = (320, 240), seed: int = 0,
                prefix: str = "p") -> list[Path]:
    """`n` distinct JPEGs of `size`, random crops of the real photos (seeded)."""
    rng = random.Random(seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(real_photo_dir.glob("*.jpg"))]
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        im = sources[i % len(sources)]
        w, h = im.size
        scale = rng.uniform(0.6, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = im.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = dest / f"{prefix}{i:04d}.jpg"
        crop.save(path, quality=85)
        out.append(path)
    return out


def copy_file(src: Path, dst: Path) -> None:
    """Like `cp`: open, write, close (one close-after-write event)."""
    dst.write_bytes(src.read_bytes())
