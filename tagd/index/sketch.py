"""Bit sketches of a large embedding cache, so a neighbour search reads 32 bytes a photo.

An exact scan of 100,000 int8 embeddings costs ~20 ms on one core (converting 40 MB of int8
to float32 for the dot products); the daemon asks for neighbours of every new photo. So a
cache that is large and searched often keeps, per photo, the signs of its embedding's
projections on BITS fixed random directions (SimHash, Charikar 2002): the share of differing
bits estimates the angle between two photos. A search counts differing bits against every
photo (XOR and popcount on 64-bit words, a column per word), keeps the SHORTLIST closest and
lets the caller rank those by their int8 codes, then by their float16 vectors. Measured by
bench/bench_refine.py (time, and recall against an exact scan).

The directions are +-1 vectors from an integer hash of their position (tagd.embedding's
projection): the same on every machine, nothing stored.
"""

from __future__ import annotations

import numpy as np

from tagd.embedding import sign_projection

BITS = 256
SHORTLIST = 1000
MIN_ROWS = 20_000  # below this an exact scan costs less than 5 ms
QUERIES_BEFORE_BUILD = 20  # a one-off search (`tagd similar`) never pays for the sketches
_WORDS = BITS // 64
_BLOCK = 4096


class Sketches:
    def __init__(self, dim: int) -> None:
        self.planes = sign_projection(dim, BITS)
        self.columns = [np.zeros(0, dtype=np.uint64) for _ in range(_WORDS)]  # word w of every row
        self.n = 0

    @classmethod
    def build(cls, codes: np.ndarray) -> "Sketches":
        sketches = cls(codes.shape[1])
        sketches.extend(0, codes)
        return sketches

    def extend(self, n_before: int, codes: np.ndarray) -> None:
        """Rows n_before.. (their int8 codes) joined the cache."""
        words = self._words(codes)
        for w in range(_WORDS):
            grown = np.empty(n_before + len(codes), dtype=np.uint64)
            grown[:n_before] = self.columns[w][:n_before]
            grown[n_before:] = words[:, w]
            self.columns[w] = grown
        self.n = n_before + len(codes)

    def shortlist(self, q: np.ndarray, rows: np.ndarray | None = None, size: int = SHORTLIST) -> np.ndarray:
        """The rows (all, or those at `rows`) whose sketches differ least from `q`'s, at least
        `size` of them where there are (ties at the cut are all kept), as cache rows."""
        mine = self._words(q.reshape(1, -1).astype(np.float32))[0]
        distance = np.zeros(self.n if rows is None else len(rows), dtype=np.uint16)
        for w in range(_WORDS):
            column = self.columns[w][: self.n] if rows is None else self.columns[w][rows]
            distance += np.bitwise_count(column ^ mine[w])
        if len(distance) <= size:
            picked = np.arange(len(distance))
        else:
            counts = np.cumsum(np.bincount(distance, minlength=BITS + 1))
            cut = int(np.searchsorted(counts, size))  # the distance that takes the list past `size`
            picked = np.flatnonzero(distance <= cut)
        return picked if rows is None else rows[picked]

    def _words(self, vectors: np.ndarray) -> np.ndarray:
        out = np.empty((len(vectors), _WORDS), dtype=np.uint64)
        for start in range(0, len(vectors), _BLOCK):
            part = vectors[start:start + _BLOCK].astype(np.float32, copy=False) @ self.planes
            out[start:start + len(part)] = np.packbits(part > 0, axis=1).view(np.uint64)
        return out
