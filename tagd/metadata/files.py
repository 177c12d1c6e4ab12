"""The file-system side of a safe write: tagd's temp files (named, found and cleaned up after a
crash), fsync of a file and its folder, carrying mode, owner and xattrs over to the new file,
the pixel check, the one-line reasons for OS errors, and the errors a write raises. Everything
tagd.metadata.writer needs from the disk besides exiftool."""

from __future__ import annotations

import errno
import logging
import os
import re
import stat as stat_mod
from pathlib import Path

from tagd.errors import PhotoError

log = logging.getLogger("tagd.metadata.writer")


TEMP_MARK = ".tagd-tmp-"


TEMP_RE = re.compile(r"^\..*\.tagd-tmp-(\d+)-[0-9a-f]+(\.[^.]*)?$")


# The refusals that a chmod can lift (refused_for_permissions, writable).
READ_ONLY_FILE = "read-only file (no write permission bits)"


READ_ONLY_DIRECTORY = "directory is read-only (no write permission bits)"


def refused_for_permissions(reason: str | None) -> bool:
    return bool(reason) and reason.startswith((READ_ONLY_FILE, READ_ONLY_DIRECTORY))  # type: ignore[union-attr]


def writable(target: Path) -> bool:
    """Whether the permission bits of `target` (if it exists) and its folder now allow a
    write: the checks behind READ_ONLY_FILE and READ_ONLY_DIRECTORY."""
    bits = stat_mod.S_IWUSR | stat_mod.S_IWGRP | stat_mod.S_IWOTH
    try:
        if target.exists() and not os.stat(target).st_mode & bits:
            return False
        return bool(os.stat(target.parent).st_mode & bits)
    except OSError:
        return False


class WriteError(PhotoError):
    """Keywords could not be written; the original is untouched. `reason` is one line."""


class ChangedWhileWriting(WriteError):
    """Someone else (the user, another machine's tagd on a shared folder) changed the file while
    tagd wrote it: their version stays. Not a failure of the photo: the change's own event, or
    the next scan, tags it again if it still needs it."""


class InFileUnsafe(WriteError):
    """A sound photo that tagd cannot edit in place without changing something else in it
    (exiftool would normalise a value, readers disagree about its XMP, ...): with
    `write.sidecar = "auto"` its keywords go to a sidecar instead, the photo untouched."""


def remove_stale_temp_files(directory: Path) -> int:
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        match = TEMP_RE.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
    return removed


def is_temp_file(name: str) -> bool:
    return bool(TEMP_RE.match(name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def changed(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino, a.st_dev) != (b.st_size, b.st_mtime_ns, b.st_ino, b.st_dev)


def same_pixels(original: Path, temp: Path) -> None:
    from PIL import Image

    try:
        with Image.open(original) as a, Image.open(temp) as b:
            if a.size != b.size or a.mode != b.mode or a.tobytes() != b.tobytes():
                raise WriteError(original, "image pixels would change; not written")
    except WriteError:
        raise
    except Exception as exc:  # Pillow cannot read this TIFF flavour: exiftool's checks stand alone
        log.debug("%s: pixel comparison skipped (%s)", original, exc)


def copy_attributes(original: Path, temp: Path, st: os.stat_result | None, mtime: str) -> None:
    assert st is not None
    os.chmod(temp, stat_mod.S_IMODE(st.st_mode))
    tst = os.stat(temp)
    if (tst.st_uid, tst.st_gid) != (st.st_uid, st.st_gid):
        try:
            os.chown(temp, st.st_uid, st.st_gid)
        except PermissionError:
            raise WriteError(original, "cannot keep the file's owner/group (permission denied); not written") from None
    try:
        names = os.listxattr(original)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        names = []
    for name in names:
        try:
            os.setxattr(temp, name, os.getxattr(original, name))
        except OSError as exc:
            raise WriteError(original, f"cannot keep extended attribute {name} ({exc.strerror}); not written") from None
    if mtime == "preserve":
        os.utime(temp, ns=(st.st_atime_ns, st.st_mtime_ns))


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("%s: could not remove temp file: %s", path, exc.strerror)


def os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full; not written"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; not written"
    if exc.errno == errno.EROFS:
        return "read-only file system; not written"
    return f"{exc.strerror or exc}; not written"
