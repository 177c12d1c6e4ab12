"""Held-out figures of a v2 bundle: its calibration refitted, by build_fused_bundle.py's own
procedure, without the photos being measured.

- `cross_validate_fused`: coco128 (photos the calibration is fitted on), K folds;
- `cross_fit`: the unseen set, each half measured with the calibration fitted on COCO and the
  other half (training/evaluate.py --cross-fit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tagd.tagger import Tagger
from training import build_fused_bundle as fused, fusion_fit
from training.measuring import Evaluation, labelled_photos, measure, report

# cross_fit's sweep of one shared write threshold: how far coverage and precision can go.
SWEEP = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def cross_validate_fused(folder: Path, tagger: Tagger, folds: int = 5, seed: int = 0, min_positives: int = 3,
                         person_precision: float = 0.85, unseen: Path | None = None) -> tuple[Evaluation, list[float]]:
    """A v2 bundle on photos its calibration saw: the calibration and the write thresholds are
    refitted K times without the held-out fold, by build_fused_bundle.py's own procedure (with
    the unseen set's calibration half, `unseen`, as the build uses it: default where the build
    looks for it; without it, the thresholds are chosen on the folds themselves), and the
    held-out scores pooled and measured. Returns the figures and each fold's shared threshold."""
    vocab = tagger.vocabulary
    evidence_of = lambda where, split=None: _evidence(tagger, where, split)  # noqa: E731
    ev, names, meta = evidence_of(folder)
    unseen = fused.UNSEEN if unseen is None else unseen
    extra = evidence_of(unseen, "calibration")[0] if (unseen / "labels.json").is_file() else None
    fold_of = np.random.default_rng(seed).permutation(len(names)) % folds
    scores = np.zeros(ev.truth.shape)
    thresholds = np.tile(np.asarray([t.threshold for t in vocab.tags]), (len(names), 1))
    chosen = []
    for k in range(folds):
        train, test = np.nonzero(fold_of != k)[0], np.nonzero(fold_of == k)[0]
        if extra is not None:
            calibration, mine, figures = fused.calibrate(fusion_fit.subset(ev, train), extra)
        else:
            threshold, figures, own = fused.choose_threshold(fusion_fit.subset(ev, train))
            calibration, mine = fusion_fit.fit(ev, train), np.where(ev.group >= 0, threshold, np.nan)
            for j, t in own.items():
                mine[j] = t
            figures["threshold"] = threshold
        scores[test] = fusion_fit.apply(ev, calibration)[test]
        fitted = ~np.isnan(mine)
        thresholds[np.ix_(test, np.nonzero(fitted)[0])] = mine[fitted]
        chosen.append(figures["threshold"])
    scores = vocab.cap(scores)
    return measure(scores, thresholds, vocab, meta["categories"], names, meta["truth"], 0, min_positives,
                   person_precision, tagger.max_tags), chosen


def _evidence(tagger: Tagger, where: Path, split: str | None = None) -> tuple[fusion_fit.Evidence, list[str], dict]:
    """The calibration's evidence on a folder's photos (those of `split`), as the build computes
    it, with their names, categories and COCO labels."""
    categories, names, truth = labelled_photos(where, "labels", split)
    concepts = labelled_photos(where, "concepts", split)[2] if split else None
    results = list(tagger.tag_paths(where / "images" / n for n in names))
    if not all(r.ok for r in results):
        raise SystemExit(f"unreadable: {[str(r.path) for r in results if not r.ok]}")
    ev = fused.fused_evidence(tagger.vocabulary, np.stack([r.classifier_scores for r in results]),
                              np.stack([r.detector_scores for r in results]), [truth[n] for n in names],
                              [concepts[n] for n in names] if concepts else None)
    return ev, names, {"categories": categories, "truth": truth}


def cross_fit(folder: Path, tagger: Tagger, coco: Path, field: str = "labels", min_positives: int = 3,
              person_precision: float = 0.85, sweep: Sequence[float] = ()
              ) -> tuple[Evaluation, dict[str, tuple[float, Evaluation]], list[dict[str, float]]]:
    """A v2 bundle on the whole unseen set instead of its report half: each half is measured
    with the calibration and threshold refitted, by build_fused_bundle.py's procedure, on the
    COCO photos (`coco`) and the *other* half, so no photo is measured by a calibration that saw
    it. This measures the build's procedure on twice the photos (the shipped bundle is the one
    fitted on the calibration half). Returns the figures of the written tags pooled over both
    halves (precision, recall, coverage: counts add up; the pooled APs mix two calibrations'
    rankings, so read mean AP per half), per half its threshold and figures, and for each
    threshold of `sweep` the pooled precision, recall and coverage with every calibrated tag
    written at that one threshold instead: what any choice of threshold could reach."""
    vocab = tagger.vocabulary
    categories, _, truth = labelled_photos(folder, field)
    trained_on = _evidence(tagger, coco)[0]
    halves = {split: _evidence(tagger, folder, split) for split in ("report", "calibration")}
    fitted = trained_on.group >= 0  # the calibrated tags: those the detector knows
    scores, thresholds, names, per_half = [], [], [], {}
    for split, other in (("report", "calibration"), ("calibration", "report")):
        calibration, mine, figures = fused.calibrate(trained_on, halves[other][0])
        ev, half_names, _ = halves[split]
        half_scores = vocab.cap(fusion_fit.apply(ev, calibration))
        own = np.tile(np.asarray([t.threshold for t in vocab.tags]), (len(half_names), 1))
        own[:, fitted] = mine[fitted]
        half = measure(half_scores, own, vocab, categories, half_names, {n: truth[n] for n in half_names}, 0,
                       min_positives, person_precision, tagger.max_tags)
        per_half[split] = (figures["threshold"], half)
        scores.append(half_scores)
        thresholds.append(own)
        names += half_names
    scores, thresholds = np.concatenate(scores), np.concatenate(thresholds)
    pooled = measure(scores, thresholds, vocab, categories, names, truth, 0, min_positives, person_precision,
                     tagger.max_tags)
    frontier = []
    for threshold in sweep:
        ev = measure(scores, np.where(fitted, threshold, thresholds), vocab, categories, names, truth, 0,
                     min_positives, person_precision, tagger.max_tags)
        frontier.append({"threshold": threshold, "precision": ev.micro_precision, "recall": ev.micro_recall,
                         "coverage": ev.coverage})
    return pooled, per_half, frontier


def cross_fit_report(folder: Path, tagger: Tagger, coco: Path | None, field: str, min_positives: int
                     ) -> tuple[Evaluation, dict, str]:
    """`cross_fit` as evaluate.py --cross-fit prints it: the pooled figures, their JSON and text."""
    ev, halves, frontier = cross_fit(folder, tagger, coco or fused.SHARED / "data" / "coco128-dev", field,
                                     min_positives, sweep=SWEEP)
    spread = ev.interval()
    figures = {**ev.as_dict(), "interval_95": spread, "frontier": frontier,
               "halves": {k: {"threshold": t, **h.as_dict()} for k, (t, h) in halves.items()}}
    lines = [f"\nCross-fitted on both halves ({ev.photos} photos), each calibrated on COCO and the other half:",
             report(ev, min_positives)]
    for split, (threshold, half) in halves.items():
        lines.append(f"  {split} half ({half.photos} photos, threshold {threshold}): mean AP {half.mean_ap:.3f}, "
                     f"threshold-free {half.full_mean_ap:.3f}, precision {half.micro_precision:.3f}, "
                     f"recall {half.micro_recall:.3f}, coverage {half.coverage:.3f}")
    lines.append("pooled, 95 % bootstrap intervals: " + ", ".join(f"{k} {lo:.3f}-{hi:.3f}" for k, (lo, hi) in spread.items()))
    lines.append("every calibrated tag at one threshold instead (pooled):")
    lines += [f"  {p['threshold']:.2f}: precision {p['precision']:.3f}, recall {p['recall']:.3f}, "
              f"coverage {p['coverage']:.3f}" for p in frontier]
    return ev, figures, "\n".join(lines)
