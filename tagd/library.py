"""What the user's library says: the tags they gave their photos, and which of those photos a
new one looks like. The evidence `refine` takes from the library, read from the index.

The library is the photos that carry some tag of the user's own (source `user`, kept or
suggested for removal). tagd's additions are not part of it, whether or not the user has
looked at them: they would vote for themselves. A photo nobody tagged is not a photo without
tags, so it is left out too (counting it would make every tag look rare).

The tag sets are read once and kept: `LibraryStats` (priors, co-occurrence), per photo, what
its neighbours carry, the subject of each private word (tagd.subjects: a word of the user's
that the vocabulary does not know, on at least three photos), and the tags the user rejected
on which photos. They are read again when the photos recorded since the last read reach a
tenth of the library (so the cost per photo stays constant as it grows; a library
that was empty is read again after each recorded batch, which costs nothing), or when
`refresh_s` has passed and another process wrote to the index. Between reads a new photo's
neighbours come from the photos known at the last read.

Use it from the thread that owns the index connection.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tagd.refine import LibraryStats, Neighbour, RefineParams
from tagd.subjects import MIN_CARRIERS, Subject, subject_of

if TYPE_CHECKING:
    from tagd.index.db import Index
    from tagd.vocab import Vocabulary

log = logging.getLogger(__name__)

# How fast a rejection's weight falls with the photo's similarity to the one it was made on:
# 1 for the same picture, 0.37 at cosine 0.95, 0.02 at 0.8 (tag-space embeddings).
REJECTION_TEMPERATURE = 0.05


class Library:
    def __init__(self, index: "Index", *, k: int = RefineParams.k, near_duplicate: float = RefineParams.near_duplicate,
                 refresh_s: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 vocabulary: "Vocabulary | None" = None) -> None:
        self.index = index
        self.vocabulary = vocabulary  # None: no subjects
        self.k = k
        self.near_duplicate = near_duplicate
        self.refresh_s = refresh_s
        self.clock = clock
        self._stats = LibraryStats()
        self._subjects: list[Subject] = []
        self._rejected: dict[int, frozenset[str]] = {}
        self._rejected_ids: Any = ()
        self._tags: dict[int, frozenset[str]] = {}
        self._ids: Any = ()  # sorted photo ids of the library (numpy int64)
        self._gen: int | None = None  # index generation at the last read; None: never read
        self._read_at = 0.0
        self._recorded = 0  # photos this process recorded since the last read

    # -- freshness -----------------------------------------------------------------------------

    def recorded(self, n: int) -> None:
        """The caller wrote `n` photos to the index."""
        self._recorded += n

    def _stale(self) -> bool:
        if self._gen is None:
            return True
        if self._recorded and self._recorded * 10 >= len(self._ids):
            return True
        if self.clock() - self._read_at >= self.refresh_s:
            self._read_at = self.clock()  # check the generation once per interval, not per photo
            return self.index.generation() != self._gen
        return False

    def refresh(self) -> None:
        started = time.monotonic()
        gen, by_photo = self.index.user_tags()
        tags = {pid: frozenset(t.casefold() for t in names) for pid, names in by_photo.items()}
        self._stats = LibraryStats.from_tag_sets(tags.values())
        import numpy as np

        self._tags, self._ids = tags, np.asarray(sorted(tags), dtype=np.int64)
        self._subjects = self._read_subjects(tags) if self.vocabulary is not None else []
        rejected = {pid: frozenset(t.casefold() for t in names) for pid, names in self.index.rejected_tags().items()}
        self._rejected, self._rejected_ids = rejected, np.asarray(sorted(rejected), dtype=np.int64)
        self._gen, self._read_at, self._recorded = gen, self.clock(), 0
        log.debug("library: %d photos with your tags, %d distinct tags, %d private words with a subject, read in %.0f ms",
                  len(tags), len(self._stats.counts), len(self._subjects), (time.monotonic() - started) * 1000)

    def _read_subjects(self, tags: dict[int, frozenset[str]]) -> list[Subject]:
        vocab = self.vocabulary
        assert vocab is not None
        private: dict[str, list[int]] = {}
        for pid, names in tags.items():
            for name in names:
                if vocab.canonical(name) is None:
                    private.setdefault(name, []).append(pid)
        private = {w: ids for w, ids in private.items() if len(ids) >= MIN_CARRIERS}
        if not private:
            return []
        added = self.index.added_tags([pid for ids in private.values() for pid in ids])
        known = {pid: {c for n in (*tags[pid], *added.get(pid, ())) if (c := vocab.canonical(n)) is not None}
                 for ids in private.values() for pid in ids}
        found = (subject_of(w, [known[pid] for pid in ids], vocab) for w, ids in sorted(private.items()))
        return [s for s in found if s is not None]

    # -- evidence ------------------------------------------------------------------------------

    @property
    def stats(self) -> LibraryStats:
        """The user's tags over their library (refreshed when stale). Never mutated: a new
        object after each read, so a reference handed to another thread stays consistent."""
        if self._stale():
            self.refresh()
        return self._stats

    @property
    def subjects(self) -> list[Subject]:
        """The subject of each private word that has one (refreshed with the stats)."""
        self.stats  # noqa: B018 - refreshes when stale
        return self._subjects

    def neighbours(self, embedding: Any, exclude: Path | None = None) -> list[Neighbour]:
        """The k library photos nearest to `embedding`, leaving out the photo at `exclude` and
        near-duplicates (similarity >= near_duplicate: the same shot votes for nothing).

        No search at all while the library is empty (a fresh library does not pay for one).
        """
        stats = self.stats
        if self.k <= 0 or embedding is None or stats.n_photos == 0:
            return []
        # Ask for more than k: near-duplicates (a burst of shots) take places in the list.
        found = self.index.neighbours(embedding, 2 * self.k + 8, self._ids, exclude)
        out = [Neighbour(score, self._tags[pid]) for pid, score in found
               if score < self.near_duplicate and pid in self._tags]
        return out[: self.k]

    def rejections(self, embedding: Any, exclude: Path | None = None, k: int = 10) -> dict[str, float]:
        """The tags the user rejected on photos near `embedding`: tag -> sum over those photos
        of exp((similarity - 1) / REJECTION_TEMPERATURE), 1 for a photo just like this one. No
        search while no photo has a rejection."""
        self.stats  # noqa: B018 - refreshes when stale
        if embedding is None or not len(self._rejected_ids):
            return {}
        out: dict[str, float] = {}
        for pid, score in self.index.neighbours(embedding, k, self._rejected_ids, exclude):
            weight = math.exp((min(1.0, score) - 1.0) / REJECTION_TEMPERATURE)
            for tag in self._rejected.get(pid, ()):
                out[tag] = out.get(tag, 0.0) + weight
        return out
