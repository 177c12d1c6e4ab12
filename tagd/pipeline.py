"""Identify, tag, write, record: the only module that knows the model, the writer and the index.

Inference runs on the calling thread (decoding on the tagger's pool); keyword writes run on
writer threads, one per warm exiftool process, so exiftool's work overlaps with the next
batch's inference and uses every core; index rows are written in batches.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from tagd.metadata import KeywordUpdate, MetadataWriter, PhotoKeywords, WriteError
from tagd.refine import MachineTag, Refinement, refine_add_only
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
    changed: bool = False
    target: Path | None = None  # file written: the photo or its sidecar
    error: str | None = None
    ms: float = 0.0
    record: "PhotoRecord | None" = None

    @property
    def ok(self) -> bool:
        return self.error is None


def make_tagger(settings: "Settings", *, model_path: Path | None = None, threads: int | None = None,
                batch_size: int | None = None) -> Tagger:
    """The model and tagger the configuration describes (command-line overrides win)."""
    from tagd.model import Model

    m = settings.model
    model = Model(model_path or m.path, threads=m.threads if threads is None else threads, providers=m.providers)
    log.info("model %s on %s", model.version, ", ".join(model.providers))
    return Tagger(model, batch_size=batch_size or m.batch_size, decode_workers=m.decode_workers or None,
                  max_tags=m.max_tags)


def make_writer(settings: "Settings", *, sidecar_only: bool = False) -> MetadataWriter:
    """The keyword writer the configuration describes; says how to install exiftool if missing."""
    from tagd.metadata import WriteOptions, check_available
    from tagd.metadata.exiftool import ExifToolPool

    check_available()
    w = settings.write
    return MetadataWriter(ExifToolPool(w.worker_count()), options=WriteOptions(sidecar="always" if sidecar_only else w.sidecar,
                                               sidecar_naming=w.sidecar_naming, mtime=w.mtime))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Pipeline:
    def __init__(self, tagger: Tagger, writer: MetadataWriter, index: "Index | None" = None, *,
                 window: int = 32, record_batch: int = 64) -> None:
        self.tagger = tagger
        self.writer = writer
        self.index = index
        self.window = window
        self.record_batch = record_batch

    # ---- identify --------------------------------------------------------------------------
    def needs_work(self, path: Path) -> bool:
        """False when the index already has this exact file done at this model version.

        Unchanged size+mtime is enough; a changed mtime with the same content hash (a `touch`,
        a copy that kept the bytes) only refreshes the index row. A failed file is not retried
        until it changes.
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
        if record.status == "tagged" and record.model_version != self.tagger.model.version:
            return True
        if record.status not in ("tagged", "failed"):
            return True
        if (record.size, record.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return False
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
                    pending.append(pool.submit(self._write_one, result, time.monotonic()))
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
            records.clear()

    def _write_one(self, result: TagResult, started: float) -> PhotoOutcome:
        if not result.ok:
            return PhotoOutcome(result.path, error=result.error, ms=_ms(started),
                                record=self._failed_record(result.path, result.error or "unreadable"))
        try:
            current = self.writer.read(result.path)
            refined = self.refine(current, result)
            vocab = self.tagger.vocabulary
            update = KeywordUpdate(
                keywords=refined.keywords,
                hierarchy={k: vocab.path(k) for k in refined.added if k in vocab},
                machine_tags=refined.machine_tags,
                added=refined.added,
                removed=refined.removed,
                rejected=refined.rejected,
                model_version=self.tagger.model.version,
            )
            outcome = self.writer.write(current, update)
        except WriteError as exc:
            return PhotoOutcome(result.path, result.tags, error=exc.reason, ms=_ms(started),
                                record=self._failed_record(result.path, exc.reason))
        ms = _ms(started)
        removed = f" -[{', '.join(refined.removed)}]" if refined.removed else ""
        log.info("%s: +[%s]%s %.0f ms%s", result.path, ", ".join(refined.added), removed, ms,
                 "" if outcome.changed else " (unchanged)")
        record = self._record(result, current, refined, outcome.photo_sha256) if self.index is not None else None
        return PhotoOutcome(result.path, result.tags, outcome.keywords, refined.added, outcome.changed,
                            outcome.target, ms=ms, record=record)

    def refine(self, current: PhotoKeywords, result: TagResult) -> Refinement:
        prov = current.provenance
        return refine_add_only(
            current.keywords,
            [MachineTag(t.name, t.score) for t in result.tags],
            previously_added=prov.added if prov else (),
            previously_written=prov.written if prov else (),
            previously_rejected=prov.rejected if prov else (),
        )

    def _record(self, result: TagResult, current: PhotoKeywords, refined: Refinement, sha256: str | None) -> "PhotoRecord":
        from tagd.index.db import IndexedTag, PhotoRecord

        st = os.stat(result.path)
        added = set(refined.added)
        tags = [
            IndexedTag(k, refined.machine_tags.get(k, 1.0), "model" if k in added else "user", "added" if k in added else "kept")
            for k in refined.keywords
        ]
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
        )

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
