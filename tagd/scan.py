"""Reconciliation: what changed under the roots while nobody was watching.

Compared by path + size + mtime first (no file is read for an unchanged library), and by
content hash only where a path is new and a missing one had the same size: that is a move,
and a move updates the index without running the model again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tagd.photos import PathFilter, file_sha256, walk_photos

if TYPE_CHECKING:
    from tagd.index.db import Index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Known:
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    model_version: str | None
    error: str | None = None


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
            "SELECT path, size, mtime_ns, content_hash, status, model_version, error FROM photo "
            "WHERE status != 'gone' AND substr(CAST(path AS BLOB), 1, ?) = ?",
            (len(prefix), prefix),
        )
        return {Path(os.fsdecode(p if isinstance(p, bytes) else os.fsencode(p))): Known(*rest) for p, *rest in rows}

    return index.read(read)


def plan(index: "Index", roots: list[Path], filter_: PathFilter, model_version: str,
         follow_symlinks: bool = False) -> ScanPlan:
    from tagd.metadata.writer import refused_for_permissions

    result = ScanPlan()
    for root in roots:
        known = known_under(index, root)
        fresh: list[tuple[Path, os.stat_result]] = []
        for path, st in walk_photos(root, filter_, follow_symlinks):
            record = known.pop(path, None)
            if record is None:
                fresh.append((path, st))
            elif (record.size, record.mtime_ns) != (st.st_size, st.st_mtime_ns) or (
                record.status == "tagged" and record.model_version != model_version
            ) or record.status not in ("tagged", "failed") or (
                record.status == "failed" and refused_for_permissions(record.error)
            ):
                # (A read-only refusal goes to the pipeline, whose needs_work retries it only
                # if a chmod has lifted it since.)
                result.work.append(path)
            else:
                result.unchanged += 1
        # `known` now holds what disappeared; a fresh file with the same bytes is the same photo.
        missing_by_size: dict[int, list[tuple[Path, Known]]] = {}
        for path, record in known.items():
            if record.content_hash:
                missing_by_size.setdefault(record.size, []).append((path, record))
        moved_from: set[Path] = set()
        for path, st in fresh:
            candidates = [c for c in missing_by_size.get(st.st_size, []) if c[0] not in moved_from]
            if candidates:
                digest = file_sha256(path)
                match = next((old for old, rec in candidates if rec.content_hash == digest), None)
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
