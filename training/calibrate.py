"""Per-tag thresholds chosen on validation photos.

`f1` (default): each tag's threshold maximises its F1 on the validation photos. A tag with
few validation positives gets a noisy optimum, so it is pulled toward the single threshold
that maximises F1 over all tags together, with weight k / (positives + k) (k = 5), in
log-odds; a tag with no validation positive takes that global threshold. The cut sits
halfway between the last score kept and the next one, not on a photo's exact score.

`precision`: the loosest threshold whose precision is still >= the target (as
`training/evaluate.py`'s `best_recall_at_precision`), for tags with at least `min_positives`
validation positives; other tags take the loosest global threshold that meets the target
over all tags pooled. A tag that cannot meet the target gets 1.0: never written into a
photo, still offered as a suggestion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOOR = 0.02  # below the suggestion floor (0.01) a "tag" would be noise written into files
SHRINK = 5.0


@dataclass
class Thresholds:
    values: np.ndarray
    mode: str
    target: float | None
    global_threshold: float
    validation_positives: np.ndarray

    def as_dict(self, tags: list[str]) -> dict:
        return {
            "mode": self.mode, "target_precision": self.target, "global": self.global_threshold,
            "per_tag": {t: float(v) for t, v in zip(tags, self.values)},
        }


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def _sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))


def _cuts(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct score (high to low): threshold halfway to the next, tp, kept, positives."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    tp = np.cumsum(t)
    kept = np.arange(1, len(s) + 1)
    ends = np.append(s[1:] != s[:-1], True)
    nxt = np.append(s[1:], 0.0)
    cut = (s + nxt) / 2
    return cut[ends], tp[ends], kept[ends], np.full(int(ends.sum()), t.sum())


def best_f1_threshold(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    cut, tp, kept, pos = _cuts(np.asarray(scores, np.float64), np.asarray(truth, bool))
    if pos.size == 0 or pos[0] == 0:
        return 1.0, 0.0
    f1 = 2 * tp / (kept + pos)
    i = int(np.argmax(f1))
    return float(cut[i]), float(f1[i])


def loosest_at_precision(scores: np.ndarray, truth: np.ndarray, target: float) -> float | None:
    cut, tp, kept, pos = _cuts(np.asarray(scores, np.float64), np.asarray(truth, bool))
    if pos.size == 0 or pos[0] == 0:
        return None
    ok = np.nonzero(tp / kept >= target)[0]
    return float(cut[ok[-1]]) if ok.size else None


def choose_thresholds(scores: np.ndarray, labels: np.ndarray, mode: str = "f1", target: float = 0.9,
                      min_positives: int = 3) -> Thresholds:
    y = labels > 0
    positives = y.sum(0)
    n_tags = labels.shape[1]
    if mode == "f1":
        glob, _ = best_f1_threshold(scores.reshape(-1), y.reshape(-1))
        values = np.full(n_tags, glob)
        for j in range(n_tags):
            if positives[j] == 0:
                continue
            t, _ = best_f1_threshold(scores[:, j], y[:, j])
            w = positives[j] / (positives[j] + SHRINK)
            values[j] = _sigmoid(w * _logit(t) + (1 - w) * _logit(glob))
        return Thresholds(np.clip(values, FLOOR, 1.0), mode, None, float(glob), positives)
    if mode == "precision":
        glob = loosest_at_precision(scores.reshape(-1), y.reshape(-1), target)
        glob = 1.0 if glob is None else glob
        values = np.full(n_tags, glob)
        for j in range(n_tags):
            if positives[j] >= min_positives:
                t = loosest_at_precision(scores[:, j], y[:, j], target)
                values[j] = 1.0 if t is None else t
        return Thresholds(np.clip(values, FLOOR, 1.0), mode, target, float(glob), positives)
    raise ValueError(f"unknown threshold mode {mode!r} (f1 or precision)")
