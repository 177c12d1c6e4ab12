"""What the web app reads from the index: pages of photos, one photo, tags, statistics.

Photos are named by their index id in every URL, never by a path: a request can only reach a
file the index holds, and `Catalog.file` serves one only when its real path (symlinks resolved)
lies inside a served root. Reads share one read-only connection behind a lock; the daemon and
the CLI write to the same index meanwhile (WAL: readers never block them).
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from tagd.index.db import Index, PhotoRecord, fs_bytes
from tagd.index.errors import QueryError

T = TypeVar("T")


@dataclass
class Tile:
    """A photo in a grid."""

    id: int
    path: Path
    content_hash: str | None
    taken: datetime | None
    score: float = 0.0

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Page:
    query: str
    parsed: str  # the query as tagd understood it ("" for every photo)
    total: int
    tiles: list[Tile]
    unknown: list[str]  # words no tag is called, with suggestions, when nothing was found


class Catalog:
    def __init__(self, index_path: Path, roots: Sequence[Path]) -> None:
        self.index = Index(index_path, readonly=True, any_thread=True)
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        # The index holds the paths as the roots were given (abspath), possibly through a symlink:
        # lists are limited to either form; serving checks the real path.
        from tagd.index.query_tree import quote_value

        given = [Path(os.path.abspath(r)) for r in roots]
        scopes = list(dict.fromkeys([*given, *self.roots]))
        self._scope = " OR ".join("path:" + quote_value(str(r)) for r in scopes)
        self._listed = scopes
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.index.close()

    def _read(self, fn: Callable[[Index], T]) -> T:
        with self._lock:
            return fn(self.index)

    def page(self, query: str, *, sort: str, offset: int, limit: int, suggestions: bool = False) -> Page:
        """Photos matching `query` (tagd search's language), `limit` of them from `offset`.
        Raises QueryError for a query that does not parse."""
        from tagd.index.query import parse
        from tagd.index.query_tree import unparse

        parsed = unparse(parse(query)) if query.strip() else ""

        scoped = f"({query}) ({self._scope})" if query.strip() else f"({self._scope})"

        def run(index: Index) -> Page:
            total = index.count(scoped, suggestions=suggestions)
            hits = index.search(scoped, sort=sort, limit=offset + limit, suggestions=suggestions)[offset:]
            hits = [h for h in hits if self._listable(h.path)]  # a root holding glob characters matches more
            unknown = [str(u) for u in index.unknown_words(query)] if not total and query.strip() else []
            return Page(query, parsed, total, self._tiles(index, [h.path for h in hits], [h.score for h in hits]), unknown)

        return self._read(run)

    def photo(self, photo_id: int) -> PhotoRecord | None:
        path = self._path_of(photo_id)
        return None if path is None else self._read(lambda index: index.get(path))

    def tiles_for(self, paths: Sequence[Path]) -> list[Tile]:
        return self._read(lambda index: self._tiles(index, paths, [0.0] * len(paths)))

    def similar(self, record: PhotoRecord, k: int = 8) -> list[Tile]:
        if record.embedding is None:
            return []
        hits = [h for h in self._read(lambda index: index.similar(record.embedding, k=2 * k, exclude=record.path))
                if self._listable(h[0])][:k]
        return self._read(lambda index: self._tiles(index, [p for p, _ in hits], [s for _, s in hits]))

    def file(self, photo_id: int) -> tuple[Path, str | None] | None:
        """(path, content hash) of the photo with this id, when it may be served: a regular file
        whose real path is inside a served root. None otherwise (the caller says 404)."""
        if not 0 < photo_id < 2**63:  # SQLite's integers
            return None
        row = self._read(lambda index: index.read(lambda conn: conn.execute(
            "SELECT path, content_hash FROM photo WHERE id = ? AND status != 'gone'", (photo_id,)).fetchone()))
        if row is None:
            return None
        path = Path(row[0])
        return (path, row[1]) if self.servable(path) else None

    def servable(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        if not any(real == root or root in real.parents for root in self.roots):
            return False
        try:
            return stat.S_ISREG(os.stat(real).st_mode)
        except OSError:
            return False

    def _listable(self, path: Path) -> bool:
        return any(root in path.parents for root in self._listed)

    def ids(self, photo_ids: Sequence[int]) -> list[Path]:
        """The servable paths of these photo ids (others are left out)."""
        out = []
        for photo_id in photo_ids:
            found = self.file(photo_id)
            if found is not None:
                out.append(found[0])
        return out

    def tag_counts(self, top: int = 100_000) -> list[tuple[str, int]]:
        stats = self._read(lambda index: index.stats(top=top, failed=0))
        return [(t["name"], t["photos"]) for t in stats["tags"]["top"]]

    def stats(self, failed: int = 200) -> dict[str, Any]:
        stats = self._read(lambda index: index.stats(top=30, failed=failed))
        stats["per_day"] = self.tagged_per_day()
        return stats

    def tagged_per_day(self, days: int = 30) -> list[tuple[date, int]]:
        """Photos tagged on each of the last `days` days (by tagd's tagged_at, local time)."""
        since = (datetime.now() - timedelta(days=days - 1)).date()
        rows = self._read(lambda index: index.read(lambda conn: conn.execute(
            "SELECT substr(tagged_at, 1, 10), count(*) FROM photo WHERE tagged_at >= ? AND status = 'tagged' "
            "GROUP BY 1", (since.isoformat(),)).fetchall()))
        counts = {d: n for d, n in rows}
        return [(since + timedelta(days=i), counts.get((since + timedelta(days=i)).isoformat(), 0)) for i in range(days)]

    def _path_of(self, photo_id: int) -> Path | None:
        found = self.file(photo_id)
        return found[0] if found else None

    @staticmethod
    def _tiles(index: Index, paths: Sequence[Path], scores: Sequence[float]) -> list[Tile]:
        if not paths:
            return []
        by_path: dict[str, tuple[int, str | None, str | None]] = {}
        for start in range(0, len(paths), 500):
            chunk = [fs_bytes(p) for p in paths[start:start + 500]]
            marks = ", ".join("CAST(? AS TEXT)" for _ in chunk)
            for pid, path, content_hash, taken in index.read(lambda conn: conn.execute(
                    f"SELECT id, path, content_hash, taken FROM photo WHERE path IN ({marks})", chunk).fetchall()):
                by_path[path] = (pid, content_hash, taken)
        tiles = []
        for path, score in zip(paths, scores):
            found = by_path.get(str(path))
            if found is not None:
                pid, content_hash, taken = found
                tiles.append(Tile(pid, Path(path), content_hash, datetime.fromisoformat(taken) if taken else None, score))
        return tiles


__all__ = ["Catalog", "Page", "Tile", "QueryError"]
