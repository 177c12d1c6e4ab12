"""What a photo's embedding is (tagd.embedding), and how `tagd similar` is measured."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tagd import embedding

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.evaluate_similar import precision_at  # noqa: E402


def test_the_sketch_projection_is_fixed_and_balanced() -> None:
    p = embedding.sign_projection(1280, 64)
    assert p.shape == (1280, 64) and set(np.unique(p)) == {-1.0, 1.0}
    assert abs(float(p.mean())) < 0.02
    # splitmix64 of the entry's position: these are the entries every install has.
    assert p[0, :8].tolist() == [1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0]
    corr = np.corrcoef(p.T)
    np.fill_diagonal(corr, 0.0)
    assert np.abs(corr).max() < 0.25


def test_tag_embeddings_are_unit_vectors_mostly_of_tags() -> None:
    rng = np.random.default_rng(0)
    pooled, tags = rng.standard_normal((3, 1280)).astype(np.float32), rng.random((3, 354)).astype(np.float32)
    e = embedding.embed("tags", pooled, tags)
    assert e.shape == (3, embedding.size("tags", 354, 1280)) == (3, 354 + embedding.SKETCH)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.allclose((e[:, :354] ** 2).sum(axis=1), embedding.TAG_SHARE, atol=1e-5)
    assert np.allclose(embedding.embed("classifier", pooled, tags), pooled / np.linalg.norm(pooled, axis=1, keepdims=True))


def test_the_same_subject_is_nearer_than_another_and_the_same_shot_nearest() -> None:
    """Two photos with the same tags but different looks stay apart from two shots of one scene."""
    rng = np.random.default_rng(1)
    look_a, look_b = rng.standard_normal(1280).astype(np.float32), rng.standard_normal(1280).astype(np.float32)
    dog, cat = np.zeros(354, np.float32), np.zeros(354, np.float32)
    dog[[3, 7]], cat[[3, 9]] = 1.0, 1.0
    shots = embedding.embed("tags", np.stack([look_a, look_a + 0.1 * look_b, look_b, look_a]), np.stack([dog, dog, dog, cat]))
    same_shot, same_subject, other_subject = shots[0] @ shots[1], shots[0] @ shots[2], shots[0] @ shots[3]
    assert same_shot > 0.97 > same_subject > other_subject


def test_precision_at_k_by_hand() -> None:
    e = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]] + np.float32(1e-3) * np.arange(4)[:, None]
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    truth = [{"dog"}, {"dog"}, {"cat"}, {"cat", "dog"}]
    got = precision_at(e, truth, k=1, min_positives=2)
    assert got["dog"] == (pytest.approx(2 / 3), 3)  # the cat-and-dog photo's nearest is a cat alone
    assert got["cat"] == (1.0, 2)
