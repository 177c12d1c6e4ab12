"""Visually similar photos: nearest embeddings by cosine similarity.

Each embedding is stored twice in its row: as float16 (exact enough to rank by: 11-bit mantissa)
and as int8 codes with one float scale (a quarter of float32's size). A search scans the int8
codes, held in memory by the Index (1.3 KB a photo), for a shortlist, then ranks the shortlist
by the float16 vectors read back from SQLite. numpy has no fast float16 arithmetic on most
CPUs, so scanning float16 would be slower than the int8 -> float32 blocks used here, and a
float32 copy would take four times the memory. A large cache that is searched often scans
first the bit sketches of every row, then the codes of a shortlist (tagd.index.sketch).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from tagd.index import bitmaps, sketch

SHORTLIST_MIN = 100  # extra candidates re-ranked exactly; int8 error is ~0.003 in cosine
_BLOCK = 256  # rows per int8 -> float32 block: stays in cache, and below BLAS threading


def encode_vector(vector: Any) -> tuple[int, float, bytes, bytes]:
    """An embedding -> (dim, scale, int8 codes, float16 vector), after L2 normalisation."""
    a = np.asarray(vector, dtype=np.float32).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError("an embedding must be a non-empty vector of finite numbers")
    norm = float(np.linalg.norm(a))
    if norm == 0.0:
        raise ValueError("an embedding must not be all zeros")
    a = a / norm
    scale = float(np.abs(a).max()) / 127.0
    code = np.round(a / scale).astype(np.int8)
    return int(a.size), scale, code.tobytes(), a.astype("<f2").tobytes()


def decode_vector(blob: bytes, dim: int) -> np.ndarray:
    v = np.frombuffer(blob, dtype="<f2", count=dim).astype(np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


class EmbeddingCache:
    """The int8 codes of every searchable embedding of one dimension, sorted by photo id.

    `gen` is the index's embedding generation it reflects; a reader reloads when it moves. The
    writer's own handle appends the photos it adds instead (the daemon asks for neighbours of
    every new photo: reloading 100,000 rows each time would cost more than tagging).
    """

    def __init__(self) -> None:
        self.gen: int | None = None
        self.dim: int | None = None
        self.n = 0
        self._ids = np.zeros(0, dtype=np.int64)
        self._scales = np.zeros(0, dtype=np.float32)
        self._codes = np.zeros((0, 0), dtype=np.int8)
        self.sketches: sketch.Sketches | None = None
        self.searches = 0
        self._among: dict[tuple[int, int, int | None, int], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self.n]

    @property
    def scales(self) -> np.ndarray:
        return self._scales[: self.n]

    @property
    def codes(self) -> np.ndarray:
        return self._codes[: self.n]

    def invalidate(self) -> None:
        self.gen = None

    def after_write(self, before: int, after: int, appended: list[tuple[int, int, float, bytes]], other_change: bool) -> None:
        if before == after:
            return
        rows = [r for r in appended if r[1] == self.dim]
        if self.gen != before or other_change or (rows and self.n and rows[0][0] <= self._ids[self.n - 1]):
            self.gen = None
            return
        need = self.n + len(rows)
        if need > len(self._ids):
            capacity = max(need, len(self._ids) * 3 // 2, 1024)
            self._ids = np.resize(self._ids, capacity)
            self._scales = np.resize(self._scales, capacity)
            codes = np.zeros((capacity, self.dim or 0), dtype=np.int8)
            codes[: self.n] = self._codes[: self.n]
            self._codes = codes
        for i, (photo_id, _, scale, code) in enumerate(rows, start=self.n):
            self._ids[i] = photo_id
            self._scales[i] = scale
            self._codes[i] = np.frombuffer(code, dtype=np.int8)
        if self.sketches is not None:
            self.sketches.extend(self.n, self._codes[self.n:need])
        self.n = need
        self.gen = after

    def load(self, conn: sqlite3.Connection, dim: int, gen: int) -> None:
        rows = conn.execute("SELECT photo_id, scale, code FROM embedding WHERE dim = ? ORDER BY photo_id", (dim,)).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        scales = np.fromiter((r[1] for r in rows), dtype=np.float32, count=len(rows))
        codes = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.int8).reshape(len(rows), dim)
        gone = bitmaps.to_ids(bitmaps.load(conn, bitmaps.STATUS, [bitmaps.STATUS_CODE["gone"]]))
        if gone:
            keep = ~np.isin(ids, np.asarray(gone, dtype=np.int64))
            ids, scales, codes = ids[keep], scales[keep], codes[keep]
        self._ids, self._scales, self._codes = ids, scales, np.ascontiguousarray(codes)
        self.n, self.dim, self.gen = len(ids), dim, gen
        self.sketches, self.searches = None, 0

    def rows_of(self, among: np.ndarray) -> np.ndarray:
        """The cache rows of these photo ids (sorted; ids not cached are left out). The last
        answers are kept: the library asks with the same arrays for every photo until it re-reads."""
        key = (id(among), len(among), self.gen, self.n)
        if key in self._among:
            return self._among[key][1]
        ids = self.ids
        at = np.minimum(np.searchsorted(ids, among), self.n - 1)
        rows = at[ids[at] == among]
        if len(self._among) >= 4:  # the library's photos and its rejections: two arrays in turn
            self._among.pop(next(iter(self._among)))
        self._among[key] = (among, rows)  # holds `among`, so its id() is not reused meanwhile
        return rows

    def shortlist(self, q: np.ndarray, rows: np.ndarray | None) -> np.ndarray | None:
        """The rows (of all, or of `rows`) a search for `q` ranks, from the bit sketches once
        the cache is large and has been searched a few times; None: rank them all."""
        self.searches += 1
        if (self.n if rows is None else len(rows)) < sketch.MIN_ROWS or self.searches <= sketch.QUERIES_BEFORE_BUILD:
            return None
        if self.sketches is None:
            self.sketches = sketch.Sketches.build(self.codes)
        return self.sketches.shortlist(q, rows)

    def approximate(self, q: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Approximate similarity of every cached embedding to `q`, or of those at `rows` only."""
        n, codes = (self.n if rows is None else len(rows)), self._codes
        out = np.empty(n, dtype=np.float32)
        block = np.empty((min(n, _BLOCK), codes.shape[1]), dtype=np.float32)
        for start in range(0, n, _BLOCK):
            part = block[: min(_BLOCK, n - start)]
            src = codes[start:start + len(part)] if rows is None else codes[rows[start:start + len(part)]]
            np.copyto(part, src, casting="unsafe")
            out[start:start + len(part)] = part @ q  # matmul(out=...) misses the BLAS path
        out *= self.scales if rows is None else self.scales[rows]
        return out


def embedding_gen(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_gen'").fetchone()
    return int(row[0]) if row else 0


def nearest(
    conn: sqlite3.Connection, cache: EmbeddingCache, embedding: Any, k: int, exclude: bytes | None,
    among: np.ndarray | None = None,
) -> list[tuple[int, Path, float]]:
    """(photo id, path, similarity) of the k nearest, best first; `among`: only these photo ids
    (sorted), scanning only their codes (a few thousand user-tagged photos in a big library)."""
    q = np.asarray(embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(q))
    if k <= 0 or norm == 0.0 or not np.isfinite(norm):
        return []
    q = q / norm
    gen = embedding_gen(conn)
    if cache.gen != gen or cache.dim != q.size:
        cache.load(conn, q.size, gen)
    if cache.n == 0:
        return []
    ids = cache.ids
    rows = None
    if among is not None:
        rows = cache.rows_of(among)
        if len(rows) == 0:
            return []
        if len(rows) == cache.n:
            rows = None  # every cached photo: no gather
    short = cache.shortlist(q, rows)
    if short is not None:
        rows = np.sort(short)  # ids stay in order: the exclusion below looks them up
    if rows is not None:
        ids = ids[rows]
    # Gathering rows costs about three contiguous ones: for most of the library, scan it all.
    scores = cache.approximate(q, rows) if rows is None or 3 * len(rows) < cache.n else cache.approximate(q)[rows]
    n = len(ids)
    if exclude is not None:
        row = conn.execute("SELECT id FROM photo WHERE path = CAST(? AS TEXT)", (exclude,)).fetchone()
        if row is not None:
            at = int(np.searchsorted(ids, row[0]))
            if at < n and ids[at] == row[0]:
                scores[at] = -np.inf
    size = min(n, max(4 * k, k + SHORTLIST_MIN))
    shortlist = np.argpartition(-scores, size - 1)[:size] if size < n else np.arange(n)
    shortlist = shortlist[np.isfinite(scores[shortlist])]
    id_list = json.dumps([int(i) for i in ids[shortlist]])
    found = [r for r in conn.execute(
        "SELECT e.photo_id, e.dim, e.vector, p.path FROM embedding e JOIN photo p ON p.id = e.photo_id "
        "WHERE e.photo_id IN (SELECT value FROM json_each(?))",
        (id_list,),
    ) if r[1] == q.size]
    if not found:
        return []
    vectors = np.frombuffer(b"".join(r[2] for r in found), dtype="<f2").reshape(len(found), q.size).astype(np.float32)
    exact = (vectors @ q) / np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
    ranked = sorted(zip(exact.tolist(), (r[0] for r in found), (r[3] for r in found)), key=lambda r: (-r[0], -r[1]))
    return [(photo_id, Path(path), score) for score, photo_id, path in ranked[:k]]
