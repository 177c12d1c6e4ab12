"""Low-rank completion of the photo x tag matrix (tagd.lowrank): pure, fast, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from training.lowrank import LowRankParams, complete, factorise, refit_without_entry


def planted(n: int = 60, t: int = 12, groups: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Photos in `groups` kinds, each kind with its own tags and its own look (side features)."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, groups, n)
    tags = np.zeros((n, t))
    for g in range(groups):
        tags[kind == g, g * (t // groups):(g + 1) * (t // groups)] = 1.0
    look = np.zeros((n, groups * 4))
    for g in range(groups):
        look[kind == g, g * 4:(g + 1) * 4] = 1.0
    return tags, look + rng.uniform(0, 0.1, look.shape)


def test_factorise_recovers_a_planted_low_rank_matrix() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, (40, 3)) @ rng.uniform(0, 1, (3, 25))
    noisy = np.maximum(0, truth + rng.normal(0, 0.02, truth.shape))
    w, h = factorise(noisy, np.ones_like(noisy), 3, iterations=800, l2=0.0)
    assert w.shape == (40, 3) and h.shape == (3, 25) and (w >= 0).all() and (h >= 0).all()
    assert np.abs(w @ h - truth).mean() < 0.03


def test_completion_denoises_dropped_and_injected_tags() -> None:
    truth, look = planted()
    rng = np.random.default_rng(2)
    noisy = truth * (rng.random(truth.shape) > 0.3)  # 30% of the tags dropped
    wrong = (truth == 0) & (rng.random(truth.shape) < 0.05)  # a few wrong ones
    noisy[wrong] = 1.0
    got = complete(noisy, look, LowRankParams(rank=3, iterations=400))
    assert got.shape == truth.shape and got.min() >= 0 and got.max() <= 1
    dropped = (truth == 1) & (noisy == 0)
    absent = (truth == 0) & (noisy == 0)
    assert got[dropped].mean() > got[absent].mean() + 0.3  # the omissions come back
    kept = (truth == 1) & (noisy == 1)
    assert got[kept].mean() > got[wrong].mean() + 0.3  # the slips stand out


def test_deterministic_for_a_seed() -> None:
    truth, look = planted(seed=3)
    a = complete(truth, look, LowRankParams(seed=7, iterations=50))
    b = complete(truth, look, LowRankParams(seed=7, iterations=50))
    assert np.array_equal(a, b)


def test_leave_entry_out_does_not_see_the_entry() -> None:
    """With one entry left out, its prediction does not depend on its value."""
    truth, look = planted(n=30, seed=4)
    w, h = factorise(np.hstack([truth, look]), np.ones((30, truth.shape[1] + look.shape[1])), 3, iterations=200)
    flipped = truth.copy()
    flipped[0, 0] = 1.0 - flipped[0, 0]
    weights = np.ones_like(truth)
    a = refit_without_entry(truth, weights, look, w, h, iterations=30)
    b = refit_without_entry(flipped, weights, look, w, h, iterations=30)
    assert a[0, 0] == pytest.approx(b[0, 0])
    assert a.shape == truth.shape
    c = complete(truth, look, LowRankParams(rank=3, iterations=100, leave_entry_out=True, refit_iterations=20))
    assert c.shape == truth.shape and 0 <= c.min() and c.max() <= 1


def test_edge_cases() -> None:
    assert complete(np.zeros((0, 5))).shape == (0, 5)
    assert complete(np.zeros((4, 0))).shape == (4, 0)
    assert complete(np.zeros((3, 4))).max() == pytest.approx(0.0, abs=1e-3)  # nothing tagged, nothing invented
    one = complete(np.ones((1, 3)), params=LowRankParams(rank=16))  # rank larger than the matrix
    assert one.shape == (1, 3)
    assert complete(np.eye(3), np.zeros((3, 2))).shape == (3, 3)  # constant side features are ignored
    with pytest.raises(ValueError):
        complete(np.full((2, 2), 2.0))
    with pytest.raises(ValueError):
        complete(np.eye(2), -np.ones((2, 1)))
    with pytest.raises(ValueError):
        complete(np.eye(2), np.ones((3, 1)))
    with pytest.raises(ValueError):
        factorise(np.eye(2), np.ones((2, 3)), 1)
