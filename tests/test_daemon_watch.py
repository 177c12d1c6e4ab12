"""The event path under load and at its limits: a 10,000-file burst through a real inotify
Watcher, the bounded WorkQueue overflowing without losing photos, the inotify watch limit,
and files that must never be read by the settle thread.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from daemon_harness import (
    DaemonProcess, copy_file, index_rows, make_photos, tagged, wait_until, write_config,
)
from tagd.daemon import WorkQueue
from tagd.photos import PathFilter
from tagd.watch import Change, Settler, Watcher, WatchLimitError


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


BURST = 10_000

# Another process drops the files, as a copy or an unpacked archive would: new folders appear
# in the middle of the burst (their watches are added while files already land in them).
DROP = textwrap.dedent("""
    import os, sys
    root, n = sys.argv[1], int(sys.argv[2])
    body = b"\\xff\\xd8" + b"\\0" * 200 + b"\\xff\\xd9"  # starts and ends like a JPEG
    for i in range(n):
        folder = os.path.join(root, "roll%02d" % (i // 1000))
        if i % 1000 == 0:
            os.mkdir(folder)
        with open(os.path.join(folder, "img%05d.jpg" % i), "wb") as fh:
            fh.write(body)
""")


def test_10000_files_at_once_every_one_emitted_once_memory_bounded(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    seen: Counter[Path] = Counter()
    lock = threading.Lock()

    def emit(change: Change) -> None:
        assert change.kind == "file", change
        with lock:
            seen[change.path] += 1

    watcher = Watcher(PathFilter([root], [".jpg"]), emit, settle_s=0.2)
    watcher.start()
    try:
        baseline = peak = rss_kib()
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", DROP, str(root), str(BURST)], check=True, timeout=120)
        created_s = time.monotonic() - started

        def all_emitted() -> bool:
            nonlocal peak
            peak = max(peak, rss_kib())
            with lock:
                return len(seen) >= BURST

        wait_until(all_emitted, 90, f"{BURST} files emitted",
                   on_fail=lambda: f"{len(seen)} emitted, {len(watcher.settler)} still settling")
        emitted_s = time.monotonic() - started
        time.sleep(1.0)  # anything emitted twice would show up now
        assert watcher.alive
    finally:
        watcher.stop()
    expected = {root / f"roll{i // 1000:02d}" / f"img{i:05d}.jpg" for i in range(BURST)}
    assert set(seen) == expected, f"missing {len(expected - set(seen))}, extra {len(set(seen) - expected)}"
    twice = {p: n for p, n in seen.items() if n > 1}
    assert not twice, f"{len(twice)} emitted more than once"
    assert len(watcher.settler) == 0
    growth_mib = (peak - baseline) / 1024
    print(f"\n10k burst: created in {created_s:.1f} s, all emitted after {emitted_s:.1f} s, "
          f"RSS growth {growth_mib:.1f} MiB (peak {peak / 1024:.0f} MiB)")
    assert growth_mib < 128, f"RSS grew {growth_mib:.0f} MiB for {BURST} pending files"


def test_work_queue_overflow_is_recorded_not_lost() -> None:
    queue = WorkQueue(maxsize=100)
    paths = [Path(f"/photos/img{i:05d}.jpg") for i in range(BURST)]
    accepted = [queue.put(p) for p in paths]
    assert accepted[:100] == [True] * 100 and not any(accepted[100:])
    assert queue.overflowed and len(queue) == 100
    assert queue.put(paths[0])  # already waiting: deduplicated, not refused
    taken = []
    while batch := queue.take(32, wait_s=0, fill_s=0):
        taken += batch
    assert taken == paths[:100]  # in arrival order
    assert queue.overflowed  # stays set until a rescan clears it


def test_daemon_queue_overflow_still_tags_every_photo(real_photo_dir: Path, tmp_path: Path) -> None:
    """queue_size 16 and 60 photos at once: the overflow triggers a rescan that finds the rest."""
    staging = make_photos(real_photo_dir, tmp_path / "staging", 60, size=(320, 240), seed=3)
    root = tmp_path / "photos"
    root.mkdir()
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml", settle_s=0.2, queue_size=16)
    with DaemonProcess(tmp_path, [root], config=config, index=db) as daemon:
        daemon.wait_ready()
        daemon.wait_reconciled()
        for src in staging:
            copy_file(src, root / src.name)
        daemon.wait_for(lambda: tagged(db, [root / s.name for s in staging]), 120, "all 60 photos tagged",
                        interval=0.3)
        rc, _ = daemon.terminate()
        assert rc == 0, daemon.tail()
        log = daemon.log()
    assert len(index_rows(db)) == 60
    assert log.count("INFO reconciled ") >= 2, "the overflow should have started a rescan"
    tagged_lines = daemon.tagged_paths()
    assert sorted(set(tagged_lines)) == sorted(str(root / s.name) for s in staging)


def _fail_add_watch_after(monkeypatch: pytest.MonkeyPatch, allowed: int) -> None:
    import watchdog.observers.inotify_c as inotify_c

    real = inotify_c.inotify_add_watch
    calls = {"n": 0}

    def add_watch(fd: int, path: bytes, mask: int) -> int:
        calls["n"] += 1
        if calls["n"] > allowed:
            ctypes.set_errno(errno.ENOSPC)  # what the kernel says at fs.inotify.max_user_watches
            return -1
        return real(fd, path, mask)

    monkeypatch.setattr(inotify_c, "inotify_add_watch", add_watch)


def test_inotify_watch_limit_names_the_sysctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "album" / "raw").mkdir(parents=True)
    _fail_add_watch_after(monkeypatch, 0)  # the limit is already reached when tagd starts
    threads_before = threading.active_count()
    watcher = Watcher(PathFilter([root], [".jpg"]), lambda change: None, settle_s=0.2)
    with pytest.raises(WatchLimitError) as info:
        watcher.start()
    message = str(info.value)
    assert message.startswith("inotify watch limit reached (fs.inotify.max_user_watches = ")
    assert "sudo sysctl fs.inotify.max_user_watches=" in message and "watch.polling = true" in message
    assert threading.active_count() == threads_before, "a failed start left the observer thread running"


def _in_user_namespace(script: str, watch_limit: int, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `script` in a new user namespace whose inotify watch limit is `watch_limit`: the
    kernel itself refuses watches past it with ENOSPC, as fs.inotify.max_user_watches does
    for a real library, and nothing outside the namespace is affected."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "-U", "-r", "sh", "-c", "echo 1 > /proc/sys/user/max_inotify_watches"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a user namespace with its own inotify limit: {probe.stderr.strip()}")
    wrapper = f"echo {watch_limit} > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\""
    return subprocess.run(["unshare", "-U", "-r", "sh", "-c", wrapper, sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parent.parent)


def _albums(root: Path, n: int) -> None:
    for i in range(n):
        (root / f"album{i}" / "raw").mkdir(parents=True)


def test_inotify_watch_limit_below_the_root(tmp_path: Path) -> None:
    """The kernel's limit is reached part-way down the tree (the root and a few folders get
    watches, the rest do not): tagd refuses to start with the sysctl, whatever the watchdog
    version does with the ENOSPC of the folders below the root."""
    root = tmp_path / "photos"
    _albums(root, 5)  # 11 folders
    script = textwrap.dedent(f"""
        from pathlib import Path
        from tagd.photos import PathFilter
        from tagd.watch import Watcher, WatchLimitError
        watcher = Watcher(PathFilter([Path({str(root)!r})], [".jpg"]), lambda change: None, settle_s=0.2)
        try:
            watcher.start()
        except WatchLimitError as exc:
            print("REFUSED", exc)
        else:
            print("STARTED")
            watcher.stop()
    """)
    proc = _in_user_namespace(script, watch_limit=4)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("REFUSED inotify watch limit reached (fs.inotify.max_user_watches = "), proc.stdout + proc.stderr
    # ... and under a limit the tree fits in, the same code starts.
    assert _in_user_namespace(script, watch_limit=64).stdout.startswith("STARTED")


def test_tagd_run_refuses_a_library_past_the_watch_limit(tmp_path: Path) -> None:
    """`tagd run` itself, in a namespace whose limit the library's folders exceed: one line
    naming the sysctl, exit 1, no traceback."""
    root = tmp_path / "photos"
    _albums(root, 5)
    config = write_config(tmp_path / "config.toml")
    script = textwrap.dedent(f"""
        import sys
        from tagd.cli import main
        sys.exit(main(["run", "--config", {str(config)!r}, "--index", {str(tmp_path / "index.sqlite3")!r}, {str(root)!r}]))
    """)
    proc = _in_user_namespace(script, watch_limit=6)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tagd run: inotify watch limit reached (fs.inotify.max_user_watches = "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_folders_past_the_limit_at_a_rescan_are_reported(tmp_path: Path) -> None:
    """Folders made after the start that the limit leaves unwatched are named at the next
    rescan (logged, not fatal: the rescan finds their photos meanwhile)."""
    root = tmp_path / "photos"
    _albums(root, 1)  # 3 folders
    script = textwrap.dedent(f"""
        import logging, os, time
        from pathlib import Path
        from tagd.photos import PathFilter
        from tagd.watch import Watcher
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        root = Path({str(root)!r})
        watcher = Watcher(PathFilter([root], [".jpg"]), lambda change: None, settle_s=0.2)
        watcher.start()
        print("unwatched at start", watcher.check_coverage(root, fatal=False))
        for i in range(6):
            (root / f"late{{i}}").mkdir()
        time.sleep(1.0)  # watchdog adds (or fails to add) watches for them from its events
        print("unwatched later", watcher.check_coverage(root, fatal=False))
        watcher.stop()
    """)
    proc = _in_user_namespace(script, watch_limit=5)
    assert proc.returncode == 0, proc.stderr
    assert "unwatched at start 0" in proc.stdout
    later = int(proc.stdout.split("unwatched later")[1].split()[0])
    assert later >= 4, proc.stdout + proc.stderr
    assert "are not watched: inotify watch limit reached" in proc.stderr, proc.stderr


def test_tagd_run_reports_the_inotify_limit(tmp_path: Path) -> None:
    """The real CLI with the kernel's ENOSPC forced: one line naming the sysctl, exit 1."""
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    config = write_config(tmp_path / "config.toml")
    script = textwrap.dedent(f"""
        import ctypes, errno, sys
        import watchdog.observers.inotify_c as inotify_c
        def add_watch(fd, path, mask):
            ctypes.set_errno(errno.ENOSPC)
            return -1
        inotify_c.inotify_add_watch = add_watch
        from tagd.cli import main
        sys.exit(main(["run", "--config", {str(config)!r}, "--index", {str(tmp_path / "index.sqlite3")!r}, {str(root)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tagd run: inotify watch limit reached (fs.inotify.max_user_watches = "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_settler_never_opens_a_fifo_or_follows_links_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"\xff\xd8" + b"\0" * 10 + b"\xff\xd9")
    (root / "inside.jpg").write_bytes(b"\xff\xd8" + b"\0" * 10 + b"\xff\xd9")
    os.mkfifo(root / "pipe.jpg")
    os.symlink(outside / "x.jpg", root / "out.jpg")
    os.symlink(root / "inside.jpg", root / "in.jpg")
    emitted: list[Path] = []
    now = [0.0]
    inside = PathFilter([root], [".jpg"])
    settler = Settler(0.1, lambda c: emitted.append(c.path), clock=lambda: now[0], follow_symlinks=True,
                      inside=lambda p: inside.root_of(p) is not None)
    for name in ("pipe.jpg", "out.jpg", "in.jpg"):
        settler.touch(root / name)  # created, never closed: only the JPEG tail can say complete
    done = threading.Event()

    def settle() -> None:
        for _ in range(4):
            now[0] += 0.2
            settler.run_due()
        done.set()

    threading.Thread(target=settle, daemon=True).start()
    assert done.wait(10), "the settle thread blocked (opened a FIFO?)"
    assert emitted == [root / "in.jpg"]  # a link inside the roots, with follow_symlinks on
    assert len(settler) == 0


def test_kernel_queue_overflow_asks_for_a_rescan(tmp_path: Path) -> None:
    """IN_Q_OVERFLOW (the kernel dropped events: max_queued_events) must lead to a reconciliation.

    The overflow goes through watchdog's own handling (the watcher's observer's InotifyFD,
    which turns it into an EventsLostEvent); only the kernel event itself is made up, since
    filling a real queue means changing a system-wide sysctl.
    """
    from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent

    root = tmp_path / "photos"
    root.mkdir()
    changes: list[Change] = []
    watcher = Watcher(PathFilter([root], [".jpg"]), changes.append, settle_s=0.1)
    watcher.start()
    try:
        reader = watcher._observer._inotify_fd  # type: ignore[union-attr]  # the one reading this watch
        reader.handle_event(InotifyEvent(-1, InotifyConstants.IN_Q_OVERFLOW, 0, b""))
        wait_until(lambda: any(c.kind == "rescan" for c in changes), 5, "a rescan after the overflow")
        # The watches were rebuilt: new files are still seen.
        (root / "after.jpg").write_bytes(b"\xff\xd8" + b"\0" * 10 + b"\xff\xd9")
        wait_until(lambda: Change("file", root / "after.jpg") in changes, 10, "a file after the overflow")
    finally:
        watcher.stop()
    assert [c.kind for c in changes].count("rescan") == 1


def test_settled_file_with_an_old_mtime_needs_one_look_a_fresh_one_two(tmp_path: Path) -> None:
    """A photo moved in whole (its mtime already settle_s old) is emitted at the first check;
    one modified just now must look unchanged twice, settle_s apart (latency vs safety)."""
    old, fresh = tmp_path / "old.jpg", tmp_path / "fresh.jpg"
    for path in (old, fresh):
        path.write_bytes(b"\xff\xd8" + b"\0" * 10 + b"\xff\xd9")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    emitted: list[Path] = []
    now = [0.0]
    settler = Settler(60.0, lambda c: emitted.append(c.path), clock=lambda: now[0])
    settler.touch(old, closed=True)
    settler.touch(fresh, closed=True)
    now[0] += 60.0
    settler.run_due()
    assert emitted == [old]
    now[0] += 60.0
    settler.run_due()
    assert emitted == [old, fresh]


def test_late_event_for_an_emitted_unchanged_file_does_not_emit_it_again(tmp_path: Path) -> None:
    """Under load inotify events arrive late: the settle thread may hand a file on before its
    close (or watchdog's synthetic created event for a new folder) is seen. Such a stale event
    must not emit the same, unchanged file a second time; a real change after that must."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"\xff\xd8" + b"\0" * 10 + b"\xff\xd9")
    os.utime(photo, (time.time() - 3600, time.time() - 3600))
    emitted: list[Path] = []
    now = [0.0]
    settler = Settler(0.2, lambda c: emitted.append(c.path), clock=lambda: now[0])

    def settle() -> None:
        for _ in range(3):
            now[0] += 0.6
            settler.run_due()

    settler.touch(photo)  # created
    settle()
    assert emitted == [photo]
    settler.touch(photo)  # the modified event, late
    settler.touch(photo, closed=True)  # and the close
    settle()
    assert emitted == [photo] and len(settler) == 0

    photo.write_bytes(b"\xff\xd8" + b"\1" * 20 + b"\xff\xd9")  # really changed
    settler.touch(photo, closed=True)
    settle()
    assert emitted == [photo, photo]

    os.chmod(photo, 0o444)  # same bytes, but a refused write may now go differently: try again
    settler.touch(photo)
    settle()
    assert emitted == [photo] * 3

    settler.forget(photo)  # deleted; a file of the same name and look that comes back is new
    settler.touch(photo, closed=True)
    settle()
    assert emitted == [photo] * 4
