"""Tag-quality measures for trained models.

- AP is computed per tag over all test photos, ranked by score. Tied scores form one
  step (as scikit-learn's `average_precision_score`): a sigmoid head easily gives many
  photos exactly 1.0 or 0.0 in float32, and breaking such ties in favour of the positives,
  as `training/evaluate.py`'s `average_precision` does, would inflate its AP (on coco128-dev
  a saturated head went from 0.15 to 0.74 that way). `None` means "not retrieved", as in
  evaluate.py: such positives count as missed.
- mean AP is over tags with at least `min_positives` test positives.
- F1@3: each photo's three best tags; precision@3 and recall@3 averaged over the photos
  with at least one label, F1 from the two averages.
- At the calibrated thresholds: micro precision/recall/F1 over (photo, tag) pairs, macro F1
  over tags with positives, and coverage (photos with at least one correct tag).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


def average_precision(scores: Sequence[float | None] | np.ndarray, truth: Sequence[bool] | np.ndarray) -> float:
    truth = np.asarray(truth, dtype=bool)
    positives = int(truth.sum())
    if positives == 0:
        return float("nan")
    got = [(float(s), bool(t)) for s, t in zip(scores, truth) if s is not None]
    if not got:
        return 0.0
    s = np.array([g[0] for g in got])
    t = np.array([g[1] for g in got])
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    tp = np.cumsum(t)
    # Only the last photo of each run of equal scores is a place a threshold can cut.
    ends = np.append(s[1:] != s[:-1], True)
    tp_end, k_end = tp[ends], (np.arange(1, len(s) + 1))[ends]
    gained = np.diff(np.concatenate([[0], tp_end]))
    return float(np.sum(gained * (tp_end / k_end)) / positives)


def per_tag_ap(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([average_precision(scores[:, j], labels[:, j] > 0) for j in range(labels.shape[1])])


def mean_ap(ap: np.ndarray, labels: np.ndarray, min_positives: int = 1) -> tuple[float, int]:
    keep = (labels.sum(0) >= min_positives) & ~np.isnan(ap)
    return (float(np.mean(ap[keep])) if keep.any() else float("nan")), int(keep.sum())


def f1_at_k(scores: np.ndarray, labels: np.ndarray, k: int = 3) -> tuple[float, float, float]:
    has = labels.sum(1) > 0
    if not has.any():
        return float("nan"), float("nan"), float("nan")
    s, y = scores[has], labels[has] > 0
    k = min(k, s.shape[1])
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(y, top, axis=1).sum(1)
    precision = float(np.mean(hits / k))
    recall = float(np.mean(hits / y.sum(1)))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def threshold_metrics(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    # One threshold per tag, or per (photo, tag) when photos were cut at different folds' thresholds.
    pred = scores >= (thresholds if thresholds.ndim == 2 else thresholds.reshape(1, -1))
    y = labels > 0
    tp = float((pred & y).sum())
    fp = float((pred & ~y).sum())
    fn = float((~pred & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_tag_f1 = []
    for j in np.nonzero(y.sum(0) > 0)[0]:
        tpj = float((pred[:, j] & y[:, j]).sum())
        denom = float(pred[:, j].sum() + y[:, j].sum())
        per_tag_f1.append(2 * tpj / denom if denom else 0.0)
    return {
        "precision": precision, "recall": recall, "f1": f1,
        "macro_f1": float(np.mean(per_tag_f1)) if per_tag_f1 else float("nan"),
        "coverage": float(np.mean((pred & y).any(1))) if len(y) else float("nan"),
        "tags_per_photo": float(pred.sum(1).mean()) if len(y) else float("nan"),
    }


def precision_recall_curve(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct threshold, best score first."""
    truth = np.asarray(truth, dtype=bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="stable")
    s, t = s[order], truth[order]
    tp = np.cumsum(t)
    k = np.arange(1, len(s) + 1)
    ends = np.append(s[1:] != s[:-1], True)
    return tp[ends] / max(1, int(t.sum())), tp[ends] / k[ends]


@dataclass
class Evaluation:
    tags: list[str]
    ap: list[float]
    positives: list[int]
    mean_ap: float
    mean_ap_tags: int
    precision_at_3: float
    recall_at_3: float
    f1_at_3: float
    at_thresholds: dict[str, float]
    photos: int

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate_scores(tags: list[str], scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray,
                    min_positives: int = 1) -> Evaluation:
    ap = per_tag_ap(scores, labels)
    m, n = mean_ap(ap, labels, min_positives)
    p3, r3, f3 = f1_at_k(scores, labels, 3)
    return Evaluation(tags, [float(a) for a in ap], [int(x) for x in labels.sum(0)], m, n, p3, r3, f3,
                      threshold_metrics(scores, labels, thresholds), int(len(labels)))
