"""The packaged default model on the same photos and categories, for comparison.

Its scores are computed from the cached view embeddings through the ImageNet classifier
and the packaged vocabulary — the same arithmetic as tagd's graph and `Vocabulary`, without
decoding every photo again (`tests/test_training_crossval.py` checks the figures against
`training/evaluate.py` on coco128-dev).

Two AP conventions, both reported:
- `tagd`: evaluate.py's — a photo's score for a category is the best score among the tags
  tagd *emits* for it (tags above threshold plus suggestions >= 0.01, at most 20); a photo
  with none is never retrieved and its positives count as missed. Categories that map to no
  packaged tag score 0. A trained bundle is measured the same way through its own vocabulary.
- `full`: every photo ranked by its full score, nothing cut (threshold-free).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from training.metrics import average_precision

if TYPE_CHECKING:
    from tagd.vocab import Vocabulary


def emitted(tag_scores: np.ndarray, vocab: Vocabulary, max_tags: int = 10) -> list[dict[str, float]]:
    """What tagd would output for each photo: {tag: rounded score} for its tags and suggestions."""
    out = []
    for row in tag_scores:
        tags = vocab.select(row, max_tags=max_tags)
        sugg = vocab.suggest(row, exclude={t.name for t in tags})
        out.append({t.name: t.score for t in (*tags, *sugg)})
    return out


def category_ap(
    categories: Sequence[str],
    mapping: dict[str, tuple[str, ...]],
    labels: np.ndarray,
    *,
    full_scores: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    emitted_scores: list[dict[str, float]] | None = None,
    ap_fn=average_precision,
) -> np.ndarray:
    """Per-category AP under the `full` convention (full_scores + names) or `tagd` (emitted_scores)."""
    out = np.full(len(categories), np.nan)
    column = {n: j for j, n in enumerate(names or [])}
    for c, cat in enumerate(categories):
        truth = labels[:, c] > 0
        if not truth.any():
            continue
        tags = [t for t in mapping.get(cat, ()) if emitted_scores is not None or t in column]
        if not tags:
            out[c] = 0.0
            continue
        if emitted_scores is not None:
            scores = [max((e[t] for t in tags if t in e), default=None) for e in emitted_scores]
        else:
            scores = list(full_scores[:, [column[t] for t in tags]].max(axis=1))
        out[c] = ap_fn(scores, truth)
    return out
