"""Trained tags as a tagd vocabulary: each tag's label columns, and vocab.json.

A trained bundle has one sigmoid output ("label") per tag, in the tag list's order. In
vocab.json (`tagd-vocab/1`) a tag's `labels` are its own column plus every descendant's,
and the bundle says `aggregate: max`: a parent scores at least as high as its best child
(`animals` >= `dog`), which is also how thresholds are calibrated and figures measured
here (`tag_scores`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from training.dataset import TagDef


def descendants(tags: Sequence[TagDef]) -> list[list[int]]:
    """For each tag, its own column and all its descendants' columns, sorted."""
    index = {t.name: j for j, t in enumerate(tags)}
    children: dict[int, list[int]] = {j: [] for j in range(len(tags))}
    for j, t in enumerate(tags):
        for p in t.parents:
            children[index[p]].append(j)
    out = []
    for j in range(len(tags)):
        seen, stack = {j}, [j]
        while stack:
            for c in children[stack.pop()]:
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        out.append(sorted(seen))
    return out


def tag_scores(label_scores: np.ndarray, columns: list[list[int]]) -> np.ndarray:
    """(..., labels) -> (..., tags): each tag the max over its columns, as tagd computes."""
    if all(len(c) == 1 and c[0] == j for j, c in enumerate(columns)):
        return label_scores
    return np.stack([label_scores[..., c].max(axis=-1) for c in columns], axis=-1)


def vocabulary_json(tags: Sequence[TagDef], thresholds: np.ndarray, *, source: str) -> dict:
    columns = descendants(tags)
    return {
        "format": "tagd-vocab/1",
        "n_labels": len(tags),
        "source": source,
        "suggestion_floor": 0.01,
        "max_suggestions": 20,
        "tags": [
            {
                "name": t.name,
                "parents": list(t.parents),
                "synonyms": [s for s in t.synonyms if s.casefold() != t.name.casefold()],
                "labels": columns[j],
                "threshold": round(float(thresholds[j]), 4),
                "weight": 1.0,
            }
            for j, t in enumerate(tags)
        ],
    }
