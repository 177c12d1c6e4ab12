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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from tagd.library import Library
from tagd.metadata import KeywordUpdate, MetadataWriter, PhotoKeywords, WriteError
from tagd.metadata.files import ChangedWhileWriting, writable
from tagd.evidence import LibraryEvidence, refine_params, refine_photo
from tagd.photos import file_sha256
from tagd.planner import decide, known_from, same_content
from tagd.refine import Mode, RefineParams, Refinement
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


def make_pipeline(settings: "Settings", tagger: Tagger, writer: MetadataWriter, index: "Index | None" = None, *,
                  library: bool = True) -> "Pipeline":
    """The pipeline the configuration describes (refine.mode, refine.neighbours, write.regions)."""
    r = settings.refine
    return Pipeline(tagger, writer, index, mode=r.mode, neighbours=r.neighbours, write_regions=settings.write.regions,
                    library=library)


class Pipeline:
    """`mode`: refine.mode (add-only, suggest, full). `neighbours`: how many of the library's
    photos vote on a new photo's tags (0: none). Without an index, or while no photo in it
    carries a tag of the user's own, the model alone is the evidence: its confident tags are
    added (no kNN is run). `library=False`: records still go to `index`, but the library is not
    consulted (a backfill worker's `index` only collects records for the driver's)."""

    def __init__(self, tagger: Tagger, writer: MetadataWriter, index: "Index | None" = None, *,
                 mode: Mode = "add-only", neighbours: int = RefineParams.k, window: int = 32,
                 record_batch: int = 64, write_regions: bool = False, library: bool = True) -> None:
        self.tagger = tagger
        self.writer = writer
        self.index = index
        self.mode: Mode = mode
        self.window = window
        self.record_batch = record_batch
        self.write_regions = write_regions
        self.params = refine_params(getattr(tagger, "embedding", "classifier"), neighbours, tagger.max_tags)
        self.library: Library | None = None
        if index is not None and library:
            self.library = Library(index, k=neighbours, near_duplicate=self.params.near_duplicate,
                                   vocabulary=tagger.vocabulary)
        vocab = tagger.vocabulary
        self._vocab_index = {name: i for i, name in enumerate(vocab.names)}

    # ---- identify --------------------------------------------------------------------------
    def needs_work(self, path: Path) -> bool:
        """False when the index already has this exact file done at this model version
        (tagd.planner decides; here the file is at hand for its closer looks). A `touch` only
        refreshes the index row."""
        if self.index is None:
            return True
        try:
            st = os.stat(path)
        except OSError:
            return True  # let the tagger report why
        record = self.index.get(path, embedding=False)
        known = known_from(record)
        decision = decide(known, st.st_size, st.st_mtime_ns, self.tagger.model.version)
        if decision == "if-writable":
            return writable(self.writer.target(path))
        if decision == "if-content-changed":
            if same_content(known, st.st_size, lambda: file_sha256(path)):
                assert record is not None
                record.mtime_ns = st.st_mtime_ns  # a touch: the index follows, nothing to tag
                self.index.upsert_photos([record])
                return False
            return True
        return decision in ("new", "tag")

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
        except ChangedWhileWriting as exc:
            # Nothing recorded: the index keeps what it has (another machine's record of the
            # version that won), and the change's own event brings the photo back if need be. A
            # "failed" row here would carry the winner's size and mtime, and stay failed.
            return PhotoOutcome(result.path, result.tags, error=exc.reason, ms=_ms(started))
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
        """The photo's keywords refined with everything known about it (tagd.evidence.refine_photo)."""
        return refine_photo(current.keywords, current.provenance, result, evidence, vocab=self.tagger.vocabulary,
                            positions=self._vocab_index, model_version=self.tagger.model.version, mode=self.mode,
                            params=self.params)

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
