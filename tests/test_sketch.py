"""Bit sketches (tagd.index.sketch): a search ranks a 1 % shortlist of a large cache and still
finds the exact nearest neighbours; rows appended later are sketched too."""

from __future__ import annotations

import numpy as np

from tagd.index import sketch
from tagd.index.similar import encode_vector


def _cache(n: int, dim: int = 418, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors in clusters of 50 (photos of one subject) and their int8 codes."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 50 + 1, dim)).astype(np.float32)
    vectors = centres[np.arange(n) // 50] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes = np.stack([np.frombuffer(encode_vector(v)[2], dtype=np.int8) for v in vectors])
    return vectors, codes


def _top(vectors: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> set[int]:
    return set(rows[np.argsort(-(vectors[rows] @ q))[:k]].tolist())


def test_the_shortlist_holds_the_nearest_neighbours() -> None:
    vectors, codes = _cache(30_000)
    sketches = sketch.Sketches.build(codes)
    rng = np.random.default_rng(1)
    recalls, sizes = [], []
    for i in rng.integers(0, len(vectors), 30):
        q = vectors[i] + 0.3 * rng.standard_normal(vectors.shape[1]).astype(np.float32) / np.sqrt(vectors.shape[1])
        q /= np.linalg.norm(q)
        short = sketches.shortlist(q)
        sizes.append(len(short))
        recalls.append(len(_top(vectors, q, short, 20) & _top(vectors, q, np.arange(len(vectors)), 20)) / 20)
    assert np.mean(recalls) >= 0.98, np.mean(recalls)
    assert sketch.SHORTLIST <= min(sizes) and max(sizes) < 3 * sketch.SHORTLIST


def test_a_subset_is_searched_and_appended_rows_are_found() -> None:
    vectors, codes = _cache(25_000)
    sketches = sketch.Sketches.build(codes[:20_000])
    sketches.extend(20_000, codes[20_000:])
    for i in (20_000, 22_222, 24_999):
        assert i in sketches.shortlist(vectors[i])
    subset = np.arange(0, 25_000, 2)
    short = sketches.shortlist(vectors[22_222], subset)
    assert set(short.tolist()) <= set(subset.tolist()) and 22_222 in short
