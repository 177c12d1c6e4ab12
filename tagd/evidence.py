"""The model's evidence as refinement reads it, and the refinement parameters the pipeline runs
with: what `tagd.pipeline` hands `tagd.refine.refine`, and what the evaluation scripts hand it
to measure tagd as it runs."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Iterable

from tagd.refine import PIPELINE, RefineParams

if TYPE_CHECKING:
    import numpy as np

    from tagd.vocab import Vocabulary


def refine_params(embedding: str, neighbours: int, max_added: int) -> RefineParams:
    """The refinement's parameters as the pipeline uses them, for a tagger whose embeddings
    are `embedding` (tagd.model.BundleSpec.embedding)."""
    params = replace(PIPELINE, k=max(1, neighbours), max_added=max_added)
    if embedding == "tags":
        # In tag space two photos of one subject are as close as two shots of one scene: none
        # is left out as a near-duplicate (the photo itself is, by its path).
        params = replace(params, near_duplicate=1.01)
    return params


def model_evidence(vocab: "Vocabulary", positions: dict[str, int], tag_scores: "np.ndarray", words: Iterable[str]
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """The model's score for each word the vocabulary knows (by name or synonym), keyed by the
    casefolded word: (raw scores, scores for `refine`). A word it does not know gets none: it can
    only come from the neighbours.

    `refine` reads a score as the probability that the tag belongs. A tag's raw score is not
    that: the vocabulary's per-tag threshold is where the model's own decision flips (0.06 for
    one tag, 0.15 for another). So `refine` gets the score's odds relative to the threshold's,
    as a probability: at the threshold 0.5, so that with no library evidence either way the
    model's confident tags are added, as they are without a library.
    """
    raw: dict[str, float] = {}
    scaled: dict[str, float] = {}
    for word in words:
        folded = word.casefold()
        tag = vocab.canonical(folded)
        if tag is None or folded in raw:
            continue
        score = float(tag_scores[positions[tag]])
        raw[folded] = score
        s = min(max(score, 1e-6), 1 - 1e-6)
        t = min(max(vocab[tag].threshold, 1e-6), 1 - 1e-6)
        odds = (s / (1 - s)) / (t / (1 - t))
        scaled[folded] = odds / (1 + odds) if math.isfinite(odds) else 1.0
    return raw, scaled
