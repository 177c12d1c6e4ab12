"""Reconciliation: what changed under the roots while nobody was watching.

Compared by path + size + mtime first (no file is read for an unchanged library), and by
content hash only where a path is new and a missing one had the same size: that is a move,
and a move updates the index without running the model again. What a known file needs is
tagd.planner's decision, the same the daemon and the pipeline take.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tagd.photos import PathFilter, file_sha256, walk_photos
from tagd.planner import Known, decide, same_content

if TYPE_CHECKING:
    from tagd.index.db import Index

log = logging.getLogger(__name__)


@dataclass
class ScanPlan:
    work: list[Path] = field(default_factory=list)  # new or changed: to identify and tag
    moves: list[tuple[Path, Path]] = field(default_factory=list)  # (old, new), same content
    gone: list[Path] = field(default_factory=list)
    unchanged: int = 0


def known_under(index: "Index", root: Path) -> dict[Path, Known]:
    prefix = os.fsencode(Path(root)) + b"/"

    def read(conn: sqlite3.Connection) -> dict[Path, Known]:
        rows = conn.execute(
            "SELECT path, size, mtime_ns, content_hash, status, model_version, error, "
            "EXISTS (SELECT 1 FROM photo_reverted r WHERE r.photo_id = photo.id) FROM photo "
            "WHERE status != 'gone' AND substr(CAST(path AS BLOB), 1, ?) = ?",
            (len(prefix), prefix),
        )
        return {Path(os.fsdecode(p if isinstance(p, bytes) else os.fsencode(p))): Known(*rest[:6], bool(rest[6]))
                for p, *rest in rows}

    return index.read(read)


def plan(index: "Index", roots: list[Path], filter_: PathFilter, model_version: str,
         follow_symlinks: bool = False) -> ScanPlan:
    result = ScanPlan()
    for root in roots:
        known = known_under(index, root)
        fresh: list[tuple[Path, os.stat_result]] = []
        for path, st in walk_photos(root, filter_, follow_symlinks):
            decision = decide(known.pop(path, None), st.st_size, st.st_mtime_ns, model_version)
            if decision == "new":
                fresh.append((path, st))
            elif decision in ("unchanged", "reverted"):
                result.unchanged += 1
            else:
                # "if-writable" and "if-content-changed" too: the pipeline looks closer (its
                # needs_work asks the planner again, with the file at hand).
                result.work.append(path)
        # `known` now holds what disappeared; a fresh file with the same bytes is the same photo.
        missing_by_size: dict[int, list[tuple[Path, Known]]] = {}
        for path, record in known.items():
            if record.content_hash:
                missing_by_size.setdefault(record.size, []).append((path, record))
        moved_from: set[Path] = set()
        for path, st in fresh:
            digest = functools.cache(lambda path=path: file_sha256(path))
            candidates = [c for c in missing_by_size.get(st.st_size, []) if c[0] not in moved_from]
            match = next((old for old, rec in candidates if same_content(rec, st.st_size, digest)), None)
            if match is not None:
                moved_from.add(match)
                result.moves.append((match, path))
                continue
            result.work.append(path)
        result.gone.extend(p for p in known if p not in moved_from)
    return result


class Progress:
    """One status line on a terminal: count, rate, ETA. Silent when stderr is not a tty."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, label: str = "tagging") -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.stream, self.label = stream, label
        self.started = time.monotonic()
        self._last = 0.0
        self.enabled = stream.isatty()

    def step(self, ok: bool = True) -> None:
        self.done += 1
        self.failed += not ok
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.2 or self.done == self.total):
            self._last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0
            self.stream.write(f"\r{self.label} {self.done}/{self.total}  {rate:5.1f} photos/s  ETA {eta:4.0f} s  failed {self.failed}  ")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
