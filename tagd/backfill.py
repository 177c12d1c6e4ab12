"""Distributed backfill: tag a large tree on a Ray cluster (`tagd backfill --ray ADDRESS ROOT...`).

- The driver plans with tagd.scan.plan, the rule of `tagd scan` and the daemon: photos indexed
  at this model version are left alone, so a rerun after a crash does only what is left.
- Each worker is one Ray actor on one CPU: the bundle is put in the object store once, each
  actor loads it once (onnxruntime, decoding and exiftool on one thread each), then tags and
  writes batch after batch through the Pipeline and safe write a scan uses.
- Only the driver writes the index, each batch's records as they arrive: a killed driver loses
  at most the batches in flight, whose files were replaced atomically and are tagged again on
  the rerun (tagd replaces its own keywords, never the user's).
- A worker killed mid-batch: Ray restarts the actor and reruns its batches (TASK_RETRIES); a
  batch that still fails is split into single photos, and a photo that kills its worker every
  time is recorded as failed (not retried until it changes, like any failure).
- Ray is imported only inside functions: the default install needs none (`tagd[ray]`).
On several machines, each must see the photos at the same paths and have tagd and exiftool.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterable, Iterator, TextIO

from tagd.errors import TagdError

if TYPE_CHECKING:
    from tagd.config import Settings
    from tagd.index.db import Index
    from tagd.index.records import PhotoRecord
    from tagd.metadata import MetadataWriter
    from tagd.scan import Progress
    from tagd.tagger import Tagger

log = logging.getLogger(__name__)

# A worker's pipeline fills and drains once a batch (~0.2 s; 1 worker, 12 MP photos: 10.5 photos/s
# at 9 a batch, 14.3 at 64); a killed driver loses at most IN_FLIGHT_PER_WORKER batches a worker.
BATCH = 64
IN_FLIGHT_PER_WORKER = 2  # one running, one queued: a worker never waits for the driver
TASK_RETRIES = 2  # reruns of a batch whose worker died (the actor is restarted each time)
NOT_INSTALLED = "Ray is not installed: pip install 'tagd[ray]'"


class BackfillError(TagdError):
    """The backfill cannot run (no Ray, no cluster, workers that cannot start)."""


# ---- the bundle, shipped once -------------------------------------------------------------------

@dataclass(frozen=True)
class Bundle:
    """A model bundle's files (relative path -> bytes): what the object store holds once."""

    version: str
    files: dict[str, bytes]

    def materialise(self, folder: Path) -> Path:
        for name, data in self.files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return folder


def read_bundle(bundle_dir: Path | None) -> Bundle:
    """The bundle's files, checked against bundle.json's checksums here, on the driver: a broken
    bundle stops the run before a cluster is started."""
    import hashlib

    from tagd.errors import ModelError
    from tagd.model import load_spec, resolve_bundle

    folder = resolve_bundle(bundle_dir)
    spec = load_spec(folder)
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    expected = {spec.model_file: spec.model_sha256, spec.vocabulary_file: spec.vocabulary_sha256}
    if spec.detector is not None:
        expected[spec.detector.model_file] = spec.detector.model_sha256
    for name, digest in expected.items():
        if digest and (name not in files or hashlib.sha256(files[name]).hexdigest() != digest):
            raise ModelError(f"model bundle {folder}: {name} is missing or does not match its sha256 in bundle.json")
    return Bundle(spec.version, files)


def vocabulary_entries(bundle_dir: Path | None) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """The tags the index is told about (what tagd.tagger.load_vocabulary reads), without
    starting onnxruntime on the driver."""
    from tagd.model import load_spec, resolve_bundle
    from tagd.vocab import Vocabulary

    folder = resolve_bundle(bundle_dir)
    spec = load_spec(folder)
    vocab = Vocabulary.load(folder / spec.vocabulary_file, n_labels=len(spec.labels), aggregate=spec.scores.aggregate,
                            n_detector_labels=len(spec.detector.labels) if spec.detector else 0)
    return [(t.name, tuple(t.parents), tuple(t.synonyms)) for t in vocab.tags]


# ---- the worker -------------------------------------------------------------------------------

@dataclass
class BatchResult:
    records: list["PhotoRecord"]  # for the index: tagged, failed, or refreshed after a `touch`
    tagged: int  # photos that went through the model (failures included)
    failed: list[tuple[Path, str]]
    skipped: int  # unchanged on a closer look (the pipeline's needs_work)
    cpu_s: float  # the worker process and its exiftool, during this batch


class BatchLedger:
    """What the Pipeline needs of an index, on a worker that has none: the driver's rows for this
    batch's photos (so its needs_work decides exactly as in a scan), and the records it writes,
    which go back to the driver. No library: as with index=None, the model alone is the evidence."""

    def __init__(self, known: dict[Path, "PhotoRecord"]) -> None:
        self.known, self.records = known, list["PhotoRecord"]()

    def get(self, path: Path, *, embedding: bool = True) -> "PhotoRecord | None":
        return self.known.get(Path(path))

    def upsert_photos(self, records: Iterable["PhotoRecord"]) -> None:
        self.records.extend(records)


class TagWorker:
    """One Ray worker (ray.remote in `start_workers`; busy, its process title is
    ray::TagWorker.tag_batch): the model loaded once, from the object store's copy of the bundle,
    then batch after batch.

    The bundle comes as [its ObjectRef] with each call, nested so that Ray hands over the
    reference, not 9 MB of bytes, and loaded by the first call: after a restart (a killed
    worker) the batch Ray runs again loads it anew. (A reference among the constructor's
    arguments would do the same, but Ray warns about those on every run.)"""

    def __init__(self, settings: "Settings") -> None:
        settings = settings.model_copy(deep=True)
        # One core a worker: N workers use N cores, whatever the machine has.
        settings.model.threads, settings.model.decode_workers, settings.write.workers = 1, 1, 1
        self.settings = settings
        self.tagger: Tagger | None = None
        self.writer: MetadataWriter | None = None

    def load(self, bundle_ref: list[Any]) -> str:
        """The model, loaded once per worker process; its version."""
        if self.tagger is None:
            import ray

            from tagd.pipeline import make_tagger, make_writer

            bundle: Bundle = ray.get(bundle_ref[0])
            folder = Path(tempfile.mkdtemp(prefix="tagd-bundle-"))
            try:
                self.settings.model.path = bundle.materialise(folder)
                self.tagger = make_tagger(self.settings)  # reads every file it needs now
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            self.writer = make_writer(self.settings)
        return self.tagger.model.version

    def tag_batch(self, bundle_ref: list[Any], paths: list[Path], known: dict[Path, "PhotoRecord"]) -> BatchResult:
        from tagd.pipeline import make_pipeline

        self.load(bundle_ref)
        assert self.tagger is not None and self.writer is not None
        cpu = _cpu_s()
        ledger = BatchLedger(known)
        # The library lives in the driver's index: the model alone is the evidence here.
        pipeline = make_pipeline(self.settings, self.tagger, self.writer, ledger, library=False)  # type: ignore[arg-type]
        tagged, failed = 0, []
        for outcome in pipeline.run(paths, skip_unchanged=True):
            tagged += 1
            if not outcome.ok:
                failed.append((outcome.path, outcome.error or "failed"))
        return BatchResult(ledger.records, tagged, failed, len(paths) - tagged, _cpu_s() - cpu)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.exiftool.close()


def _cpu_s() -> float:
    """CPU seconds of this process (all threads) and its children alive now (exiftool)."""
    total = time.process_time()
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    for pid in (e.name for e in os.scandir("/proc") if e.name.isdigit()):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()  # after the command's name
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# ---- the cluster ------------------------------------------------------------------------------

def require_ray() -> None:
    """The one-line error without the extra, before anything is touched; Ray is not imported
    yet: it reads how to start (RAY_AUTH_MODE) at its import."""
    from importlib.util import find_spec

    if find_spec("ray") is None:
        raise BackfillError(NOT_INSTALLED)


@contextmanager
def cluster(address: str, workers: int | None, *, verbose: bool = False) -> Iterator[tuple[ModuleType, int]]:
    """Ray connected (`local`: a private cluster of `workers` CPUs, stopped on the way out),
    and how many workers to run (default: the cluster's CPUs)."""
    if address == "local":  # token auth, Ray's default for a new local cluster, without its warning
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # (before Ray is imported: it reads the mode then)
    try:
        import ray
    except ImportError:
        raise BackfillError(NOT_INSTALLED) from None
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose, "configure_logging": False}
    try:
        if address == "local":
            ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, **options)
        else:
            ray.init(address=address, **options)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
        raise BackfillError(f"cannot start or reach the Ray cluster at {address!r}: {_one_line(exc)}") from None
    try:
        yield ray, workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        ray.shutdown()


def start_workers(ray: ModuleType, n: int, settings: "Settings", bundle: Bundle, bundle_ref: Any) -> list[Any]:
    """`n` actors, each loading the bundle (`bundle_ref`: its one copy in the object store, which
    the caller keeps for as long as an actor may restart), ready to tag."""
    actor = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=TASK_RETRIES)(TagWorker)
    actors = [actor.remote(settings) for _ in range(n)]
    try:
        versions = set(ray.get([a.load.remote([bundle_ref]) for a in actors]))
    except ray.exceptions.RayError as exc:
        raise BackfillError(f"a worker could not start: {_one_line(exc)}") from None
    if versions != {bundle.version}:
        raise BackfillError(f"workers loaded model {sorted(versions)}, the driver planned for {bundle.version}")
    return actors


def _one_line(exc: BaseException) -> str:
    """The reason at the bottom of a Ray error (it carries the remote traceback above it)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, TagdError):
        return str(cause)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # "tagd.metadata.exiftool.ExifToolMissing: exiftool not found...": the reason, not its class
    return re.sub(r"^(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*: ", "", lines[-1]) if lines else type(exc).__name__


# ---- the driver -------------------------------------------------------------------------------

@dataclass
class Report:
    planned: int = 0  # photos the plan gave the workers
    tagged: int = 0
    failed: int = 0
    skipped: int = 0
    moved: int = 0
    gone: int = 0
    unchanged: int = 0
    workers: int = 0
    cpu_s: float = 0.0
    start_s: float = 0.0  # connecting and loading the model on every worker
    elapsed_s: float = 0.0  # from the first batch submitted to the last recorded
    interrupted: bool = False


class Dispatcher:
    """Batches to the least busy worker, at most `per_worker` each in flight; results recorded in
    the index as they arrive; a batch whose worker kept dying retried photo by photo."""

    def __init__(self, ray: ModuleType, actors: list[Any], bundle_ref: Any, index: "Index", version: str,
                 progress: "Progress", report: Report, per_worker: int = IN_FLIGHT_PER_WORKER) -> None:
        self.ray, self.actors, self.bundle, self.index, self.version = ray, actors, [bundle_ref], index, version
        self.progress, self.report, self.per_worker = progress, report, per_worker
        self.busy = [0] * len(actors)
        self.in_flight: dict[Any, tuple[int, list[Path]]] = {}
        self.queue: deque[list[Path]] = deque()

    def run(self, work: list[list[Path]]) -> None:
        self.queue.extend(work)
        try:
            while self.queue or self.in_flight:
                self._fill()
                done, _ = self.ray.wait(list(self.in_flight), num_returns=1)
                for ref in done:
                    self._collect(ref)
        except KeyboardInterrupt:
            # Stop submitting; keep what finished meanwhile. The rest is tagged on the next run.
            self.report.interrupted = True
            self.queue.clear()
            if self.in_flight:
                done, _ = self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=0)
                for ref in done:
                    self._collect(ref, retry=False)

    def _fill(self) -> None:
        while self.queue and min(self.busy) < self.per_worker:
            worker = self.busy.index(min(self.busy))
            paths = self.queue.popleft()
            known = {p: r for p in paths if (r := self.index.get(p, embedding=False)) is not None}
            ref = self.actors[worker].tag_batch.remote(self.bundle, paths, known)
            self.in_flight[ref] = (worker, paths)
            self.busy[worker] += 1

    def _collect(self, ref: Any, retry: bool = True) -> None:
        worker, paths = self.in_flight.pop(ref)
        self.busy[worker] -= 1
        try:
            result: BatchResult = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            # Raised, not killed: the pipeline keeps each photo's own errors, so this is the
            # worker's (no exiftool on its machine...), and no photo would fare better.
            raise BackfillError(f"a worker failed: {_one_line(exc)}") from None
        except self.ray.exceptions.RayError as exc:
            if retry:
                self._lost(paths, _one_line(exc))
            return
        self.index.upsert_photos(result.records)
        r = self.report
        r.tagged, r.skipped, r.failed = r.tagged + result.tagged, r.skipped + result.skipped, r.failed + len(result.failed)
        r.cpu_s += result.cpu_s
        for path, error in result.failed:
            log.warning("%s: %s", path, error)
        failed = {p for p, _ in result.failed}
        for path in paths:
            self.progress.step(path not in failed)

    def _lost(self, paths: list[Path], reason: str) -> None:
        """A batch whose worker died TASK_RETRIES + 1 times."""
        if len(paths) > 1:
            log.warning("a batch of %d photos failed (%s): retrying them one by one", len(paths), reason)
            self.queue.extendleft([p] for p in reversed(paths))
            return
        from tagd.index.records import PhotoRecord

        path, error = paths[0], f"the worker tagging it died {TASK_RETRIES + 1} times: {reason}"
        log.warning("%s: %s", path, error)
        self.report.tagged, self.report.failed = self.report.tagged + 1, self.report.failed + 1
        self.progress.step(False)
        try:
            st = os.stat(path)
        except OSError:  # vanished: nothing to remember
            return
        # Recorded as a scan records a failure (tagd.pipeline): not retried until the file changes.
        self.index.upsert_photos([PhotoRecord(
            path=path, content_hash=None, size=st.st_size, mtime_ns=st.st_mtime_ns, status="failed", error=error,
            model_version=self.version, tagged_at=datetime.now().replace(microsecond=0))])


def backfill(index: "Index", settings: "Settings", roots: list[Path], *, address: str, workers: int | None = None,
             batch_size: int = BATCH, verbose: bool = False, stream: TextIO = sys.stderr) -> Report:
    """Plan on the driver, tag on the cluster, record as results arrive (see the module's docstring)."""
    from tagd.photos import PathFilter
    from tagd.scan import Progress, plan

    require_ray()  # the same one-line error whether or not there is work to do
    bundle = read_bundle(settings.model.path)
    index.set_vocabulary(vocabulary_entries(settings.model.path))
    w = settings.watch
    found = plan(index, roots, PathFilter(roots, w.extensions, w.include, w.exclude), bundle.version, w.follow_symlinks)
    for old, new in found.moves:
        index.move(old, new)
    for path in found.gone:
        index.mark_gone(path)
    report = Report(planned=len(found.work), moved=len(found.moves), gone=len(found.gone), unchanged=found.unchanged)
    work = [found.work[i:i + batch_size] for i in range(0, len(found.work), batch_size)]
    if not work:
        return report  # nothing to tag: no cluster started
    started = time.monotonic()
    with cluster(address, workers, verbose=verbose) as (ray, n):
        report.workers = min(n, len(work))
        bundle_ref = ray.put(bundle)  # shipped once; kept until the end for restarted workers
        actors = start_workers(ray, report.workers, settings, bundle, bundle_ref)
        report.start_s = time.monotonic() - started
        progress = Progress(len(found.work), stream, label="backfill")
        try:
            Dispatcher(ray, actors, bundle_ref, index, bundle.version, progress, report).run(work)
        finally:
            progress.close()
            report.elapsed_s = time.monotonic() - progress.started
        if not report.interrupted:
            ray.get([a.close.remote() for a in actors])
    return report
