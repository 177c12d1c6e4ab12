"""Everything refinement weighs for one photo, gathered and handed to `tagd.refine.refine` once:
the model's evidence as refinement reads it, the library's (LibraryEvidence: read by
tagd.library on the index's thread), what tagd did to the photo before (its provenance), and
the parameters the pipeline runs with. The pipeline calls `refine_photo`; the evaluation
scripts call the same pieces to measure tagd as it runs. `tagd.refine` itself stays pure
arithmetic over plain data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Sequence

from tagd.refine import PIPELINE, LibraryStats, Mode, Neighbour, RefineParams, Refinement, refine
from tagd.subjects import Subject, subject_relevance

if TYPE_CHECKING:
    import numpy as np

    from tagd.metadata.provenance import Provenance
    from tagd.tagger import TagResult
    from tagd.vocab import Vocabulary


@dataclass(frozen=True)
class LibraryEvidence:
    """What the library says about one photo, read on the index's thread for a writer thread."""

    stats: LibraryStats
    neighbours: list[Neighbour]
    subjects: list[Subject] = field(default_factory=list)
    rejections: dict[str, float] = field(default_factory=dict)  # Library.rejections


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


def refine_photo(keywords: Sequence[str], prov: "Provenance | None", result: "TagResult",
                 evidence: LibraryEvidence | None, *, vocab: "Vocabulary", positions: dict[str, int],
                 model_version: str, mode: Mode, params: RefineParams) -> Refinement:
    """A photo's keywords refined (`tagd.refine.refine`): its keywords as found, what tagd did
    to them before (provenance), the model's result, and the library's evidence.

    Evidence: the model's scores (each user word through the vocabulary's synonyms: "kitty"
    gets the score of "cat"), and, once the library has photos with the user's own tags,
    their statistics and the photo's neighbours. With no library evidence
    the model's confident tags are added after the user's keywords, as the same function
    decides with it (so a library that appears changes no decision it has no evidence for),
    in `mode`.
    `removed` covers every keyword tagd has removed and the user has not put back, so that
    `tagd revert` can restore them all.
    """
    if prov is not None and prov.model_version == model_version and \
            {k.casefold() for k in keywords} == {k.casefold() for k in prov.written}:
        return settled(keywords, prov)
    history = dict(
        previously_added=prov.added if prov else (),
        previously_written=prov.written if prov else (),
        previously_rejected=prov.rejected if prov else (),
    )
    have = {k.casefold() for k in keywords}
    reinstated = [k for k in (prov.removed if prov else ()) if k.casefold() in have]
    neighbours = evidence.neighbours if evidence is not None else []
    tag_scores = result.tag_scores
    if tag_scores is None:  # a tagger that reports only its selected tags
        import numpy as np

        tag_scores = np.zeros(len(positions), dtype=np.float32)
        for t in (*result.suggestions, *result.tags):
            if t.name in positions:
                tag_scores[positions[t.name]] = t.score
    subjects = evidence.subjects if evidence is not None else []
    subject_tags = {t for s in subjects for t in s.tags}
    words = {*keywords, *(t for n in neighbours for t in n.tags), *(t.name for t in result.tags), *subject_tags}
    raw, scores = model_evidence(vocab, positions, tag_scores, words)
    # tagd's earlier additions the user kept stand unless the evidence against them is strong;
    # those of another model version are replaced by this one's (a new bundle re-tags the library).
    same_model = prov is not None and prov.model_version == model_version
    standing = [k for k in prov.added if k.casefold() in have] if prov is not None and same_model else []
    refined = refine(
        keywords, scores, mode=mode, neighbours=neighbours,
        library=evidence.stats if evidence is not None else LibraryStats(),
        candidates=[t.name for t in result.tags], keep=reinstated, standing=standing, params=params, **history,
        subjects=subject_relevance(subjects, scores, vocab, (t.name for t in result.tags), keywords)
        if subjects else None,
        rejected_nearby=evidence.rejections if evidence is not None else None,
    )
    still_removed = [k for k in (prov.removed if prov else ()) if k.casefold() not in have]
    removed_f = {k.casefold() for k in still_removed}
    # Scores of the model's confident tags, under whichever word the photo carries them (not
    # the near-zero score of every user keyword the model happens to know).
    confident = {t.name for t in result.tags}
    return replace(
        refined,
        machine_tags={k: round(raw[k.casefold()], 4) for k in refined.machine_tags if vocab.canonical(k) in confident},
        removed=[*still_removed, *(k for k in refined.removed if k.casefold() not in removed_f)],
    )


def settled(keywords: Sequence[str], prov: "Provenance") -> Refinement:
    """A photo tagd wrote at this model version, its keywords untouched since: its tags
    stand as written. The library's evidence grows with every photo; a re-run that finds
    nothing new about the photo itself changes nothing in it."""
    have = {k.casefold() for k in keywords}
    return Refinement(
        keywords=list(keywords), added=[k for k in prov.added if k.casefold() in have],
        rejected=list(prov.rejected), machine_tags=dict(prov.machine_tags),
        relevance={k: v for k, v in prov.machine_tags.items()}, removed=list(prov.removed),
        suggested_removals=[k for k in prov.suggested_removals if k.casefold() in have],
    )
