"""Identify, tag, refine, write, record: the only module that knows the model, the writer and the index.

Inference runs on the calling thread (decoding on the tagger's pool), and so does everything
that reads the index (the library's tags, each photo's neighbours: one connection, one
thread); keyword reads, refinement and writes run on writer threads, one per warm exiftool
process, so exiftool's work overlaps with the next batch's inference and uses every core;
index rows are written in batches.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from tagd.library import Library
from tagd.metadata import KeywordUpdate, MetadataWriter, PhotoKeywords, WriteError
from tagd.metadata.writer import refused_for_permissions, writable
from tagd.evidence import model_evidence, refine_params
from tagd.photos import file_sha256
from tagd.refine import LibraryStats, Mode, Neighbour, RefineParams, Refinement, refine
from tagd.subjects import Subject, subject_relevance
from tagd.tagger import Tagger, TagResult
from tagd.vocab import ScoredTag

if TYPE_CHECKING:
    from tagd.config import Settings
    from tagd.index.db import Index, PhotoRecord

log = logging.getLogger(__name__)


@dataclass
class PhotoOutcome:
    path: Path
    tags: list[ScoredTag] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)  # what the photo carries now
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # user keywords tagd took out (refine.mode full)
    suggested_removals: list[str] = field(default_factory=list)  # ... would take out (suggest)
    changed: bool = False
    target: Path | None = None  # file written: the photo or its sidecar
    error: str | None = None
    ms: float = 0.0
    record: "PhotoRecord | None" = None
    sidecar_reason: str | None = None  # why keywords for a photo written in-file went to a sidecar

    @property
    def ok(self) -> bool:
        return self.error is None


def make_tagger(settings: "Settings", *, model_path: Path | None = None, threads: int | None = None,
                batch_size: int | None = None) -> Tagger:
    """The model and tagger the configuration describes (command-line overrides win)."""
    from tagd.cpu import single_threaded_blas
    from tagd.model import Model

    single_threaded_blas()

    m = settings.model
    model = Model(model_path or m.path, threads=m.threads if threads is None else threads, providers=m.providers)
    log.info("model %s on %s", model.version, ", ".join(model.providers))
    return Tagger(model, batch_size=batch_size or m.batch_size, decode_workers=m.decode_workers or None,
                  max_tags=m.max_tags, max_decode_pixels=m.max_decode_pixels)


def make_writer(settings: "Settings", *, sidecar_only: bool = False) -> MetadataWriter:
    """The keyword writer the configuration describes; says how to install exiftool if missing."""
    from tagd.metadata import WriteOptions, check_available
    from tagd.metadata.exiftool import ExifToolPool

    check_available()
    w = settings.write
    return MetadataWriter(ExifToolPool(w.worker_count()), options=WriteOptions(sidecar="always" if sidecar_only else w.sidecar,
                                               sidecar_naming=w.sidecar_naming, mtime=w.mtime))


def make_pipeline(settings: "Settings", tagger: Tagger, writer: MetadataWriter, index: "Index | None" = None) -> "Pipeline":
    """The pipeline the configuration describes (refine.mode, refine.neighbours, write.regions)."""
    r = settings.refine
    return Pipeline(tagger, writer, index, mode=r.mode, neighbours=r.neighbours, write_regions=settings.write.regions)


@dataclass(frozen=True)
class LibraryEvidence:
    """What the library says about one photo, read on the index's thread for a writer thread."""

    stats: LibraryStats
    neighbours: list[Neighbour]
    subjects: list[Subject] = field(default_factory=list)
    rejections: dict[str, float] = field(default_factory=dict)  # Library.rejections


class Pipeline:
    """`mode`: refine.mode (add-only, suggest, full). `neighbours`: how many of the library's
    photos vote on a new photo's tags (0: none). Without an index, or while no photo in it
    carries a tag of the user's own, the model alone is the evidence: its confident tags are
    added (no kNN is run)."""

    def __init__(self, tagger: Tagger, writer: MetadataWriter, index: "Index | None" = None, *,
                 mode: Mode = "add-only", neighbours: int = RefineParams.k, window: int = 32,
                 record_batch: int = 64, write_regions: bool = False) -> None:
        self.tagger = tagger
        self.writer = writer
        self.index = index
        self.mode: Mode = mode
        self.window = window
        self.record_batch = record_batch
        self.write_regions = write_regions
        self.params = refine_params(getattr(tagger, "embedding", "classifier"), neighbours, tagger.max_tags)
        self.library: Library | None = None
        if index is not None:
            self.library = Library(index, k=neighbours, near_duplicate=self.params.near_duplicate,
                                   vocabulary=tagger.vocabulary)
        vocab = tagger.vocabulary
        self._vocab_index = {name: i for i, name in enumerate(vocab.names)}

    # ---- identify --------------------------------------------------------------------------
    def needs_work(self, path: Path) -> bool:
        """False when the index already has this exact file done at this model version.

        Unchanged size+mtime is enough; a changed mtime with the same content hash (a `touch`,
        a copy that kept the bytes) only refreshes the index row. A failed file is not retried
        until it changes. A photo the user reverted is left alone.
        """
        if self.index is None:
            return True
        try:
            st = os.stat(path)
        except OSError:
            return True  # let the tagger report why
        record = self.index.get(path, embedding=False)
        if record is None:
            return True
        if record.reverted:
            return False  # the user took tagd's tags back: only `tagd tag --write` tags it again
        if record.status == "tagged" and record.model_version != self.tagger.model.version:
            return True
        if record.status not in ("tagged", "failed"):
            return True
        if (record.size, record.mtime_ns) == (st.st_size, st.st_mtime_ns):
            # A photo refused as read-only is worth a new try once a chmod has lifted that.
            # Only then: an unchanged refusal is not retried in a loop.
            return record.status == "failed" and refused_for_permissions(record.error) and writable(self.writer.target(path))
        if record.status == "tagged" and record.content_hash and record.size == st.st_size:
            if file_sha256(path) == record.content_hash:
                record.mtime_ns = st.st_mtime_ns
                self.index.upsert_photos([record])
                return False
        return True

    # ---- tag, write, record ------------------------------------------------------------------
    def run(self, paths: Iterable[Path], *, skip_unchanged: bool = False) -> Iterator[PhotoOutcome]:
        """Tag and write each photo; outcomes come back in input order, recorded in the index."""
        todo = (p for p in paths if not skip_unchanged or self.needs_work(p))
        records: list[PhotoRecord] = []
        with ThreadPoolExecutor(self.writer.parallelism, thread_name_prefix="tagd-write") as pool:
            pending: deque[Future[PhotoOutcome]] = deque()
            try:
                for result in self.tagger.tag_paths(todo):
                    started = time.monotonic()
                    pending.append(pool.submit(self._write_one, result, self._library_evidence(result), started))
                    while len(pending) > self.window or (pending and pending[0].done()):
                        yield self._collect(pending.popleft().result(), records)
                while pending:
                    yield self._collect(pending.popleft().result(), records)
            finally:
                for future in pending:  # stopping early: finish what is being written, record it
                    self._collect(future.result(), records)
                self._flush(records, force=True)

    def _collect(self, outcome: PhotoOutcome, records: list["PhotoRecord"]) -> PhotoOutcome:
        if outcome.record is not None:
            records.append(outcome.record)
            self._flush(records)
        return outcome

    def _flush(self, records: list["PhotoRecord"], force: bool = False) -> None:
        if self.index is not None and records and (force or len(records) >= self.record_batch):
            self.index.upsert_photos(records)
            if self.library is not None:
                self.library.recorded(len(records))
            records.clear()

    def _library_evidence(self, result: TagResult) -> LibraryEvidence | None:
        """The library's tags and the photo's neighbours (on this, the index's, thread)."""
        if self.library is None or not result.ok:
            return None
        stats = self.library.stats
        rejections = self.library.rejections(result.embedding, exclude=result.path)
        if stats.n_photos == 0 and not rejections:
            return None
        return LibraryEvidence(stats, self.library.neighbours(result.embedding, exclude=result.path),
                               self.library.subjects, rejections)

    def _write_one(self, result: TagResult, evidence: LibraryEvidence | None, started: float) -> PhotoOutcome:
        if not result.ok:
            return PhotoOutcome(result.path, error=result.error, ms=_ms(started),
                                record=self._failed_record(result.path, result.error or "unreadable"))
        current = refined = None
        try:
            current = self.writer.read(result.path)
            refined = self.refine(current, result, evidence)
            vocab = self.tagger.vocabulary
            update = KeywordUpdate(
                keywords=refined.keywords,
                hierarchy={k: vocab.path(k) for k in refined.added if k in vocab},
                machine_tags=refined.machine_tags,
                added=refined.added,
                removed=refined.removed,
                rejected=refined.rejected,
                suggested_removals=refined.suggested_removals,
                model_version=self.tagger.model.version,
                regions=result.detections if self.write_regions else None,
            )
            outcome = self.writer.write(current, update)
        except WriteError as exc:
            return PhotoOutcome(result.path, result.tags, error=exc.reason, ms=_ms(started),
                                record=self._unwritten_record(result, current, refined, exc.reason))
        ms = _ms(started)
        newly = [k for k in refined.removed if k not in set(current.provenance.removed if current.provenance else ())]
        removed = f" -[{', '.join(newly)}]" if newly else ""
        suggested = f" ?-[{', '.join(refined.suggested_removals)}]" if refined.suggested_removals else ""
        instead = f" (in {outcome.target.name}: {outcome.sidecar_reason})" if outcome.sidecar_reason else ""
        log.info("%s: +[%s]%s%s %.0f ms%s%s", result.path, ", ".join(refined.added), removed, suggested, ms,
                 "" if outcome.changed else " (unchanged)", instead)
        record = self._record(result, current, refined, outcome.photo_sha256) if self.index is not None else None
        return PhotoOutcome(result.path, result.tags, outcome.keywords, refined.added, newly, refined.suggested_removals,
                            outcome.changed, outcome.target, ms=ms, record=record, sidecar_reason=outcome.sidecar_reason)

    def refine(self, current: PhotoKeywords, result: TagResult, evidence: LibraryEvidence | None = None) -> Refinement:
        """The photo's keywords refined (`tagd.refine`), with what tagd did before (provenance).

        Evidence: the model's scores (each user word through the vocabulary's synonyms: "kitty"
        gets the score of "cat"), and, once the library has photos with the user's own tags,
        their statistics and the photo's neighbours; in `self.mode`. With no library evidence
        the model's confident tags are added after the user's keywords, as the same function
        decides with it (so a library that appears changes no decision it has no evidence for).
        `removed` covers every keyword tagd has removed and the user has not put back, so that
        `tagd revert` can restore them all.
        """
        prov = current.provenance
        if prov is not None and prov.model_version == self.tagger.model.version and \
                {k.casefold() for k in current.keywords} == {k.casefold() for k in prov.written}:
            return self._settled(current)
        history = dict(
            previously_added=prov.added if prov else (),
            previously_written=prov.written if prov else (),
            previously_rejected=prov.rejected if prov else (),
        )
        have = {k.casefold() for k in current.keywords}
        reinstated = [k for k in (prov.removed if prov else ()) if k.casefold() in have]
        neighbours = evidence.neighbours if evidence is not None else []
        tag_scores = result.tag_scores
        if tag_scores is None:  # a tagger that reports only its selected tags
            import numpy as np

            tag_scores = np.zeros(len(self._vocab_index), dtype=np.float32)
            for t in (*result.suggestions, *result.tags):
                if t.name in self._vocab_index:
                    tag_scores[self._vocab_index[t.name]] = t.score
        subjects = evidence.subjects if evidence is not None else []
        subject_tags = {t for s in subjects for t in s.tags}
        words = {*current.keywords, *(t for n in neighbours for t in n.tags), *(t.name for t in result.tags), *subject_tags}
        raw, scores = model_evidence(self.tagger.vocabulary, self._vocab_index, tag_scores, words)
        vocab = self.tagger.vocabulary
        # tagd's earlier additions the user kept stand unless the evidence against them is strong;
        # those of another model version are replaced by this one's (a new bundle re-tags the library).
        same_model = prov is not None and prov.model_version == self.tagger.model.version
        standing = [k for k in prov.added if k.casefold() in have] if prov is not None and same_model else []
        refined = refine(
            current.keywords, scores, mode=self.mode, neighbours=neighbours,
            library=evidence.stats if evidence is not None else LibraryStats(),
            candidates=[t.name for t in result.tags], keep=reinstated, standing=standing, params=self.params, **history,
            subjects=subject_relevance(subjects, scores, vocab, (t.name for t in result.tags), current.keywords)
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

    def _settled(self, current: PhotoKeywords) -> Refinement:
        """A photo tagd wrote at this model version, its keywords untouched since: its tags
        stand as written. The library's evidence grows with every photo; a re-run that finds
        nothing new about the photo itself changes nothing in it."""
        prov = current.provenance
        assert prov is not None
        have = {k.casefold() for k in current.keywords}
        return Refinement(
            keywords=list(current.keywords), added=[k for k in prov.added if k.casefold() in have],
            rejected=list(prov.rejected), machine_tags=dict(prov.machine_tags),
            relevance={k: v for k, v in prov.machine_tags.items()}, removed=list(prov.removed),
            suggested_removals=[k for k in prov.suggested_removals if k.casefold() in have],
        )

    def _record(self, result: TagResult, current: PhotoKeywords, refined: Refinement, sha256: str | None) -> "PhotoRecord":
        from tagd.index.db import IndexedTag, PhotoRecord

        st = os.stat(result.path)
        added, suggested = set(refined.added), set(refined.suggested_removals)
        tags = []
        for k in refined.keywords:
            if k in added and k not in refined.machine_tags:  # a tag of the user's that only the neighbours know
                tags.append(IndexedTag(k, refined.relevance.get(k, 0.0), "neighbours", "added"))
            elif k in added:
                tags.append(IndexedTag(k, refined.machine_tags[k], "model", "added"))
            else:
                tags.append(IndexedTag(k, refined.machine_tags.get(k, 1.0), "user",
                                       "suggested-removal" if k in suggested else "kept"))
        tags += [IndexedTag(k, 0.0, "model", "rejected") for k in refined.rejected if k not in refined.keywords]
        tags += [IndexedTag(k, 1.0, "user", "removed") for k in refined.removed if k not in refined.keywords]
        seen = {t.name.casefold() for t in tags}
        tags += [IndexedTag(s.name, s.score, "model", "suggested") for s in result.suggestions if s.name.casefold() not in seen]
        info = current.info
        return PhotoRecord(
            path=result.path, content_hash=sha256 or file_sha256(result.path), size=st.st_size, mtime_ns=st.st_mtime_ns,
            width=info.width, height=info.height, taken=_exif_datetime(info.taken), camera=info.camera,
            status="tagged", model_version=self.tagger.model.version, tagged_at=datetime.now().replace(microsecond=0),
            tags=tags, embedding=result.embedding,
            regions=list(result.detections),
        )

    def _unwritten_record(self, result: TagResult, current: PhotoKeywords | None, refined: Refinement | None,
                          reason: str) -> "PhotoRecord | None":
        """A photo tagged but not written (read-only, damaged metadata, ...): failed, with the
        reason, yet its tags and embedding recorded, so that search and `tagd similar` still
        find it. Not retried until the file changes, like any failure."""
        if self.index is None or current is None or refined is None:
            return self._failed_record(result.path, reason)
        try:
            record = self._record(result, current, refined, None)
        except OSError:  # vanished meanwhile
            return self._failed_record(result.path, reason)
        record.status, record.error = "failed", reason
        return record

    def _failed_record(self, path: Path, reason: str) -> "PhotoRecord | None":
        if self.index is None:
            return None
        from tagd.index.db import PhotoRecord

        try:
            st = os.stat(path)
        except OSError:
            return None  # vanished: nothing to remember
        return PhotoRecord(path=path, content_hash=None, size=st.st_size, mtime_ns=st.st_mtime_ns, status="failed",
                           error=reason, model_version=self.tagger.model.version,
                           tagged_at=datetime.now().replace(microsecond=0))


def _exif_datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    return None


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
