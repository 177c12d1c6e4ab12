"""Which folders the kernel really watches for this process, read from /proc, not from watchdog.

watchdog adds one inotify watch per folder below a root and, depending on its version, swallows
the errors of those below the root (ENOSPC when the watch limit is reached, EACCES for a folder
it may not read). A folder without a watch is silent until the next rescan. So after watches
are added, tagd asks the kernel (`/proc/self/fdinfo` lists every watch of an inotify
descriptor by device and inode) which folders have none, and, for those, asks the kernel why
with a watch of its own.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from pathlib import Path
from typing import Callable, Iterator

_WATCH_LINE = re.compile(r"^inotify wd:\S+ ino:([0-9a-f]+) sdev:([0-9a-f]+)", re.M)
_IN_ONLYDIR = 0x01000000
_IN_DELETE_SELF = 0x00000400


def watched_dirs() -> set[tuple[int, int]] | None:
    """(st_dev, st_ino) of everything this process's inotify descriptors watch; None where
    /proc does not tell (no procfs, or a kernel without inotify fdinfo)."""
    out: set[tuple[int, int]] = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    seen_any = False
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue  # closed meanwhile
        seen_any = True
        for ino, sdev in _WATCH_LINE.findall(info):
            out.add((_user_dev(int(sdev, 16)), int(ino, 16)))
    return out if seen_any else None


def _user_dev(kernel_dev: int) -> int:
    """The kernel's internal dev_t (major << 20 | minor), as fdinfo prints it, in st_dev's encoding."""
    return os.makedev(kernel_dev >> 20, kernel_dev & 0xFFFFF)


def folders(root: Path, skip: Callable[[Path], bool] = lambda p: False) -> Iterator[tuple[Path, os.stat_result]]:
    """Every folder under `root` (root included) as watchdog walks it: symlinks not entered."""
    try:
        yield root, os.stat(root)
    except OSError:
        return
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep = []
        for name in dirnames:
            path = here / name
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if os.path.islink(path) or skip(path):
                continue
            keep.append(name)
            yield path, st
        dirnames[:] = keep


def unwatched(root: Path) -> list[Path]:
    """Folders under `root` that no inotify watch of this process covers (empty if /proc cannot say)."""
    watched = watched_dirs()
    if watched is None:
        return []
    return [path for path, st in folders(root) if (st.st_dev, st.st_ino) not in watched]


def why_unwatchable(path: Path) -> int:
    """The errno the kernel gives a new watch on `path` (0: it can be watched after all, e.g. a
    folder created after watchdog walked the tree, which watchdog adds from its own event)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return ctypes.get_errno() or errno.EMFILE
    try:
        if libc.inotify_add_watch(fd, os.fsencode(path), _IN_ONLYDIR | _IN_DELETE_SELF) >= 0:
            return 0
        return ctypes.get_errno() or errno.EIO
    finally:
        os.close(fd)
