"""Measures, thresholds and the trained vocabulary: by hand, against scikit-learn, and through tagd."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.calibrate import best_f1_threshold, choose_thresholds, loosest_at_precision  # noqa: E402
from training.dataset import TagDef  # noqa: E402
from training.measuring import average_precision as evaluate_ap  # noqa: E402
from training.hierarchy import descendants, tag_scores, vocabulary_json  # noqa: E402
from training.metrics import average_precision, f1_at_k, mean_ap, per_tag_ap, threshold_metrics  # noqa: E402


def test_average_precision_by_hand_matches_evaluate_py_without_ties() -> None:
    scores, truth = [0.9, 0.8, 0.7, None, None], [True, False, True, True, False]
    assert average_precision(scores, truth) == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert average_precision(scores, truth) == pytest.approx(evaluate_ap(scores, truth))
    assert math.isnan(average_precision([0.5], [False]))
    assert average_precision([None, None], [True, False]) == 0.0


def test_ties_are_one_step_not_a_gift_to_the_positives() -> None:
    # A saturated head: every photo at 1.0. As a ranking it says nothing, so its AP is the base
    # rate, in both implementations (evaluate.py used to sort the positive first: 1.0).
    scores, truth = [1.0, 1.0, 1.0, 1.0], [False, False, False, True]
    assert evaluate_ap(scores, truth) == pytest.approx(0.25)
    assert average_precision(scores, truth) == pytest.approx(0.25)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]), st.booleans()), min_size=1, max_size=30))
def test_average_precision_equals_scikit_learn(pairs: list[tuple[float, bool]]) -> None:
    from sklearn.metrics import average_precision_score

    scores = [s for s, _ in pairs]
    truth = [t for _, t in pairs]
    if not any(truth):
        assert math.isnan(average_precision(scores, truth))
        return
    assert average_precision(scores, truth) == pytest.approx(average_precision_score(truth, scores))


def test_f1_at_3_and_threshold_metrics_by_hand() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.7], [0.2, 0.9, 0.8, 0.1], [0.5, 0.5, 0.5, 0.5]])
    labels = np.array([[1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float32)
    p, r, f = f1_at_k(scores, labels, 3)  # photo 3 has no labels: not averaged
    assert p == pytest.approx((2 / 3 + 0) / 2) and r == pytest.approx((1 + 0) / 2)
    assert f == pytest.approx(2 * p * r / (p + r))
    m = threshold_metrics(scores, labels, np.array([0.6, 0.85, 0.6, 0.6]))
    # predicted: (0,0) (0,3) (1,1) (1,2); right: (0,0) (0,3); missed: (1,3)
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 3)
    assert m["coverage"] == pytest.approx(1 / 3) and m["tags_per_photo"] == pytest.approx(4 / 3)
    ap = per_tag_ap(scores, labels)
    assert math.isnan(ap[1]) and mean_ap(ap, labels)[1] == 2


def test_thresholds() -> None:
    s = np.array([0.95, 0.9, 0.6, 0.4, 0.3, 0.1])
    y = np.array([True, True, False, True, False, False])
    t, f1 = best_f1_threshold(s, y)
    assert t == pytest.approx(0.35) and f1 == pytest.approx(2 * 3 / (4 + 3))  # keep 4, halfway to the 5th
    assert loosest_at_precision(s, y, 1.0) == pytest.approx(0.75)
    assert loosest_at_precision(s, y, 0.75) == pytest.approx(0.35)
    assert loosest_at_precision(np.array([0.9, 0.8]), np.array([False, True]), 0.9) is None

    labels = np.stack([y, np.zeros(6, bool), y], 1).astype(np.float32)
    scores = np.stack([s, s, s[::-1]], 1)
    th = choose_thresholds(scores, labels)
    assert th.values[1] == pytest.approx(th.global_threshold)  # no validation positive: the global cut
    # Three positives: pulled 5/8 of the way (in log-odds) toward the global threshold.
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    expect = 3 / 8 * logit(0.35) + 5 / 8 * logit(th.global_threshold)
    assert logit(th.values[0]) == pytest.approx(expect)
    strict = choose_thresholds(scores, labels, mode="precision", target=1.0)
    assert strict.values[0] == pytest.approx(0.75)
    assert strict.values[2] == 1.0  # reversed scores never reach precision 1: never written, still suggested


def test_trained_vocabulary_loads_in_tagd_with_hierarchy(tmp_path: Path) -> None:
    from tagd.vocab import Vocabulary

    tags = [TagDef("animals", (), ("animal",)), TagDef("dog", ("animals",)), TagDef("puppy", ("dog",)), TagDef("sky")]
    assert descendants(tags) == [[0, 1, 2], [1, 2], [2], [3]]
    vj = vocabulary_json(tags, np.array([0.5, 0.4, 0.3, 0.6]), source="test")
    (tmp_path / "vocab.json").write_text(json.dumps(vj))
    vocab = Vocabulary.load(tmp_path / "vocab.json", n_labels=4, aggregate="max")
    assert vocab.path("puppy") == "animals|dog|puppy" and vocab.canonical("animal") == "animals"
    label_scores = np.array([[0.1, 0.7, 0.2, 0.05]], dtype=np.float32)
    expected = tag_scores(label_scores, descendants(tags))
    assert np.allclose(vocab.tag_scores(label_scores), expected)
    assert expected[0].tolist() == pytest.approx([0.7, 0.7, 0.2, 0.05])  # a parent at its best child
    assert [t.name for t in vocab.select(expected[0])] == ["dog", "animals"]
