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
- precision/recall/F1 are micro-averaged over (photo, category) pairs from the tags
  (above their threshold: what tagd writes into the file); tags that map to no category
  ("animal", "landscape") are neither right nor wrong;
- coverage is the share of labelled photos (at least one label) with at least one correct tag;
- `--cv K`: the threshold rule (base, and person's own) is re-chosen on K-1 folds by F1 and
  applied to the held-out fold; the pooled held-out figures are reported;
- person: the best recall at precision >= 0.85 along the full person-score curve, and
  the precision/recall at the shipped threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagd.model import Model  # noqa: E402
from tagd.tagger import Tagger  # noqa: E402
from tagd.vocab import Vocabulary  # noqa: E402
from training.kinds import by_kind, kind_report  # noqa: E402

# COCO names that no vocabulary synonym reaches. Each maps to the tag a person would accept
# as describing the photo; categories with no plausible tag are deliberately absent.
LABEL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "baseball bat": ("baseball",),
    "baseball glove": ("baseball",),
    "cake": ("dessert",),
    "donut": ("dessert",),
    "tennis racket": ("tennis",),
    "wine glass": ("glass",),
}


@dataclass
class Evaluation:
    per_category: dict[str, dict]
    mean_ap: float
    mean_ap_categories: int
    micro_precision: float
    micro_recall: float
    micro_f1: float
    coverage: float
    person: dict
    photos: int
    errors: int
    full_mean_ap: float = float("nan")  # every photo ranked by its full score: threshold-free

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def average_precision(scores: list[float | None], truth: list[bool]) -> float:
    """AP where `None` means "not retrieved": such positives are missed, never ranked.

    Tied scores form one step (as sklearn's average_precision_score does): a tie between a
    positive and a negative is not resolved in the positive's favour.
    """
    positives = sum(truth)
    if positives == 0:
        return float("nan")
    by_score: dict[float, list[bool]] = {}
    for s, t in zip(scores, truth):
        if s is not None:
            by_score.setdefault(s, []).append(t)
    hits = seen = 0
    total = 0.0
    for s in sorted(by_score, reverse=True):
        group = by_score[s]
        new_hits = sum(group)
        hits += new_hits
        seen += len(group)
        total += new_hits * (hits / seen)
    return total / positives


def best_recall_at_precision(scores: np.ndarray, truth: np.ndarray, min_precision: float) -> tuple[float, float]:
    """(recall, threshold) of the loosest threshold whose precision is still >= min_precision."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    tp = np.cumsum(t)
    k = np.arange(1, len(t) + 1)
    precision, recall = tp / k, tp / max(1, t.sum())
    # Only cut between distinct scores: a threshold keeps every photo with an equal score.
    last_of_run = np.append(s[1:] != s[:-1], True)
    ok = (precision >= min_precision) & last_of_run
    if not ok.any():
        return 0.0, 1.0
    best = int(np.nonzero(ok)[0][np.argmax(recall[ok])])
    return float(recall[best]), float(s[best])


def category_tags(categories: list[str], vocab: Vocabulary) -> dict[str, tuple[str, ...]]:
    mapping = {}
    for cat in categories:
        # The label's own name first (a trained bundle may have a tag called "cake"), then the
        # table, then the vocabulary's synonyms.
        if cat in vocab:
            tags = (cat,)
        else:
            tags = LABEL_SYNONYMS.get(cat)
        if tags is None:
            canonical = vocab.canonical(cat)
            tags = (canonical,) if canonical else ()
        mapping[cat] = tuple(t for t in tags if t in vocab)
    return mapping


def evaluate(folder: Path, tagger: Tagger, min_positives: int = 3, person_precision: float = 0.85,
             field: str = "labels", split: str | None = None) -> Evaluation:
    """Tag `folder`'s photos (those of `split` only, where given) and measure; `field`: which
    labels of labels.json ("labels", the COCO categories; "concepts", tags only the classifier
    knows; "all", both: a photo is covered by any right tag)."""
    categories, names, truth = _labels(folder, field, split)
    results = list(tagger.tag_paths(folder / "images" / n for n in names))
    scores = np.stack([r.tag_scores if r.ok else np.zeros(len(tagger.vocabulary)) for r in results])
    vocab = tagger.vocabulary
    thresholds = np.asarray([t.threshold for t in vocab.tags])
    return measure(scores, thresholds, vocab, categories, names, truth, sum(1 for r in results if not r.ok),
                   min_positives, person_precision, tagger.max_tags)


def _labels(folder: Path, field: str, split: str | None = None) -> tuple[list[str], list[str], dict[str, set[str]]]:
    labels = json.loads((folder / "labels.json").read_text())
    names = sorted(n for n, item in labels["images"].items() if split is None or item.get("split") == split)
    if not names:
        raise SystemExit(f"{folder}/labels.json: no photos" + (f" with split {split!r}" if split else ""))
    if field == "breed":  # one breed a photo at most, named as the vocabulary's breed tags are
        truth = {n: {b} if (b := labels["images"][n].get("breed")) else set() for n in names}
        return sorted({b for t in truth.values() for b in t}), names, truth
    fields = ("labels", "concepts") if field == "all" else (field,)
    categories: list[str] = [c for f in fields for c in (labels["categories"] if f == "labels" else labels[f])]
    truth = {n: {c for f in fields for c in labels["images"][n].get(f) or ()} for n in names}
    return categories, names, truth


def measure(scores: np.ndarray, thresholds: np.ndarray, vocab: Vocabulary, categories: list[str], names: list[str],
            truth: dict[str, set[str]], errors: int = 0, min_positives: int = 3, person_precision: float = 0.85,
            max_tags: int = 10) -> Evaluation:
    """The figures from each photo's score for every tag (N, tags), as tagd would emit them:
    its tags (at most `max_tags` above their threshold) and its suggestions (above the
    vocabulary's floor)."""
    mapping = category_tags(categories, vocab)
    columns = {c: [vocab.names.index(t) for t in tags] for c, tags in mapping.items()}
    per_category: dict[str, dict] = {}
    tp = fp = fn = covered = 0
    written = []
    thresholds = np.broadcast_to(thresholds, scores.shape)  # one per tag, or one per photo and tag
    for row, limit in zip(scores, thresholds):
        above = np.nonzero(row >= limit)[0]
        written.append(set(above[np.argsort(-row[above], kind="stable")][:max_tags]))
    counts = {c: [0, 0, 0] for c in categories}  # written right, written wrong, missed
    for name, tags in zip(names, written):
        predicted = {c for c in categories if any(j in tags for j in columns[c])}
        tp += len(predicted & truth[name])
        fp += len(predicted - truth[name])
        fn += len(truth[name] - predicted)
        covered += bool(predicted & truth[name])
        for c in predicted | truth[name]:
            counts[c][(0 if c in truth[name] else 1) if c in predicted else 2] += 1
    for cat in categories:
        flags = [cat in truth[n] for n in names]
        cols = columns[cat]
        best = scores[:, cols].max(axis=1) if cols else np.zeros(len(names))
        emitted = [float(s) if cols and (s >= vocab.suggestion_floor or any(j in w for j in cols)) else None
                   for s, w in zip(best, written)]
        per_category[cat] = {
            "tags": list(mapping[cat]),
            "positives": sum(flags),
            "ap": average_precision(emitted, flags),
            "full_ap": average_precision([float(s) for s in best] if cols else [None] * len(names), flags),
            "written_right": counts[cat][0], "written_wrong": counts[cat][1], "missed": counts[cat][2],
        }
    eligible = [c for c, v in per_category.items() if v["positives"] >= min_positives]
    mean = lambda key: float(np.mean([per_category[c][key] for c in eligible])) if eligible else float("nan")  # noqa: E731
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    person = {}
    if "person" in categories and "person" in vocab:
        j = vocab.names.index("person")
        full = scores[:, j]
        is_person = np.array([("person" in truth[n]) for n in names])
        rec, thr = best_recall_at_precision(full, is_person, person_precision)
        shipped = float(thresholds[:, j].mean())
        pred = full >= shipped
        person = {
            "positives": int(is_person.sum()),
            f"best_recall_at_precision_{person_precision}": rec,
            "at_score": thr,
            "shipped_threshold": shipped,
            "precision_at_shipped": float((pred & is_person).sum() / max(1, pred.sum())),
            "recall_at_shipped": float((pred & is_person).sum() / max(1, is_person.sum())),
        }
    labelled = sum(1 for n in names if truth[n])  # a photo with no label has no right tag to find
    return Evaluation(per_category, mean("ap"), len(eligible), precision, recall, f1, covered / max(1, labelled), person,
                      len(names), errors, full_mean_ap=mean("full_ap"))


def cross_validate_fused(folder: Path, tagger: Tagger, folds: int = 5, seed: int = 0, min_positives: int = 3,
                         person_precision: float = 0.85, unseen: Path | None = None) -> tuple[Evaluation, list[float]]:
    """A v2 bundle on photos its calibration saw: the calibration and the write thresholds are
    refitted K times without the held-out fold, by build_fused_bundle.py's own procedure (with
    the unseen set's calibration half, `unseen`, as the build uses it: default where the build
    looks for it; without it, the thresholds are chosen on the folds themselves), and the
    held-out scores pooled and measured. Returns the figures and each fold's shared threshold."""
    from training import build_fused_bundle as fused, fusion_fit

    vocab = tagger.vocabulary

    def evidence_of(where: Path, split: str | None = None) -> tuple[fusion_fit.Evidence, list[str], dict]:
        categories, names, truth = _labels(where, "labels", split)
        concepts = _labels(where, "concepts", split)[2] if split else None
        results = list(tagger.tag_paths(where / "images" / n for n in names))
        if not all(r.ok for r in results):
            raise SystemExit(f"unreadable: {[str(r.path) for r in results if not r.ok]}")
        ev = fused.fused_evidence(vocab, np.stack([r.classifier_scores for r in results]),
                                  np.stack([r.detector_scores for r in results]), [truth[n] for n in names],
                                  [concepts[n] for n in names] if concepts else None)
        return ev, names, {"categories": categories, "truth": truth}

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


def report(ev: Evaluation, min_positives: int) -> str:
    lines = [f"{'category':<16} {'tags':<22} {'pos':>4} {'AP':>6}"]
    for cat, v in sorted(ev.per_category.items(), key=lambda kv: -kv[1]["positives"]):
        if v["positives"] == 0:
            continue
        mark = "" if v["positives"] >= min_positives else "  (not in mean)"
        lines.append(f"{cat:<16} {','.join(v['tags']) or '-':<22} {v['positives']:>4} {v['ap']:>6.3f}{mark}")
    lines.append("")
    lines.append(f"photos {ev.photos}, unreadable {ev.errors}")
    lines.append(f"mean AP ({ev.mean_ap_categories} categories with >= {min_positives} positives): {ev.mean_ap:.3f}; "
                 f"threshold-free (every photo ranked by its full score): {ev.full_mean_ap:.3f}")
    lines.append(f"micro precision {ev.micro_precision:.3f}  recall {ev.micro_recall:.3f}  F1 {ev.micro_f1:.3f}")
    lines.append(f"coverage (labelled photos with >= 1 correct tag): {ev.coverage:.3f}")
    if ev.person:
        p = ev.person
        key = next(k for k in p if k.startswith("best_recall"))
        lines.append(
            f"person: {p['positives']} positives; recall {p[key]:.3f} at precision >= 0.85 (score {p['at_score']:.3f}); "
            f"at shipped threshold {p['shipped_threshold']:.2f}: precision {p['precision_at_shipped']:.3f} recall {p['recall_at_shipped']:.3f}"
        )
    return "\n".join(lines)


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
