"""Visually similar photos: nearest embeddings by cosine similarity.

Each embedding is stored twice in its row: as float16 (exact enough to rank by: 11-bit mantissa)
and as int8 codes with one float scale (a quarter of float32's size). A search scans the int8
codes, held in memory by the Index (1.3 KB a photo), for a shortlist, then ranks the shortlist
by the float16 vectors read back from SQLite. numpy has no fast float16 arithmetic on most
CPUs, so scanning float16 would be slower than the int8 -> float32 blocks used here, and a
float32 copy would take four times the memory.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from tagd.index import bitmaps

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
        at = np.minimum(np.searchsorted(ids, among), cache.n - 1)
        rows = at[ids[at] == among]
        if len(rows) == 0:
            return []
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
    ranked = []
    for photo_id, dim, blob, path in conn.execute(
        "SELECT e.photo_id, e.dim, e.vector, p.path FROM embedding e JOIN photo p ON p.id = e.photo_id "
        "WHERE e.photo_id IN (SELECT value FROM json_each(?))",
        (id_list,),
    ):
        if dim == q.size:
            ranked.append((float(decode_vector(blob, dim) @ q), photo_id, path))
    ranked.sort(key=lambda r: (-r[0], -r[1]))
    return [(photo_id, Path(path), score) for score, photo_id, path in ranked[:k]]
