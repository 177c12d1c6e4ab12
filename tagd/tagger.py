"""Tag photos now: parallel decode, batched inference, vocabulary selection.

This is the read-only core that `tagd tag`, the evaluation script and the daemon's pipeline
share. Decoding runs on a thread pool (Pillow releases the GIL while libjpeg works): each
photo is decoded once, at the size both models need, and cut into the classifier's views and
the detector's letterboxed input there. Inference runs on the calling thread in batches, so
the two overlap; the vocabulary fuses both models' scores into one per tag.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from tagd import embedding
from tagd.boxes import Box
from tagd.decode import load_rgb
from tagd.errors import ReadError
from tagd.memory import DEFAULT_MAX_DECODE_PIXELS
from tagd.model import Model
from tagd.vocab import ScoredTag, Vocabulary

if TYPE_CHECKING:
    from PIL import Image

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
    detections: list[Box] = field(default_factory=list)  # the detector's objects (v2 bundles)
    classifier_scores: np.ndarray | None = None  # per tag, before fusion (evaluation, calibration)
    detector_scores: np.ndarray | None = None  # per detector class (evaluation, calibration)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Decoded:
    """One photo, decoded once, ready for both models."""

    views: np.ndarray  # the classifier's (V, H, W, 3)
    detector_input: np.ndarray | None = None  # the detector's (3, H, W)
    detector_scale: float = 1.0
    size: tuple[int, int] = (0, 0)  # of the photo as decoded (orientation applied)


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
        embedding_kind: embedding.Kind | None = None,
    ) -> None:
        self.model = model or Model()
        self.embedding: embedding.Kind = embedding_kind or self.model.spec.embedding  # the bundle's, or another to compare
        self.vocabulary = vocabulary or load_vocabulary(self.model)
        self.batch_size = max(1, batch_size)
        self.decode_workers = decode_workers or max(1, os.cpu_count() or 1)
        self.max_tags = max_tags
        self.max_decode_pixels = max_decode_pixels
        self._detector_pool = ThreadPoolExecutor(1, thread_name_prefix="tagd-detect") if self.model.detector else None

    def tag_paths(self, paths: Iterable[Path]) -> Iterator[TagResult]:
        """Yield one result per path, in input order; a bad file yields a result with `error`."""
        # Decoded photos waiting for inference, bounded (1.8 MB each). Results leave in input
        # order, so a slow decode (a 12 MP PNG: 0.3 s) holds the queue; the other workers keep
        # decoding up to this many ahead meanwhile. Measured on the mixed 500-photo benchmark:
        # a window of 4 left 10 % of the CPU idle around such photos; 16 gave +5 % photos/s.
        window = max(self.batch_size * 2, min(LOOKAHEAD_PER_WORKER * self.decode_workers, MAX_LOOKAHEAD))
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="tagd-decode") as pool:
            pending: deque[tuple[Path, Future]] = deque()
            # Entries in input order: a decoded photo, or the reason decoding failed.
            batch: list[tuple[Path, Decoded | str]] = []

            def drain_one() -> Iterator[TagResult]:
                path, future = pending.popleft()
                try:
                    batch.append((path, future.result()))
                except ReadError as exc:
                    batch.append((path, exc.reason))
                if sum(1 for _, item in batch if not isinstance(item, str)) >= self.batch_size:
                    yield from self._flush(batch)

            for path in paths:
                pending.append((Path(path), pool.submit(self.decode, Path(path))))
                while len(pending) > window:
                    yield from drain_one()
            while pending:
                yield from drain_one()
            yield from self._flush(batch)

    def decode(self, path: Path) -> Decoded:
        """One photo decoded once, into both models' inputs (ReadError for a bad file)."""
        model, detector = self.model, self.model.detector
        image = load_rgb(path, model.short_side, self.max_decode_pixels, long_side=detector.long_side if detector else 0)
        decoded = Decoded(model.views(_short_side(image, model.short_side)), size=image.size)
        if detector is not None:
            decoded.detector_input, decoded.detector_scale = detector.prepare(image)
        return decoded

    def _flush(self, batch: list[tuple[Path, Decoded | str]]) -> Iterator[TagResult]:
        decoded = [item for _, item in batch if not isinstance(item, str)]
        results = []
        scored = iter(zip(*self._score(decoded))) if decoded else iter(())
        for path, item in batch:
            if isinstance(item, str):
                results.append(TagResult(path, [], error=item))
                continue
            scores, emb, classifier, detector, detections = next(scored)
            tags = self.vocabulary.select(scores, max_tags=self.max_tags)
            suggestions = self.vocabulary.suggest(scores, exclude={t.name for t in tags})
            results.append(TagResult(path, tags, suggestions, tag_scores=scores, embedding=emb, detections=detections,
                                     classifier_scores=classifier, detector_scores=detector))
        batch.clear()
        yield from results

    def _score(self, photos: list[Decoded]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
        """N decoded photos -> (N, tags) fused scores, (N, dim) embeddings, (N, tags) classifier
        scores (each tag at its best view), the detector's class scores and objects per photo."""
        counts = [len(p.views) for p in photos]
        detector = self.model.detector
        # The detector runs on its own thread while the classifier runs on this one (onnxruntime
        # releases the GIL): single-threaded sessions side by side cost less CPU than each on all cores.
        raw_future = self._detector_pool.submit(detector.run, [p.detector_input for p in photos]) if detector else None
        label_scores, embeddings = self.model.predict(np.concatenate([p.views for p in photos]))
        view_scores = self.vocabulary.tag_scores(label_scores)
        bounds = np.cumsum([0, *counts])
        classifier = np.stack([view_scores[a:b].max(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
        photo_emb = np.stack([embeddings[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
        if detector is None or raw_future is None:
            none: list = [None] * len(photos)
            fused = self.vocabulary.fuse(classifier, None)
            return fused, self._embedding(photo_emb, fused), classifier, none, [[] for _ in photos]
        raw = raw_future.result()
        class_scores = np.stack([detector.class_scores(r) for r in raw])
        names = self.vocabulary.detector_tags or None  # regions are named as the photo's tags are
        detections = [detector.detections(r, p.detector_scale, p.size, names=names) for r, p in zip(raw, photos)]
        fused = self.vocabulary.fuse(classifier, class_scores)
        return fused, self._embedding(photo_emb, fused), classifier, list(class_scores), detections

    def _embedding(self, pooled: np.ndarray, fused: np.ndarray) -> np.ndarray:
        """The photos' embeddings, as the bundle defines them (tagd.embedding)."""
        return embedding.embed(self.embedding, pooled, fused)

    @property
    def embedding_size(self) -> int:
        """How many numbers an embedding of this tagger's has."""
        return embedding.size(self.embedding, len(self.vocabulary), self.model.spec.embedding_dim)


def _short_side(image: "Image.Image", size: int) -> "Image.Image":
    """`image` with its short side `size` (the decode may have kept more for the detector)."""
    if min(image.size) == size:
        return image
    from PIL import Image as PILImage

    scale = size / min(image.size)
    new = (max(size, round(image.width * scale)), max(size, round(image.height * scale)))
    return image.resize(new, PILImage.Resampling.BILINEAR, reducing_gap=2.0)


def load_vocabulary(model: Model) -> Vocabulary:
    spec = model.spec
    return Vocabulary.load(
        model.bundle_dir / spec.vocabulary_file, n_labels=len(spec.labels), aggregate=spec.scores.aggregate,
        n_detector_labels=len(spec.detector.labels) if spec.detector else 0,
    )
