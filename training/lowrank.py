"""Low-rank completion of a library's photo-tag matrix: denoise and complete users' tags.

Research, not shipped (it lived in tagd/ until 0.3): on training/evaluate_refine.py's protocol
it adds nothing the neighbours and the model do not already give (+0.000 F1 as an extra
likelihood ratio, harmful with default weights); its rows there keep it measured.

Why: a library's tags are not independent. Photos that look alike carry alike tags, and tags
come in groups ("fork", "knife", "dining table"), so the photo x tag matrix of *true* tags is
close to low rank, while the user's omissions and slips are not. Fitting a low-rank,
non-negative factorisation to the noisy matrix, with the photos' visual features as side
information (columns the factorisation must explain too, so photos that look alike get alike
factors), gives every (photo, tag) a smoothed relevance: high for a tag the photo lacks but
its look-alikes and tag-companions have, lower for one the user wrote that nothing else
supports (Zhu, Yan & Ma 2010, "Image tag refinement towards low-rank, content-tag prior and
error sparsity"; Wu et al. 2013, "Tag completion for image retrieval").

The fit is a weighted NMF (Lee & Seung multiplicative updates with a weight per entry): a
user's tag is an observation (weight 1); a missing one is only weakly "absent"
(`unobserved_weight`), since users omit far more than they mistake. Pure numpy, no I/O,
deterministic for a seed. Leave-one-out fairness is the caller's: the matrix may hold the
evaluated photo's own (noisy) tags, which a user legitimately knows, never its true ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True)
class LowRankParams:
    rank: int = 16
    unobserved_weight: float = 0.2  # weight of a 0 in the tag matrix (a 1 weighs 1)
    side_weight: float = 0.3  # scale of the side features after standardising them to unit std
    l2: float = 1e-3  # ridge on both factors
    iterations: int = 300
    seed: int = 0
    # Predict each (photo, tag) with that one entry left out: the photo's factors are refitted on
    # the rest of its row (its other tags, its side features), the tag factors kept. Meant to stop
    # a user's own tag propping itself up; on coco128-dev it barely does (the tag factors already
    # learnt the entry), so it is off by default.
    leave_entry_out: bool = False
    refit_iterations: int = 150


def factorise(matrix: Array, weights: Array, rank: int, *, l2: float = 1e-3, iterations: int = 300,
              seed: int = 0) -> tuple[Array, Array]:
    """Non-negative W (n x rank), H (rank x m) minimising sum(weights * (matrix - W H)^2) + l2 (|W|^2 + |H|^2).

    `matrix` and `weights` must be non-negative and of one shape; a weight of 0 leaves the
    entry out of the fit (it is then completed, not fitted).
    """
    x = np.asarray(matrix, dtype=np.float64)
    m = np.asarray(weights, dtype=np.float64)
    if x.ndim != 2 or x.shape != m.shape:
        raise ValueError(f"matrix {x.shape} and weights {m.shape} must be 2-d and of one shape")
    if rank < 1:
        raise ValueError("rank must be at least 1")
    if (x < 0).any() or (m < 0).any():
        raise ValueError("matrix and weights must be non-negative")
    n, k = x.shape
    rng = np.random.default_rng(seed)
    level = float((m * x).sum() / max(1e-12, m.sum()))
    scale = np.sqrt(max(level, 1e-6) / rank)
    w = rng.uniform(0.5, 1.5, (n, rank)) * scale
    h = rng.uniform(0.5, 1.5, (rank, k)) * scale
    mx = m * x
    tiny = 1e-12
    for _ in range(iterations):
        h *= (w.T @ mx) / (w.T @ (m * (w @ h)) + l2 * h + tiny)
        w *= (mx @ h.T) / ((m * (w @ h)) @ h.T + l2 * w + tiny)
    return w, h


def complete(tags: Array, side: Array | None = None, params: LowRankParams = LowRankParams()) -> Array:
    """Denoised relevance in [0, 1] of every (photo, tag), from the noisy 0/1 (or [0, 1]) `tags`
    matrix (photos x tags) and optional non-negative `side` features (photos x d: embeddings,
    model scores), fitted jointly by a weighted NMF of [tags | side_weight * side / std(side)]."""
    y = np.asarray(tags, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError("tags must be a photos x tags matrix")
    n, t = y.shape
    if n == 0 or t == 0:
        return np.zeros((n, t))
    if ((y < 0) | (y > 1)).any():
        raise ValueError("tags must lie in [0, 1]")
    parts = [y]
    weights = [np.where(y > 0, 1.0, params.unobserved_weight) + 0 * y]
    if side is not None:
        s = np.asarray(side, dtype=np.float64)
        if s.ndim != 2 or s.shape[0] != n:
            raise ValueError(f"side features {s.shape} must have one row per photo ({n})")
        if (s < 0).any():
            raise ValueError("side features must be non-negative")
        std = float(s.std())
        if s.shape[1] and std > 0:
            parts.append(s / std * params.side_weight)
            weights.append(np.ones_like(s))
    rank = max(1, min(params.rank, n, sum(p.shape[1] for p in parts)))
    w, h = factorise(np.hstack(parts), np.hstack(weights), rank, l2=params.l2, iterations=params.iterations,
                     seed=params.seed)
    if not params.leave_entry_out:
        return np.clip(w @ h[:, :t], 0.0, 1.0)
    side_x = np.hstack(parts[1:]) if len(parts) > 1 else np.zeros((n, 0))
    return np.clip(refit_without_entry(y, weights[0], side_x, w, h, l2=params.l2,
                                       iterations=params.refit_iterations), 0.0, 1.0)


def refit_without_entry(tags: Array, tag_weights: Array, side: Array, w: Array, h: Array, *, l2: float = 1e-3,
                        iterations: int = 150) -> Array:
    """For every (photo i, tag j): refit photo i's factors with entry (i, j) weighted 0 and the tag
    factors `h` fixed (the first tags.shape[1] columns are the tags, the rest the side features),
    and return the refitted prediction of (i, j). Vectorised: n x t x t, fine for a library's
    vocabulary of tags (hundreds), warm-started from `w`."""
    n, t = tags.shape
    h_y, h_s = h[:, :t], h[:, t:]
    mask = np.repeat(tag_weights[:, None, :], t, axis=1)  # (photo, left-out tag, tag)
    idx = np.arange(t)
    mask[:, idx, idx] = 0.0
    num = (mask * tags[:, None, :]) @ h_y.T  # (n, t, rank)
    if side.shape[1]:
        num += (side @ h_s.T)[:, None, :]
    gram_s = h_s @ h_s.T
    wb = np.repeat(w[:, None, :], t, axis=1).copy()
    tiny = 1e-12
    for _ in range(iterations):
        den = (mask * (wb @ h_y)) @ h_y.T + wb @ gram_s + l2 * wb + tiny
        wb *= num / den
    return np.einsum("itr,rt->it", wb, h_y)
