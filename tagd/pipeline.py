"""Tag and write: the only module that knows the model, the metadata writer (and the index).

Inference runs on the calling thread (decoding on the tagger's pool); keyword writes run on
one writer thread, so exiftool's work overlaps with the next batch's inference.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from tagd.metadata import KeywordUpdate, MetadataWriter, WriteError
from tagd.refine import MachineTag, refine_add_only
from tagd.tagger import Tagger, TagResult
from tagd.vocab import ScoredTag

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

    @property
    def ok(self) -> bool:
        return self.error is None


class Pipeline:
    def __init__(self, tagger: Tagger, writer: MetadataWriter, *, window: int = 32) -> None:
        self.tagger = tagger
        self.writer = writer
        self.window = window

    def run(self, paths: Iterable[Path]) -> Iterator[PhotoOutcome]:
        """Tag and write each photo; outcomes come back in input order."""
        with ThreadPoolExecutor(1, thread_name_prefix="tagd-write") as pool:
            pending: deque[Future[PhotoOutcome]] = deque()
            for result in self.tagger.tag_paths(paths):
                pending.append(pool.submit(self._write_one, result, time.monotonic()))
                while len(pending) > self.window or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _write_one(self, result: TagResult, started: float) -> PhotoOutcome:
        if not result.ok:
            return PhotoOutcome(result.path, error=result.error)
        try:
            current = self.writer.read(result.path)
            prov = current.provenance
            refined = refine_add_only(
                current.keywords,
                [MachineTag(t.name, t.score) for t in result.tags],
                previously_added=prov.added if prov else (),
                previously_written=prov.written if prov else (),
                previously_rejected=prov.rejected if prov else (),
            )
            vocab = self.tagger.vocabulary
            update = KeywordUpdate(
                keywords=refined.keywords,
                hierarchy={k: vocab.path(k) for k in refined.added if k in vocab},
                machine_tags=refined.machine_tags,
                added=refined.added,
                rejected=refined.rejected,
                model_version=self.tagger.model.version,
            )
            outcome = self.writer.write(current, update)
        except WriteError as exc:
            return PhotoOutcome(result.path, result.tags, error=exc.reason, ms=_ms(started))
        ms = _ms(started)
        log.info("%s: +[%s] %.0f ms%s", result.path, ", ".join(refined.added), ms, "" if outcome.changed else " (unchanged)")
        return PhotoOutcome(result.path, result.tags, outcome.keywords, refined.added, outcome.changed, outcome.target, ms=ms)


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
