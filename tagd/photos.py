"""What a photo is, how photos are found under folders, and how one is identified by content.

The one definition every command shares: `tagd tag`, `tag --write`, `revert`, `scan` and the
daemon all walk folders with `walk_photos` through a `PathFilter`, so they see the same files
and refuse the same symlinks. This module knows nothing of metadata, the model or the index
(they import it, not the other way round).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

log = logging.getLogger(__name__)

# Keywords go into the file itself: each format has a payload check in metadata/containers.py
# (TIFF by pixels).
IN_FILE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff"})
# Camera RAW: never written in-file, as Lightroom, darktable and digiKam do; keywords go to a
# sidecar. Pillow decodes few of them: one it cannot gets a one-line error like any bad file,
# rather than vanishing from a folder run.
RAW_SUFFIXES = frozenset({
    ".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".iiq", ".k25", ".kdc",
    ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl",
    ".sr2", ".srf", ".srw", ".x3f",
})
# Other photo formats: tagged where Pillow decodes them, keywords in a sidecar.
SIDECAR_ONLY_SUFFIXES = frozenset({".bmp", ".gif", ".heic", ".heif"})
# Every file tagd treats as a photo: the default of watch.extensions.
PHOTO_SUFFIXES = IN_FILE_SUFFIXES | RAW_SUFFIXES | SIDECAR_ONLY_SUFFIXES

# Never photos, whoever asks: partial downloads, editor backups, dotfiles, NAS thumbnail folders.
DEFAULT_EXCLUDE = ("*.part", "*.crdownload", "*.tmp", "*~", ".*", "@eaDir", "#recycle", ".thumbnails")
# tagd's own temp files beside a photo being written (metadata/writer.py TEMP_MARK).
TEMP_MARK = ".tagd-tmp-"


class PathFilter:
    """Which paths under the roots are photos tagd should look at."""

    def __init__(self, roots: Iterable[Path], extensions: Iterable[str] = PHOTO_SUFFIXES, include: Iterable[str] = (),
                 exclude: Iterable[str] = ()) -> None:
        self.roots = [Path(os.path.abspath(r)) for r in roots]
        self.extensions = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
        self.include = list(include)
        self.exclude = list(exclude)

    def root_of(self, path: Path) -> Path | None:
        for root in self.roots:
            if path == root or root in path.parents:
                return root
        return None

    def accepts(self, path: Path) -> bool:
        path = Path(os.path.abspath(path))
        root = self.root_of(path)
        if root is None or path.suffix.lower() not in self.extensions:
            return False
        rel = path.relative_to(root)
        if TEMP_MARK in path.name:
            return False
        for part in rel.parts:
            if any(fnmatch.fnmatch(part, pat) for pat in self.exclude):
                return False
        rel_text = rel.as_posix()
        if any(fnmatch.fnmatch(rel_text, pat) for pat in self.exclude):
            return False
        if self.include and not any(fnmatch.fnmatch(rel_text, pat) for pat in self.include):
            return False
        return True

    def excluded_dir(self, path: Path) -> bool:
        root = self.root_of(path)
        if root is None:
            return True
        return any(fnmatch.fnmatch(part, pat) for part in path.relative_to(root).parts for pat in self.exclude)


def link_refusal(path: Path, filter_: PathFilter, follow_symlinks: bool) -> str | None:
    """Why the symlink `path` is not followed, or None to follow it. The words are the
    watcher's too (watch.Settler), so a log reads the same whoever skipped the file."""
    if not follow_symlinks:
        return "symlink; not followed (watch.follow_symlinks is off)"
    target = Path(os.path.realpath(path))
    if filter_.root_of(target) is None:
        return f"symlink to {target} outside the watched folders; not followed"
    return None


def walk_photos(root: Path, filter_: PathFilter, follow_symlinks: bool = False) -> Iterator[tuple[Path, os.stat_result]]:
    """Photos under `root`, never leaving the roots: symlinked folders are not entered and a
    symlinked file is taken only when asked to and its target lies inside a root."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_walk_error):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not filter_.excluded_dir(here / d))
        for name in sorted(filenames):
            path = here / name
            if not filter_.accepts(path):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue  # vanished
            if stat_mod.S_ISLNK(st.st_mode):
                refusal = link_refusal(path, filter_, follow_symlinks)
                if refusal:
                    log.info("%s: %s", path, refusal)
                    continue
                try:
                    st = os.stat(path)
                except OSError as exc:
                    log.info("%s: symlink cannot be followed (%s); skipped", path, exc.strerror or exc)
                    continue
            if stat_mod.S_ISREG(st.st_mode):
                yield path, st
            else:
                log.info("%s: not a regular file; skipped", path)


def _walk_error(exc: OSError) -> None:
    log.warning("%s: cannot list folder: %s", exc.filename, exc.strerror)


@dataclass(frozen=True)
class Refused:
    """A path named on the command line that is not taken, and why."""

    path: Path
    reason: str


@dataclass
class Selection:
    """What command-line paths amount to: `refused`, known at once; `photos`, walked lazily."""

    refused: list[Refused]
    photos: Iterator[Path]


def select(paths: Sequence[Path], extensions: Iterable[str] = PHOTO_SUFFIXES, include: Iterable[str] = (),
           exclude: Iterable[str] = DEFAULT_EXCLUDE, follow_symlinks: bool = False) -> Selection:
    """The photos that command-line `paths` name, as scan and the daemon would see them.

    A folder is walked with `walk_photos`; the folders given (and the folder of each file given)
    are the roots a followed symlink must stay inside. A file named explicitly is taken whatever
    its suffix (it was asked for; a bad one gets its one-line error downstream), except a symlink
    the walker would not follow: that one is refused with the walker's reason. Paths are made
    absolute without resolving symlinks, so a symlinked folder keeps the name it was given.
    """
    given = [Path(os.path.abspath(p)) for p in paths]
    folders = [p for p in given if p.is_dir()]
    parents = [p.parent for p in given if p not in folders]
    filter_ = PathFilter(list(dict.fromkeys([*folders, *parents])), extensions, include, exclude)
    refused: list[Refused] = []
    taken: list[Path] = []
    for path in given:
        if path in folders:
            taken.append(path)
        elif os.path.islink(path) and (reason := link_refusal(path, filter_, follow_symlinks)):
            refused.append(Refused(path, reason))
        else:
            taken.append(path)

    def photos() -> Iterator[Path]:
        for path in taken:
            if path in folders:
                yield from (p for p, _ in walk_photos(path, filter_, follow_symlinks))
            else:
                yield path

    return Selection(refused, photos())


def file_sha256(path: Path) -> str:
    """The content hash the index identifies a photo by (a moved photo keeps it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
