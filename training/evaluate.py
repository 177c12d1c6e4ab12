"""Measure tag quality on labelled photos: per-category AP, mean AP, micro P/R/F1, coverage.

    python training/evaluate.py ../shared/data/coco128-dev            # the packaged model
    python training/evaluate.py DIR --model path/to/bundle --json out.json

DIR holds `labels.json` (`{"categories": [...], "images": {"x.jpg": {"labels": [...]}}}`)
and the photos under `DIR/images/`. Label names are mapped to tags through the vocabulary's
synonyms plus `LABEL_SYNONYMS` below; a category that maps to no tag scores AP 0.

Conventions (kept identical across runs so figures compare):
- a photo's score for a category is the best score among the tags tagd gave it (its tags
  and its suggestions, which the index stores and search ranks by) that map to the
  category; a photo with no such tag is never retrieved, and its positives count as
  missed (AP is summed over all positives, retrieved or not);
- mean AP is over the categories with at least `--min-positives` (3) positive photos;
- precision/recall/F1 are micro-averaged over (photo, category) pairs from the tags tagd
  writes into the file (above their threshold, under a parent that is written too:
  `Vocabulary.written`); tags that map to no category ("animal", "landscape") are neither
  right nor wrong;
- coverage is the share of labelled photos (at least one label) with at least one correct tag;
- `--cv K`: the threshold rule (base, and person's own) is re-chosen on K-1 folds by F1 and
  applied to the held-out fold; the pooled held-out figures are reported;
- person: the best recall at precision >= 0.85 along the full person-score curve, and
  the precision/recall at the shipped threshold;
- `--cross-fit` (the unseen set, a v2 bundle): both halves, each with the build's calibration
  refitted on COCO and the other half, pooled, with 95 % photo-bootstrap intervals and a
  sweep of one shared threshold (the coverage and precision any threshold could reach).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagd.model import Model  # noqa: E402
from tagd.tagger import Tagger  # noqa: E402
from tagd.vocab import Vocabulary  # noqa: E402
from training.kinds import by_kind, kind_report  # noqa: E402
from training.measuring import Evaluation, category_tags, labelled_photos, measure, report  # noqa: E402

def evaluate(folder: Path, tagger: Tagger, min_positives: int = 3, person_precision: float = 0.85,
             field: str = "labels", split: str | None = None) -> Evaluation:
    """Tag `folder`'s photos (those of `split` only, where given) and measure; `field`: which
    labels of labels.json ("labels", the COCO categories; "concepts", tags only the classifier
    knows; "all", both: a photo is covered by any right tag)."""
    categories, names, truth = labelled_photos(folder, field, split)
    results = list(tagger.tag_paths(folder / "images" / n for n in names))
    scores = np.stack([r.tag_scores if r.ok else np.zeros(len(tagger.vocabulary)) for r in results])
    vocab = tagger.vocabulary
    thresholds = np.asarray([t.threshold for t in vocab.tags])
    return measure(scores, thresholds, vocab, categories, names, truth, sum(1 for r in results if not r.ok),
                   min_positives, person_precision, tagger.max_tags)


def threshold_rule(vocab: Vocabulary, base: float, person: float, per_log2: float = 0.01, cap: float = 0.45) -> np.ndarray:
    """Per-tag thresholds by the rule build_vocab.py uses, with `person` set on its own."""
    n = np.array([len(t.labels) for t in vocab.tags], dtype=np.float64)
    thresholds = np.minimum(cap, base + per_log2 * np.log2(np.maximum(n, 1)))
    if "person" in vocab:
        thresholds[vocab.names.index("person")] = person
    return thresholds


def _pair_counts(scores: np.ndarray, thresholds: np.ndarray, truth: list[set[str]],
                 cat_columns: dict[str, list[int]]) -> tuple[int, int, int, int]:
    tp = fp = fn = covered = 0
    above = scores >= thresholds
    for row, labels in zip(above, truth):
        predicted = {c for c, cols in cat_columns.items() if cols and row[cols].any()}
        tp += len(predicted & labels)
        fp += len(predicted - labels)
        fn += len(labels - predicted)
        covered += bool(predicted & labels)
    return tp, fp, fn, covered


def cross_validate(folder: Path, tagger: Tagger, folds: int = 5, seed: int = 0) -> dict:
    """Held-out P/R/F1/coverage when the two threshold numbers are chosen without the test fold."""
    labels = json.loads((folder / "labels.json").read_text())
    names = sorted(labels["images"])
    truth = [set(labels["images"][n]["labels"]) for n in names]
    vocab = tagger.vocabulary
    mapping = category_tags(labels["categories"], vocab)
    cat_columns = {c: [vocab.names.index(t) for t in tags] for c, tags in mapping.items()}
    results = list(tagger.tag_paths(folder / "images" / n for n in names))
    scores = np.stack([r.tag_scores if r.ok else np.zeros(len(vocab)) for r in results])
    fold_of = np.random.default_rng(seed).permutation(len(names)) % folds
    grid = [(b, p) for b in (0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3) for p in (0.05, 0.08, 0.1, 0.15, 0.2, 0.3)]
    total = np.zeros(4, dtype=np.int64)
    chosen = []
    for k in range(folds):
        train, test = fold_of != k, fold_of == k
        train_truth = [t for t, m in zip(truth, train) if m]
        test_truth = [t for t, m in zip(truth, test) if m]

        def f1(params: tuple[float, float]) -> float:
            tp, fp, fn, _ = _pair_counts(scores[train], threshold_rule(vocab, *params), train_truth, cat_columns)
            return 2 * tp / max(1, 2 * tp + fp + fn)

        best = max(grid, key=f1)
        chosen.append(best)
        total += np.array(_pair_counts(scores[test], threshold_rule(vocab, *best), test_truth, cat_columns))
    tp, fp, fn, covered = (int(x) for x in total)
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    return {
        "folds": folds,
        "chosen": chosen,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(1e-12, precision + recall),
        "coverage": covered / len(names),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder with labels.json and images/")
    parser.add_argument("--model", type=Path, default=None, help="model bundle directory (default: packaged)")
    parser.add_argument("--min-positives", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--cv", type=int, default=0, metavar="K", help="also report K-fold cross-validated thresholds "
                        "(for a v2 bundle: calibration and threshold refitted without each held-out fold)")
    parser.add_argument("--field", choices=["labels", "concepts", "all", "breed"], default="labels",
                        help="labels: the COCO categories; concepts: the tags only the classifier knows (unseen set); "
                             "all: both; breed: the dog and cat breeds (unseen set)")
    parser.add_argument("--by-kind", action="store_true",
                        help="also the figures by kind of tag (animals, scenes, buildings, food and drink, breeds, objects)")
    parser.add_argument("--cross-fit", action="store_true",
                        help="the unseen set (a v2 bundle): also both halves, each with the calibration refitted on "
                             "COCO and the other half (../shared/data/coco128-dev, or --coco)")
    parser.add_argument("--coco", type=Path, default=None, help="COCO calibration photos for --cross-fit")
    parser.add_argument("--split", default=None,
                        help='only the photos of this split (the unseen set: "report", the half no calibration saw)')
    args = parser.parse_args(argv)
    if not (args.folder / "labels.json").is_file():
        parser.error(f"{args.folder}/labels.json not found")
    tagger = Tagger(Model(args.model))
    ev = evaluate(args.folder, tagger, args.min_positives, field=args.field, split=args.split)
    print(report(ev, args.min_positives))
    figures = ev.as_dict()
    if args.by_kind:
        figures["by_kind"] = by_kind(ev, tagger.vocabulary, args.min_positives)
        print("\n" + kind_report(figures["by_kind"], args.min_positives))
    if args.cv and tagger.vocabulary.fused:
        from training.held_out import cross_validate_fused

        ev, chosen = cross_validate_fused(args.folder, tagger, args.cv, min_positives=args.min_positives)
        figures["cross_validated"] = {**ev.as_dict(), "thresholds": chosen}
        print(f"\n{args.cv}-fold cross-validated calibration (thresholds chosen per fold: {chosen}):")
        print(report(ev, args.min_positives))
    elif args.cv:
        cv = cross_validate(args.folder, tagger, args.cv)
        figures["cross_validated"] = cv
        print(
            f"{args.cv}-fold cross-validated thresholds (chosen per fold: {cv['chosen']}): "
            f"precision {cv['precision']:.3f} recall {cv['recall']:.3f} F1 {cv['f1']:.3f} coverage {cv['coverage']:.3f}"
        )
    if args.cross_fit and tagger.vocabulary.fused:
        from training.held_out import cross_fit_report

        ev, figures["cross_fitted"], text = cross_fit_report(args.folder, tagger, args.coco, args.field,
                                                             args.min_positives)
        print(text)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=float) + "\n")
    print(
        f"RESULT mean_ap={ev.mean_ap:.4f} full_mean_ap={ev.full_mean_ap:.4f} coverage={ev.coverage:.4f} precision={ev.micro_precision:.4f} "
        f"recall={ev.micro_recall:.4f} f1={ev.micro_f1:.4f} "
        f"person_recall_at_p85={next((v for k, v in ev.person.items() if k.startswith('best_recall')), float('nan')):.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
