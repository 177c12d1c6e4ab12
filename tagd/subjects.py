"""Personal tags by subject: a word of the user's own ("rufus", "grandma", "mittens") travels
to a new photo that shows what the photos carrying it show, and to no other.

The neighbour vote (tagd.refine) weighs a tag's share among a photo's neighbours against its
share of the library, so a word on 5 photos of a 20,000-photo library can never win a vote.
Whether a new photo shows the same subject is another question, and the library's size has
no part in it. A private word's subject is what its photos have in common, in the tagger's
own vocabulary: the tags that at least SHARE of its photos carry (theirs or tagd's, with
their ancestors: a beagle is a dog), without the broad roots ("animal", "vehicle": most of a
library shares one of those), keeping only the most specific ("dog", not "animal" too). A
new photo gets the word when the tagger finds every tag of that subject on it. A word whose
photos have nothing specific in common (a trip's name, "favourites") has no subject and is
left to the neighbour vote.

Measured by training/evaluate_private.py (figures in the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:
    from tagd.vocab import Vocabulary

MIN_CARRIERS = 3  # fewer photos than this say too little about what a word means
SHARE = 2 / 3  # of a word's photos that must carry a tag for it to be the word's subject


@dataclass(frozen=True)
class Subject:
    word: str  # casefolded
    tags: frozenset[str]  # vocabulary tags, all required
    carriers: int


def subject_of(word: str, tag_sets: list[set[str]], vocab: "Vocabulary", share: float = SHARE) -> Subject | None:
    """The subject of a private `word` from its photos' vocabulary tags (each photo's tags,
    the user's canonicalised and tagd's; ancestors are added here), or None."""
    if len(tag_sets) < MIN_CARRIERS:
        return None
    counts: dict[str, int] = {}
    for tags in tag_sets:
        for name in closure(tags, vocab):
            counts[name] = counts.get(name, 0) + 1
    common = {name for name, n in counts.items() if n >= share * len(tag_sets) - 1e-9}
    common -= broad_roots(vocab)
    ancestors = {a for name in common for a in vocab.ancestors(name)}
    specific = frozenset(common - ancestors)
    return Subject(word, specific, len(tag_sets)) if specific else None


def closure(tags: Iterable[str], vocab: "Vocabulary") -> set[str]:
    """`tags` (vocabulary names) with their ancestors."""
    out = set()
    for name in tags:
        if name in vocab:
            out.add(name)
            out.update(vocab.ancestors(name))
    return out


def broad_roots(vocab: "Vocabulary") -> frozenset[str]:
    """The hierarchy's roots that have children ("animal", "vehicle", "food", ...)."""
    parents = {p for t in vocab.tags for p in t.parents}
    return frozenset(t.name for t in vocab.tags if not t.parents and t.name in parents)


def subject_relevance(subjects: Iterable[Subject], scores: Mapping[str, float], vocab: "Vocabulary",
                      found: Iterable[str] = (), user_words: Iterable[str] = ()) -> dict[str, float]:
    """Each private word's relevance to a photo: the least of its subject's tags' scores on
    the photo, so >= 0.5 exactly when the tagger finds the whole subject there. `scores`: the
    model's, by casefolded word, on tagd.evidence.model_evidence's scale (0.5 at a tag's
    threshold); `found`: the tags the tagger writes on the photo; `user_words`: its keywords (a
    tag the user wrote there counts as 1). A tag found implies its ancestors ("beagle": a dog)."""
    subjects = list(subjects)
    on_photo = {t: scores.get(t.casefold(), 0.0) for t in {*(t for s in subjects for t in s.tags), *found}}
    on_photo.update({c: 1.0 for k in user_words if (c := vocab.canonical(k)) is not None})
    for name in list(on_photo):
        if on_photo[name] >= 0.5 and name in vocab:
            for a in vocab.ancestors(name):
                on_photo[a] = max(on_photo.get(a, 0.0), on_photo[name])
    return {s.word: min(on_photo.get(t, 0.0) for t in s.tags) for s in subjects}
