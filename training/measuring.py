"""The measurement behind training/evaluate.py (its docstring states the conventions): per
category AP, micro precision/recall/F1, coverage and the person figures from each photo's tag
scores, as tagd would write and suggest tags; the labelled photos of a labels.json folder.
Shared by evaluate.py and held_out.py (refitted calibrations), so both count alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagd.vocab import Vocabulary

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
    # (photos, 4): each photo's written-right, written-wrong and missed categories, and whether
    # it is labelled and covered (0/1: -1 where unlabelled); what `interval` resamples.
    per_photo: np.ndarray | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "per_photo"}

    def interval(self, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Photo-level bootstrap intervals of precision, recall and coverage: how far the figures
        could move on another set of photos like these (a few hundred photos leave them loose)."""
        counts = self.per_photo
        rng = np.random.default_rng(seed)
        draws = counts[rng.integers(0, len(counts), size=(resamples, len(counts)))]
        tp, fp, fn = (draws[..., i].sum(axis=1) for i in range(3))
        labelled = (draws[..., 3] >= 0).sum(axis=1)
        figures = {"precision": tp / np.maximum(1, tp + fp), "recall": tp / np.maximum(1, tp + fn),
                   "coverage": (draws[..., 3] > 0).sum(axis=1) / np.maximum(1, labelled)}
        tail = 100 * (1 - level) / 2
        return {k: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))) for k, v in figures.items()}


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


def labelled_photos(folder: Path, field: str, split: str | None = None) -> tuple[list[str], list[str], dict[str, set[str]]]:
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
    for row, ok in zip(scores, vocab.written(scores, thresholds)):
        written.append(set(vocab.ranked(np.nonzero(ok)[0], row, max_tags)))
    counts = {c: [0, 0, 0] for c in categories}  # written right, written wrong, missed
    per_photo = []
    for name, tags in zip(names, written):
        predicted = {c for c in categories if any(j in tags for j in columns[c])}
        right = predicted & truth[name]
        per_photo.append((len(right), len(predicted - truth[name]), len(truth[name] - predicted),
                          int(bool(right)) if truth[name] else -1))
        tp, fp, fn = tp + per_photo[-1][0], fp + per_photo[-1][1], fn + per_photo[-1][2]
        covered += bool(right)
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
                      len(names), errors, full_mean_ap=mean("full_ap"),
                      per_photo=np.asarray(per_photo, dtype=np.int64).reshape(-1, 4))


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
