"""The evaluation script's metrics, and the quality floors on coco128-dev when it is present."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import COCO128

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.evaluate import evaluate  # noqa: E402
from training.measuring import average_precision, best_recall_at_precision, measure  # noqa: E402
from training.held_out import cross_fit  # noqa: E402
from training.kinds import by_kind  # noqa: E402


def test_average_precision_by_hand() -> None:
    # ranks: 1 relevant, 2 not, 3 relevant; a fourth positive never retrieved.
    ap = average_precision([0.9, 0.8, 0.7, None, None], [True, False, True, True, False])
    assert ap == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert average_precision([0.5, 0.4], [True, True]) == 1.0
    assert math.isnan(average_precision([0.5], [False]))


def test_best_recall_at_precision() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    truth = np.array([True, True, False, True, False])
    recall, at = best_recall_at_precision(scores, truth, 0.75)
    assert recall == pytest.approx(1.0) and at == pytest.approx(0.6)  # 3 of 4 above 0.6 are right
    recall, at = best_recall_at_precision(scores, truth, 1.0)
    assert recall == pytest.approx(2 / 3) and at == pytest.approx(0.8)


@pytest.mark.skipif(not (COCO128 / "labels.json").is_file(), reason="../shared/data/coco128-dev not present")
def test_quality_floors_on_coco128(tagger) -> None:
    ev = evaluate(COCO128, tagger)
    person_recall = next(v for k, v in ev.person.items() if k.startswith("best_recall"))
    assert ev.errors == 0
    assert ev.coverage >= 0.80, ev.coverage
    assert ev.mean_ap >= 0.40, ev.mean_ap
    assert person_recall >= 0.60, person_recall


@pytest.mark.skipif(not (COCO128 / "labels.json").is_file(), reason="../shared/data/coco128-dev not present")
def test_refinement_as_tagd_runs_it_improves_noisy_tags_on_coco128(tagger) -> None:
    """The refinement protocol (training/evaluate_refine.py) on one noise seed, tagd's own row:
    it must improve F1 on noisy tags and keep its removals mostly right (a quality floor, well
    below the measured +0.049 F1 and 0.86 removal precision of seeds 0-2)."""
    from training.evaluate_refine import SHIPPED, photo_evidence, run, simulate_noise

    evidence = photo_evidence(COCO128, tagger)
    noisy = simulate_noise(evidence[1], 0.4, 0.3, seed=0)
    assert noisy != evidence[1] and all(len(n) <= 2 * len(t) for n, t in zip(noisy, evidence[1]))
    report = run(evidence, 0.4, 0.3, seed=0, ablation={})
    shipped = report["ablation"][SHIPPED]
    assert shipped["f1"] >= report["before"]["f1"] + 0.02, (shipped, report["before"])
    assert shipped["removals"] == 0 or shipped["removal_precision"] >= 0.6, shipped
    assert shipped["addition_recall"] >= 0.2, shipped


def test_figures_by_kind_of_tag(tagger) -> None:
    """--by-kind groups the categories by their root in the vocabulary (a lion is an animal, a
    valley a scene, a dachshund-less breed list a breed) and counts what was written."""
    vocab = tagger.vocabulary
    categories = ["lion", "valley", "mountain", "Cocker Spaniel"]
    names = ["a", "b", "c"]
    truth = {"a": {"lion"}, "b": {"valley", "mountain"}, "c": {"Cocker Spaniel"}}
    scores = np.zeros((3, len(vocab)), dtype=np.float32)
    for row, tag in ((0, "lion"), (1, "mountain"), (2, "lion")):  # a: right; b: one of two; c: wrong
        scores[row, vocab.names.index(tag)] = 0.99
    scores = vocab.cap(scores)  # parents at least as likely as their children, as the tagger's scores are
    thresholds = np.full(len(vocab), 0.5, dtype=np.float32)
    kinds = by_kind(measure(scores, thresholds, vocab, categories, names, truth), vocab, min_positives=1)
    assert set(kinds) == {"animals", "scenes", "breeds"}
    assert kinds["animals"]["precision"] == 0.5 and kinds["animals"]["recall"] == 1.0  # lion on a and (wrongly) c
    assert kinds["scenes"]["tags"] == 2 and kinds["scenes"]["recall"] == 0.5 and kinds["scenes"]["precision"] == 1.0
    assert kinds["breeds"]["recall"] == 0.0 and math.isnan(kinds["breeds"]["precision"])


def test_bootstrap_interval_brackets_the_figures(tagger) -> None:
    """The photo-level bootstrap: its interval holds the measured figure, is wider on fewer
    photos, and counts an unlabelled photo neither covered nor uncovered."""
    vocab = tagger.vocabulary
    categories = ["cat", "dog"]
    rng = np.random.default_rng(1)
    figures = []
    for photos in (40, 400):
        names = [f"p{i}" for i in range(photos)]
        truth = {n: ({"cat"} if i % 3 else set()) for i, n in enumerate(names)}
        scores = np.zeros((photos, len(vocab)), dtype=np.float32)
        scores[:, vocab.names.index("cat")] = rng.uniform(0.3, 1.0, photos)
        scores = vocab.cap(scores)
        ev = measure(scores, np.full(len(vocab), 0.6, dtype=np.float32), vocab, categories, names, truth)
        assert (ev.per_photo[:, 3] == -1).sum() == photos // 3 + (photos % 3 > 0)
        spread = ev.interval()
        for key, value in (("precision", ev.micro_precision), ("recall", ev.micro_recall), ("coverage", ev.coverage)):
            assert spread[key][0] <= value <= spread[key][1], (key, value, spread[key])
        figures.append(spread["precision"][1] - spread["precision"][0])
    assert figures[1] < figures[0] / 2


@pytest.mark.skipif(not (COCO128 / "labels.json").is_file(), reason="../shared/data/coco128-dev not present")
def test_cross_fit_reproduces_the_shipped_bundle_on_its_report_half(tagger) -> None:
    """--cross-fit refits the build's calibration on COCO and one half of the unseen set and
    measures the other: on the report half that is the shipped bundle itself, figure for figure,
    and the pooled counts are the two halves' sums."""
    from training.build_fused_bundle import UNSEEN

    if not (UNSEEN / "labels.json").is_file():
        pytest.skip(f"the unseen photos are not at {UNSEEN} (python training/unseen_photos.py {UNSEEN})")
    pooled, halves, frontier = cross_fit(UNSEEN, tagger, COCO128, "labels", min_positives=2, sweep=(0.3, 0.9))
    shipped = evaluate(UNSEEN, tagger, min_positives=2, field="labels", split="report")
    threshold, report = halves["report"]
    assert threshold == tagger.vocabulary["car"].threshold  # the shared threshold the build chose
    for key in ("micro_precision", "micro_recall", "coverage", "full_mean_ap"):
        assert getattr(report, key) == pytest.approx(getattr(shipped, key), abs=1e-3), key
    both = halves["report"][1].per_photo[:, :3].sum(axis=0) + halves["calibration"][1].per_photo[:, :3].sum(axis=0)
    assert pooled.per_photo[:, :3].sum(axis=0).tolist() == both.tolist()
    assert pooled.photos == report.photos + halves["calibration"][1].photos
    low, high = frontier  # a lower bar writes more: more recall and coverage, less precision
    assert low["recall"] >= high["recall"] and low["coverage"] >= high["coverage"]
    assert low["precision"] < high["precision"]


@pytest.mark.skipif(not (COCO128 / "labels.json").is_file(), reason="../shared/data/coco128-dev not present")
def test_the_int8_classifier_loses_under_one_point_of_mean_ap(float_model) -> None:
    """The rule for shipping the int8 copy of the classifier (#8): < 1 point of mean AP lost,
    measured on the classifier alone (the default bundle with its detector set aside, read
    through the float bundle's format-1 vocabulary)."""
    from tagd.model import Model
    from tagd.tagger import Tagger, load_vocabulary

    int8 = Model(threads=2)
    int8.detector = None
    # Quantisation alone: the default bundle's classifier looks at one view, the float bundle's
    # at three; compared here with the float bundle's.
    int8.spec = int8.spec.model_copy(update={"classifier": int8.spec.classifier.model_copy(
        update={"input": float_model.spec.input})})
    vocab = load_vocabulary(float_model)
    default = evaluate(COCO128, Tagger(int8, vocab)).mean_ap
    reference = evaluate(COCO128, Tagger(float_model)).mean_ap
    assert reference - default < 0.01, (default, reference)


@pytest.mark.skipif(not (COCO128 / "labels.json").is_file(), reason="../shared/data/coco128-dev not present")
def test_the_fused_tagger_held_out_on_coco128(tagger, tmp_path: Path) -> None:
    """The calibration machinery (fit, thresholds, hierarchy) refitted on coco128 alone without
    each held-out fold (no unseen photos: `unseen` names an empty folder). The detector saw
    these photos in training, so these are upper bounds; the README reports unseen photos.
    Guards against a regression of the fusion, not a measurement."""
    from training.held_out import cross_validate_fused

    figures, thresholds = cross_validate_fused(COCO128, tagger, folds=5, unseen=tmp_path)
    assert figures.full_mean_ap >= 0.72 and figures.mean_ap >= 0.70, figures
    assert figures.micro_precision >= 0.80 and figures.person["recall_at_shipped"] >= 0.90, figures
    assert all(0.3 <= t <= 0.9 for t in thresholds)
