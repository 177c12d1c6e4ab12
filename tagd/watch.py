"""Watching folders: watchdog events -> filter -> settle -> changes for the daemon to process.

The handler only filters and records; the work happens elsewhere. A file is handed on only
when it is complete: closed after writing (or moved into place), then unchanged in size,
mtime and inode for the settle time. A copy over a slow link that pauses longer than that
is still not read half-written, because it has not been closed yet.
"""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from watchdog.events import (
    DirAttribEvent, DirDeletedEvent, DirMovedEvent, EventsLostEvent, FileAttribEvent, FileClosedEvent,
    FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler,
)

from tagd.errors import TagdError
from tagd.inotify import unwatched, why_unwatchable
from tagd.photos import PathFilter

log = logging.getLogger(__name__)

# Without a close event (polling observers, some network file systems) a file must be
# stable this much longer before it counts as complete, unless its format says it is.
UNCLOSED_FACTOR = 5.0
UNCLOSED_MIN_S = 10.0

# What was handed on is remembered for a while, so that an event that arrives late (inotify
# lags under load) does not hand on the same unchanged file again.
EMITTED_MEMORY_S = 120.0
EMITTED_MAX = 100_000


class WatchLimitError(TagdError):
    pass


@dataclass(frozen=True)
class Change:
    kind: Literal["file", "moved", "deleted", "rescan"]
    path: Path
    src: Path | None = None


@dataclass
class _Pending:
    due: float
    closed: bool
    first_seen: float
    signature: tuple[int, int, int] | None = None
    stable_since: float = 0.0


class Settler:
    """Holds paths until they are complete, then emits them once. Thread-safe.

    Only regular files are emitted. A symlink is followed only with `follow_symlinks` and when
    `inside(target)` says its target lies in the watched folders (the same rule as scan.py);
    anything else is dropped with one log line saying why.
    """

    def __init__(self, settle_s: float, emit: Callable[[Change], None], clock: Callable[[], float] = time.monotonic,
                 follow_symlinks: bool = False, inside: Callable[[Path], bool] | None = None) -> None:
        self.settle_s = settle_s
        self.emit = emit
        self.clock = clock
        self.follow_symlinks = follow_symlinks
        self.inside = inside
        self._pending: dict[Path, _Pending] = {}
        # path -> (stat identity when emitted, clock at emission), oldest first
        self._emitted: OrderedDict[Path, tuple[tuple[int, ...], float]] = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def touch(self, path: Path, closed: bool = False) -> None:
        now = self.clock()
        with self._lock:
            entry = self._pending.get(path)
            if entry is None:
                self._pending[path] = _Pending(now + self.settle_s, closed, now)
            else:
                entry.closed = entry.closed or closed
                entry.due = now + self.settle_s
        self._wake.set()

    def forget(self, path: Path) -> None:
        with self._lock:
            self._pending.pop(path, None)
            self._emitted.pop(path, None)

    def forget_under(self, folder: Path) -> None:
        with self._lock:
            for table in (self._pending, self._emitted):
                for path in [p for p in table if folder in p.parents]:
                    del table[path]

    def run_due(self) -> float:
        """Check every due path; returns seconds until the next check is due."""
        now = self.clock()
        with self._lock:
            due = [(p, e) for p, e in self._pending.items() if e.due <= now]
        for path, entry in due:
            self._check(path, entry, now)
        with self._lock:
            return max(0.05, min((e.due for e in self._pending.values()), default=now + 3600) - self.clock())

    def _check(self, path: Path, entry: _Pending, now: float) -> None:
        try:
            st = os.lstat(path)
            if stat_mod.S_ISLNK(st.st_mode):
                refusal = self._link_refusal(path)
                if refusal:
                    self._drop(path, entry, refusal)
                    return
                st = os.stat(path)
        except OSError as exc:
            if os.path.islink(path):  # a loop or a dangling link
                self._drop(path, entry, f"symlink cannot be followed ({exc.strerror or exc}); skipped")
            else:
                self.forget(path)  # gone again (a temp file renamed away, a cancelled copy)
            return
        if not stat_mod.S_ISREG(st.st_mode):
            # A FIFO or device named like a photo: reading it could block this thread forever.
            self._drop(path, entry, "not a regular file; skipped")
            return
        signature = (st.st_size, st.st_mtime_ns, st.st_ino)
        # ctime too: a chmod that makes a refused read-only photo writable is worth a new try.
        identity = signature + (st.st_ctime_ns,)
        with self._lock:
            if self._pending.get(path) is not entry:
                return
            if self._already_emitted(path, identity, now):
                del self._pending[path]
                return
            if signature != entry.signature:
                first_look = entry.signature is None
                entry.signature, entry.stable_since = signature, now
                # A file last modified at least settle_s ago (moved in, or a copy that kept
                # its times) has been stable all that while: no second look needed. One still
                # being written has a fresh mtime and waits for a second, unchanged look.
                if not (first_look and time.time() - st.st_mtime >= self.settle_s):
                    entry.due = now + self.settle_s
                    return
                entry.stable_since = now - self.settle_s
            stable_for = now - entry.stable_since
            complete = entry.closed or stable_for >= max(self.settle_s * UNCLOSED_FACTOR, UNCLOSED_MIN_S) or _ends_complete(path)
            if stable_for + 1e-9 < self.settle_s or not complete:
                entry.due = now + max(self.settle_s, 0.5)
                return
            del self._pending[path]
            self._emitted[path] = (identity, now)
            self._emitted.move_to_end(path)
        self.emit(Change("file", path))

    def _already_emitted(self, path: Path, identity: tuple[int, ...], now: float) -> bool:
        """True for a file handed on within EMITTED_MEMORY_S and unchanged since. Caller holds the lock."""
        while self._emitted:
            oldest, (_, at) = next(iter(self._emitted.items()))
            if len(self._emitted) <= EMITTED_MAX and now - at < EMITTED_MEMORY_S:
                break
            del self._emitted[oldest]
        seen = self._emitted.get(path)
        return seen is not None and seen[0] == identity

    def _link_refusal(self, path: Path) -> str | None:
        if not self.follow_symlinks:
            return "symlink; not followed (watch.follow_symlinks is off)"
        target = Path(os.path.realpath(path))
        if self.inside is not None and not self.inside(target):
            return f"symlink to {target} outside the watched folders; not followed"
        return None

    def _drop(self, path: Path, entry: _Pending, reason: str) -> None:
        with self._lock:
            if self._pending.get(path) is not entry:
                return
            del self._pending[path]
        log.info("%s: %s", path, reason)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            wait = self.run_due()
            self._wake.wait(min(wait, 1.0))
            self._wake.clear()


def _ends_complete(path: Path) -> bool:
    """A JPEG that ends with EOI or a PNG that ends with IEND is complete whoever wrote it."""
    try:
        # Non-blocking, and only a regular file: a FIFO swapped in must not hang the settle thread.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
                return False
            head = fh.read(8)
            fh.seek(-12, os.SEEK_END)
            tail = fh.read(12)
    except OSError:
        return False
    if head.startswith(b"\xff\xd8"):
        return tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG"):
        return tail[4:8] == b"IEND"
    return False


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "Watcher") -> None:
        self.w = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:  # an odd event must never kill the observer thread
            log.exception("watch: could not handle %r", event)

    def _dispatch(self, event: FileSystemEvent) -> None:
        w = self.w
        src = Path(os.fsdecode(event.src_path))
        if isinstance(event, (FileCreatedEvent, FileModifiedEvent, FileAttribEvent)):
            # FileAttribEvent: a chmod (or chown, xattr) gives a photo refused as read-only a new
            # try; the settler hands it on only if its identity (ctime included) changed.
            if w.filter.accepts(src):
                w.settler.touch(src)
        elif isinstance(event, DirAttribEvent):
            # A folder made writable: its photos refused for a read-only folder get a new try
            # (the pipeline retries only those; the others are unchanged and skipped cheaply).
            w.retry_folder(src)
        elif isinstance(event, EventsLostEvent):
            # The kernel's queue overflowed (IN_Q_OVERFLOW): events were dropped; watchdog has
            # rebuilt its watches, and a reconciliation finds what the lost events said.
            w.emit(Change("rescan", src))
        elif isinstance(event, FileClosedEvent):
            if w.filter.accepts(src):
                w.settler.touch(src, closed=True)
        elif isinstance(event, FileMovedEvent):
            dest = Path(os.fsdecode(event.dest_path))
            w.settler.forget(src)
            if not w.filter.accepts(dest):
                if w.filter.accepts(src):
                    w.emit(Change("deleted", src))
            elif ".tagd-tmp-" in src.name or not w.filter.accepts(src):
                # Renamed into place (a browser download, a sync client, tagd's own write):
                # a complete file, but let it settle in case more follows.
                w.settler.touch(dest, closed=True)
            else:
                w.emit(Change("moved", dest, src))
        elif isinstance(event, FileDeletedEvent):
            w.settler.forget(src)
            if w.filter.accepts(src):
                w.emit(Change("deleted", src))
        elif isinstance(event, (DirMovedEvent, DirDeletedEvent)):
            # A whole folder moved or vanished: let reconciliation sort it out by content hash.
            w.settler.forget_under(src)
            w.emit(Change("rescan", src))


class Watcher:
    """Recursive watches on the roots; `emit` receives settled changes."""

    def __init__(self, filter_: PathFilter, emit: Callable[[Change], None], settle_s: float,
                 polling: bool = False, poll_interval: float = 30.0, follow_symlinks: bool = False) -> None:
        self.filter = filter_
        self.emit = emit
        self.settler = Settler(settle_s, emit, follow_symlinks=follow_symlinks,
                               inside=lambda target: filter_.root_of(target) is not None)
        self.polling = polling
        self.poll_interval = poll_interval
        self._observer = None
        self._watches: dict[Path, object] = {}
        self._stop = threading.Event()
        self._settle_thread: threading.Thread | None = None

    def start(self) -> None:
        if self.polling:
            from watchdog.observers.polling import PollingObserver

            self._observer = PollingObserver(timeout=self.poll_interval)
        else:
            from watchdog.observers import Observer

            self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        try:
            self.set_roots(self.filter.roots)
        except BaseException:
            self.stop()  # a refused start (watch limit) leaves no observer thread behind
            raise
        self._settle_thread = threading.Thread(target=self.settler.run, args=(self._stop,), name="tagd-settle", daemon=True)
        self._settle_thread.start()

    def set_roots(self, roots: list[Path]) -> None:
        """Watch exactly these roots (SIGHUP: new ones added, removed ones dropped)."""
        assert self._observer is not None
        wanted = [Path(os.path.abspath(r)) for r in roots]
        for root in list(self._watches):
            if root not in wanted:
                self._observer.unschedule(self._watches.pop(root))
                log.info("stopped watching %s", root)
        self.filter.roots = wanted
        for root in wanted:
            if root in self._watches:
                continue
            if not root.is_dir():
                log.warning("%s: not a folder; not watched", root)
                continue
            try:
                self._watches[root] = self._observer.schedule(_Handler(self), str(root), recursive=True)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise WatchLimitError(inotify_limit_message()) from None
                raise
            self.check_coverage(root)
            log.info("watching %s%s", root, " (polling)" if self.polling else "")

    def check_coverage(self, root: Path, fatal: bool = True) -> int:
        """Find the folders under `root` that have no inotify watch (watchdog may swallow the
        errors below the root) and say why; returns how many. The watch limit raises
        WatchLimitError (`fatal`, at start) or is logged as an error (at a rescan, which finds
        those folders' photos meanwhile); a folder that cannot be watched for another reason
        is logged. Polling watches everything: nothing to check."""
        if self.polling:
            return 0
        missing = unwatched(root)
        for folder in missing:
            err = why_unwatchable(folder)
            if err == errno.ENOSPC:
                if fatal:
                    raise WatchLimitError(inotify_limit_message())
                log.error("%s and %d other folder(s) are not watched: %s", folder, len(missing) - 1, inotify_limit_message())
                break
            if err:
                log.warning("%s: cannot watch this folder (%s); its photos are found by rescans only",
                            folder, os.strerror(err))
        return len(missing)

    def retry_folder(self, folder: Path) -> None:
        """Hand the photos directly in `folder` to the settler again, even those it handed on a
        moment ago: a folder's chmod changes nothing about the files themselves."""
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for name in names:
            path = folder / name
            if self.filter.accepts(path):
                self.settler.forget(path)
                self.settler.touch(path, closed=True)

    @property
    def alive(self) -> bool:
        return bool(self._observer and self._observer.is_alive() and self._settle_thread and self._settle_thread.is_alive())

    def stop(self) -> None:
        self._stop.set()
        self.settler._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._settle_thread is not None:
            self._settle_thread.join(timeout=5)


def inotify_limit_message() -> str:
    try:
        current = Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip()
    except OSError:
        current = "?"
    return (
        f"inotify watch limit reached (fs.inotify.max_user_watches = {current}): raise it with "
        "`sudo sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/90-tagd.conf), "
        "or set watch.polling = true"
    )
