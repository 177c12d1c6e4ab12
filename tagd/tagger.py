"""Tag photos now: parallel decode, batched inference, vocabulary selection.

This is the read-only core that `tagd tag`, the evaluation script and (later) the daemon's
pipeline share. Decoding runs on a thread pool (Pillow releases the GIL while libjpeg
works), inference runs on the calling thread in batches, so the two overlap.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from tagd.decode import load_rgb
from tagd.errors import ReadError
from tagd.memory import DEFAULT_MAX_DECODE_PIXELS
from tagd.model import Model, normalise
from tagd.vocab import ScoredTag, Vocabulary

log = logging.getLogger(__name__)

LOOKAHEAD_PER_WORKER = 8  # photos each decode worker may run ahead of inference (see tag_paths)
MAX_LOOKAHEAD = 32  # ... and all of them together, whatever the core count (~60 MB of views)


@dataclass
class TagResult:
    path: Path
    tags: list[ScoredTag]
    # Below their tag's threshold but above the vocabulary's floor: not written into files,
    # kept so that search and ranking can use weak evidence.
    suggestions: list[ScoredTag] = field(default_factory=list)
    error: str | None = None
    tag_scores: np.ndarray | None = None  # every vocabulary tag's score, for evaluation
    embedding: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Tagger:
    def __init__(
        self,
        model: Model | None = None,
        vocabulary: Vocabulary | None = None,
        *,
        batch_size: int = 16,
        decode_workers: int | None = None,
        max_tags: int = 10,
        max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS,
    ) -> None:
        self.model = model or Model()
        self.vocabulary = vocabulary or load_vocabulary(self.model)
        self.batch_size = max(1, batch_size)
        self.decode_workers = decode_workers or max(1, os.cpu_count() or 1)
        self.max_tags = max_tags
        self.max_decode_pixels = max_decode_pixels

    def tag_paths(self, paths: Iterable[Path]) -> Iterator[TagResult]:
        """Yield one result per path, in input order; a bad file yields a result with `error`."""
        # Decoded photos waiting for inference, bounded (1.8 MB each). Results leave in input
        # order, so a slow decode (a 12 MP PNG: 0.3 s) holds the queue; the other workers keep
        # decoding up to this many ahead meanwhile. Measured on the mixed 500-photo benchmark:
        # a window of 4 left 10 % of the CPU idle around such photos; 16 gave +5 % photos/s.
        window = max(self.batch_size * 2, min(LOOKAHEAD_PER_WORKER * self.decode_workers, MAX_LOOKAHEAD))
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="tagd-decode") as pool:
            pending: deque[tuple[Path, Future]] = deque()
            # Entries in input order: a decoded array, or the reason decoding failed.
            batch: list[tuple[Path, np.ndarray | str]] = []

            def drain_one() -> Iterator[TagResult]:
                path, future = pending.popleft()
                try:
                    batch.append((path, future.result()))
                except ReadError as exc:
                    batch.append((path, exc.reason))
                if sum(1 for _, item in batch if not isinstance(item, str)) >= self.batch_size:
                    yield from self._flush(batch)

            for path in paths:
                pending.append((Path(path), pool.submit(self._decode, Path(path))))
                while len(pending) > window:
                    yield from drain_one()
            while pending:
                yield from drain_one()
            yield from self._flush(batch)

    def _decode(self, path: Path) -> np.ndarray:
        return self.model.views(load_rgb(path, self.model.short_side, self.max_decode_pixels))

    def _flush(self, batch: list[tuple[Path, np.ndarray | str]]) -> Iterator[TagResult]:
        decoded = [item for _, item in batch if not isinstance(item, str)]
        scored: Iterator[tuple[np.ndarray, np.ndarray]] = iter(())
        if decoded:
            scored = zip(*self._score(decoded))
        results = []
        for path, item in batch:
            if isinstance(item, str):
                results.append(TagResult(path, [], error=item))
            else:
                scores, emb = next(scored)
                tags = self.vocabulary.select(scores, max_tags=self.max_tags)
                suggestions = self.vocabulary.suggest(scores, exclude={t.name for t in tags})
                results.append(TagResult(path, tags, suggestions, tag_scores=scores, embedding=emb))
        batch.clear()
        yield from results

    def _score(self, photos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Views of N photos -> (N, tags) scores, each tag at its best view, and (N, dim) embeddings."""
        counts = [len(v) for v in photos]
        label_scores, embeddings = self.model.predict(np.concatenate(photos))
        view_scores = self.vocabulary.tag_scores(label_scores)
        bounds = np.cumsum([0, *counts])
        tag_scores = np.stack([view_scores[a:b].max(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
        photo_emb = np.stack([embeddings[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
        return tag_scores, normalise(photo_emb)


def load_vocabulary(model: Model) -> Vocabulary:
    spec = model.spec
    return Vocabulary.load(
        model.bundle_dir / spec.vocabulary_file, n_labels=len(spec.labels), aggregate=spec.scores.aggregate
    )
