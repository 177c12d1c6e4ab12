"""End-to-end benchmark: the floors of each stage, `tagd scan`, and the daemon, in one run.

    python bench/bench_e2e.py                       # 500 photos, a 2,000-photo burst, 10,000 idle files
    python bench/bench_e2e.py -n 100 --burst 200 --idle-files 2000 --idle-s 10    # a quick look
    python bench/bench_e2e.py --photos ~/bench-photos     # keep the generated photos for the next run

What it measures, on the same machine in the same run (the machine may be shared and noisy,
so the ratios to the floors matter more than the absolute figures):
- floors, each stage alone: the one decode that feeds both models (all cores); the classifier
  at its best batch; the detector (v2 bundles; one photo a run, as tagd runs it); the verified
  keyword write (tagd's safe write, one exiftool per core); recording in the index;
- `tagd scan` over N fresh photos (decode, infer, refine, write, index): photos/s, its ratio
  to the slowest floor, and to tagd 0.1's default bundle (the classifier alone) scanning the
  same photos in the same run, the two scans alternated `--rounds` times;
- the daemon (`tagd run`): a burst of photos moved into a watched folder, time until every
  one is written and indexed, and the daemon's peak RSS (VmHWM); single-photo latency from
  the photo's arrival to its tags in the index, minus the settle time, p50/p95;
- idle: the daemon watching an unchanged library of 10,000 files, CPU use over a window.
Also: the CPU each stage spends per photo (process + exiftool children), which is what
bounds a pipeline on a small machine: stages overlap, but cores are finite.

Photos: 12 MP JPEGs with EXIF made from the scikit-image/scikit-learn sample photos (no two
alike), ~2% PNG and ~2% WebP, and a few TIFFs named .dng so that the RAW path (keywords in an
.xmp sidecar) is exercised.

The last line is machine-readable:
  RESULT scan_photos_per_s=... scan_ratio_to_baseline=... baseline_scan_photos_per_s=... scan_ratio_to_floor=...
         decode_cpu_ms=... classifier_cpu_ms=... detector_cpu_ms=... write_cpu_ms=... index_cpu_ms=...
         latency_p50_ms=... latency_p95_ms=... peak_rss_mb=... idle_cpu_pct=... ...
Results are also written to bench/RESULTS.md (--results to change, --no-results to skip).

Over 400 lines: a benchmark with its own set-up, the tagd 0.1 baseline, floors and report;
nothing here is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for p in (str(BENCH_DIR), str(REPO_ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

from photos import make_photos  # noqa: E402

PHOTO_SUFFIXES = (".jpg", ".png", ".webp", ".dng")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTLE_S = 0.5


# ---- photos -------------------------------------------------------------------------------------

def prepare_photos(folder: Path, n: int, seed: int) -> list[Path]:
    """`n` distinct photos in `folder` (reused if already there), ~1% of them TIFF named .dng."""
    existing = sorted(p for p in folder.glob("IMG_*") if p.suffix.lower() in PHOTO_SUFFIXES) if folder.is_dir() else []
    if len(existing) >= n:
        return existing[:n]
    start = time.perf_counter()
    paths = make_photos(folder, n, seed=seed, mix=True)
    from PIL import Image

    for path in paths[7::97]:  # the RAW stand-ins: a TIFF Pillow decodes, named like a DNG
        if path.suffix.lower() == ".jpg":
            with Image.open(path) as im:
                im.convert("RGB").save(path.with_suffix(".dng"), "TIFF", exif=im.info.get("exif", b""))
            path.unlink()
    print(f"generated {n} photos in {folder} in {time.perf_counter() - start:.0f} s", flush=True)
    return sorted(p for p in folder.glob("IMG_*") if p.suffix.lower() in PHOTO_SUFFIXES)[:n]


def copy_photos(paths: Sequence[Path], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(p, dest / p.name)) for p in paths]


# ---- CPU accounting ---------------------------------------------------------------------------

def proc_cpu_s(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Stage:
    name: str
    per_s: float
    cpu_ms_per_photo: float
    note: str = ""


# ---- floors -----------------------------------------------------------------------------------

def decode_floor(paths: Sequence[Path], tagger, runs: int = 2) -> Stage:  # noqa: ANN001 - Tagger
    """tagd's own decode alone, one thread per core: draft decode, orientation, the classifier's
    views and (v2 bundles) the detector's letterboxed input, from one decode (Tagger.decode)."""
    best, cpu = float("inf"), 0.0
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # Pillow releases the GIL
        for _ in range(runs):
            c0, t0 = own_cpu_s(), time.perf_counter()
            list(pool.map(tagger.decode, paths))
            wall = time.perf_counter() - t0
            if wall < best:
                best, cpu = wall, own_cpu_s() - c0
    what = "both models' inputs" if tagger.model.detector else "the classifier's views"
    return Stage("decode floor", len(paths) / best, 1000 * cpu / len(paths),
                 f"draft decode + {what}, {os.cpu_count()} threads")


def infer_floor(model, views_per_photo: int, batches: Sequence[int] = (1, 2, 4, 8, 16), seconds: float = 3.0) -> tuple[Stage, int]:
    """ONNX alone on preprocessed views; the best batch size (in photos) wins."""
    import numpy as np

    h, w = model.input_size[1], model.input_size[0]
    rng = np.random.default_rng(0)
    best: tuple[float, float, int] = (0.0, 0.0, 0)
    for photos in batches:
        x = rng.standard_normal((photos * views_per_photo, h, w, 3)).astype(np.float32)
        model.predict(x)  # warm-up: allocations, kernel selection
        n, c0, t0 = 0, own_cpu_s(), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            model.predict(x)
            n += photos
        wall, cpu = time.perf_counter() - t0, own_cpu_s() - c0
        if n / wall > best[0]:
            best = (n / wall, 1000 * cpu / n, photos)
    rate, cpu_ms, batch = best
    return Stage("classifier floor", rate, cpu_ms, f"{views_per_photo} views/photo, best batch {batch} photos"), batch


def detector_floor(model, seconds: float = 3.0) -> Stage | None:  # noqa: ANN001 - Model
    """The detector alone (v2 bundles), one photo a run on its own session, as tagd runs it;
    two threads side by side, as the tagger runs it beside the classifier."""
    import numpy as np

    detector = model.detector
    if detector is None:
        return None
    width, height = detector.size
    x = np.random.default_rng(0).uniform(0, 255, (3, height, width)).astype(np.float32)
    detector.run([x])  # warm-up
    n, c0, t0 = 0, own_cpu_s(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        detector.run([x])
        n += 1
    wall, cpu = time.perf_counter() - t0, own_cpu_s() - c0
    return Stage("detector floor", n / wall, 1000 * cpu / n, f"{width}x{height} letterbox, one photo a run")


def index_floor(model, n: int = 2000, batch: int = 64) -> Stage:  # noqa: ANN001 - Model
    """Recording photos in the index alone: rows with 10 tags, 3 regions and an embedding of the
    model's size, in the pipeline's batches (Pipeline.record_batch), into a fresh SQLite file."""
    import numpy as np

    from tagd.boxes import Box
    from tagd.index.db import Index, IndexedTag, PhotoRecord

    rng = np.random.default_rng(0)
    names = [t.name for t in model_vocabulary(model).tags]
    with tempfile.TemporaryDirectory(prefix="tagd-index-floor-") as tmp:
        records = [PhotoRecord(
            path=Path(tmp) / f"IMG_{i:05d}.jpg", content_hash=f"{i:064x}", size=1000 + i, mtime_ns=i,
            status="tagged", model_version=model.version, tagged_at=datetime.now().replace(microsecond=0),
            tags=[IndexedTag(names[j], 0.5, "model", "added") for j in rng.choice(len(names), 10, replace=False)],
            embedding=rng.standard_normal(len(names) if model.spec.embedding == "tags" else model.spec.embedding_dim).astype(np.float32),
            regions=[Box("person", 0.9, 0.5, 0.5, 0.2, 0.4)] * 3,
        ) for i in range(n)]
        with Index(Path(tmp) / "index.sqlite3") as index:
            c0, t0 = own_cpu_s(), time.perf_counter()
            for i in range(0, n, batch):
                index.upsert_photos(records[i:i + batch])
            wall, cpu = time.perf_counter() - t0, own_cpu_s() - c0
    return Stage("index floor", n / wall, 1000 * cpu / n, f"{batch} photos a transaction, 10 tags + embedding each")


def model_vocabulary(model):  # noqa: ANN001, ANN201
    from tagd.tagger import load_vocabulary

    return load_vocabulary(model)


def write_floor(paths: Sequence[Path], workers: int) -> Stage:
    """tagd's verified keyword write alone (read, write, verify, replace), `workers` in parallel."""
    from tagd.metadata import KeywordUpdate, MetadataWriter
    from tagd.metadata.exiftool import ExifToolPool

    update = KeywordUpdate(keywords=["cat", "street", "café", "sunset", "bicycle"], machine_tags={"cat": 0.9},
                           added=["cat", "street", "café", "sunset", "bicycle"], model_version="bench@1")
    pool = ExifToolPool(workers)
    writer = MetadataWriter(pool)
    errors: list[str] = []

    def one(path: Path) -> None:
        try:
            writer.write(writer.read(path), update)
        except Exception as exc:  # counted, and the rate only credits successful writes
            errors.append(f"{path.name}: {exc}")

    with ThreadPoolExecutor(workers) as threads:
        list(threads.map(one, paths[:workers]))  # warm: exiftool processes started
        rest = paths[workers:]
        children0 = sum(proc_cpu_s(t._proc.pid) for t in pool.processes if t._proc)
        c0, t0 = own_cpu_s(), time.perf_counter()
        list(threads.map(one, rest))
        wall = time.perf_counter() - t0
        cpu = own_cpu_s() - c0 + sum(proc_cpu_s(t._proc.pid) for t in pool.processes if t._proc) - children0
    pool.close()
    ok = len(rest) - len(errors)
    if errors:
        print(f"write floor: {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    return Stage("write floor", ok / wall, 1000 * cpu / max(1, len(rest)), f"verified safe write, {workers} exiftool processes")


# ---- tagd scan --------------------------------------------------------------------------------

def write_config(path: Path, extra: str = "") -> Path:
    path.write_text("\n".join([
        "[watch]", f"settle_s = {SETTLE_S}", "rescan_interval_s = 0", extra, "",
    ]))
    return path


def tagd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tagd", *args]


def count_tagged(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT count(*) FROM photo WHERE status = 'tagged'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def is_tagged(db: Path, path: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT 1 FROM photo WHERE path = ? AND status = 'tagged'", (str(path),)).fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def run_scan(paths: Sequence[Path], work: Path, config: Path, name: str = "tagd scan") -> Stage:
    folder = work / "scan"
    if folder.exists():
        shutil.rmtree(folder)
    copy_photos(paths, folder)
    db = work / "scan.db"
    db.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(tagd_cmd("--config", str(config), "--index", str(db), "scan", str(folder)),
                          cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(f"tagd scan exited {proc.returncode}: {proc.stderr[-2000:]}", file=sys.stderr)
    ok = count_tagged(db)
    # The scan and its exiftool children (reaped when it exits).
    cpu = r.ru_utime + r.ru_stime - before.ru_utime - before.ru_stime
    return Stage(name, ok / wall, 1000 * cpu / max(1, ok), f"{ok}/{len(paths)} tagged, {wall:.1f} s incl. start-up")


# The default bundle of tagd 0.1 (EfficientNet-Lite0 int8 alone, format 1), as the last commit
# that shipped it had it: the baseline the fused default's throughput is measured against.
BASELINE_REV = "07c5db2"
BASELINE_PATH = "tagd/models/int8"


def baseline_bundle(where: Path) -> Path | None:
    """tagd 0.1's default bundle, taken out of this checkout's git history into `where`."""
    where.mkdir(parents=True, exist_ok=True)
    for name in ("bundle.json", "vocab.json", "model.onnx"):
        got = subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{BASELINE_REV}:{BASELINE_PATH}/{name}"],
                             capture_output=True)
        if got.returncode:
            print(f"baseline: cannot read {BASELINE_PATH}/{name} at {BASELINE_REV} from git "
                  f"({got.stderr.decode(errors='replace').strip()}); give --baseline DIR", file=sys.stderr)
            return None
        (where / name).write_bytes(got.stdout)
    return where


# ---- the daemon -------------------------------------------------------------------------------

class Daemon:
    def __init__(self, work: Path, root: Path, config: Path, index: Path, name: str) -> None:
        self.log_path = work / f"{name}.log"
        self._log = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(tagd_cmd("run", "--config", str(config), "--index", str(index), str(root)),
                                     cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited ({self.proc.returncode}) waiting for {what}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.log()[-3000:]}")
            time.sleep(interval)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def run_daemon(burst: Sequence[Path], latency: Sequence[Path], work: Path, config: Path) -> dict[str, float]:
    """A burst moved into the watched folder at once, then photos one at a time for latency."""
    root, staging, db = work / "watched", work / "staging", work / "daemon.db"
    root.mkdir()
    copy_photos([*burst, *latency], staging)  # same filesystem: a rename makes a photo appear whole
    daemon = Daemon(work, root, config, db, "daemon")
    out: dict[str, float] = {}
    try:
        daemon.wait(lambda: "ready: watching" in daemon.log(), 120, "ready")
        t0 = time.perf_counter()
        for p in burst:
            os.rename(staging / p.name, root / p.name)
        daemon.wait(lambda: count_tagged(db) >= len(burst), 600 + 2 * len(burst), f"{len(burst)} photos tagged", 0.2)
        out["burst_s"] = time.perf_counter() - t0
        out["burst_photos_per_s"] = len(burst) / out["burst_s"]
        out["peak_rss_mb"] = peak_rss_mb(daemon.proc.pid)
        latencies, written = [], []
        for p in latency:
            time.sleep(0.3)
            target = root / p.name
            before = daemon.log().count(f"{target}: +[")
            t = time.perf_counter()
            os.rename(staging / p.name, target)
            daemon.wait(lambda: daemon.log().count(f"{target}: +[") > before, 60, f"{p.name} written", 0.005)
            written.append((time.perf_counter() - t - SETTLE_S) * 1000)
            daemon.wait(lambda: is_tagged(db, target), 60, f"{p.name} in the index", 0.005)
            latencies.append((time.perf_counter() - t - SETTLE_S) * 1000)
        latencies.sort()
        out["latency_p50_ms"] = statistics.median(latencies)
        out["latency_p95_ms"] = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        out["written_p50_ms"] = statistics.median(written)
        out["peak_rss_mb"] = max(out["peak_rss_mb"], peak_rss_mb(daemon.proc.pid))
    finally:
        daemon.stop()
    return out


def run_idle(files: int, seconds: float, work: Path, config: Path, model_version: str) -> dict[str, float]:
    """CPU of a daemon watching `files` unchanged, already indexed photos."""
    from tagd.index.db import Index, PhotoRecord

    root, db = work / "library", work / "idle.db"
    tiny = _tiny_jpeg()
    records = []
    for i in range(files):
        folder = root / f"{i // 250:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"IMG_{i:05d}.jpg"
        path.write_bytes(tiny)
        st = path.stat()
        records.append(PhotoRecord(path=path, content_hash=f"{i:064x}", size=st.st_size, mtime_ns=st.st_mtime_ns,
                                   status="tagged", model_version=model_version,
                                   tagged_at=datetime.now().replace(microsecond=0)))
    with Index(db) as index:
        index.upsert_photos(records)
    daemon = Daemon(work, root, config, db, "idle")
    out: dict[str, float] = {}
    try:
        daemon.wait(lambda: "reconciled" in daemon.log(), 300, "reconciled", 0.2)
        if f"{files} unchanged" not in daemon.log():
            print(f"idle: the daemon did not see the library as unchanged:\n{daemon.log()[-1500:]}", file=sys.stderr)
        time.sleep(2.0)  # let start-up work drain
        c0, t0 = proc_cpu_s(daemon.proc.pid), time.perf_counter()
        time.sleep(seconds)
        out["idle_cpu_pct"] = 100 * (proc_cpu_s(daemon.proc.pid) - c0) / (time.perf_counter() - t0)
        out["idle_rss_mb"] = peak_rss_mb(daemon.proc.pid)
    finally:
        daemon.stop()
    return out


def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(buf, "JPEG")
    return buf.getvalue()


# ---- report -----------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import onnxruntime

    exiftool = subprocess.run(["exiftool", "-ver"], capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; Linux {platform.release()}; Python "
            f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}, exiftool {exiftool}; "
            f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


NOTES_MARKER = "<!-- analysis below: kept when the benchmark rewrites this file -->"


def write_results(path: Path, generated: str) -> None:
    """The run's figures, then whatever hand-written analysis the file had below the marker."""
    notes = ""
    if path.exists() and NOTES_MARKER in (previous := path.read_text()):
        notes = "\n" + NOTES_MARKER + previous.split(NOTES_MARKER, 1)[1]
    path.write_text(generated + notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=500, help="photos for the floors and the scan (default 500)")
    parser.add_argument("--burst", type=int, default=2000, help="photos dropped at once into the daemon's folder")
    parser.add_argument("--latency", type=int, default=20, help="photos dropped one by one for latency")
    parser.add_argument("--idle-files", type=int, default=10_000)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--photos", type=Path, help="keep/reuse the generated photos here")
    parser.add_argument("--model", type=Path, help="model bundle (default: packaged)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--no-results", action="store_true")
    parser.add_argument("--workdir", type=Path, help="work here and keep it (logs, indexes) instead of a temp dir")
    parser.add_argument("--skip", nargs="*", default=[], choices=("scan", "daemon", "idle"))
    parser.add_argument("--baseline", type=Path, default=None,
                        help=f"bundle to compare the scan with (default: tagd 0.1's, from git at {BASELINE_REV}; 'none' to skip)")
    parser.add_argument("--rounds", type=int, default=2, help="scans of each bundle, alternated (default 2)")
    args = parser.parse_args(argv)

    from tagd.model import Model

    started = datetime.now(timezone.utc).replace(microsecond=0)
    with contextlib.ExitStack() as stack:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=False)
            scratch = args.workdir
        else:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tagd-e2e-")))
        total = args.n + args.burst + args.latency
        photos = prepare_photos(args.photos or scratch / "photos", total, args.seed)
        base, burst = photos[: args.n], photos[args.n: args.n + args.burst]
        latency = photos[args.n + args.burst: total]
        extra = f'[model]\npath = {json.dumps(str(args.model))}' if args.model else ""
        config = write_config(scratch / "tagd.toml", extra)
        model = Model(args.model) if args.model else Model()
        from tagd.tagger import Tagger

        views = {"three-crop": 3}.get(model.spec.input.resize, 1)
        stages = [decode_floor(base, Tagger(model))]
        infer, _ = infer_floor(model, views)
        stages.append(infer)
        detector = detector_floor(model)
        if detector is not None:
            stages.append(detector)
        from tagd.config import WriteSettings

        stages.append(write_floor(copy_photos(base, scratch / "write-floor"), WriteSettings().worker_count()))
        shutil.rmtree(scratch / "write-floor")
        stages.append(index_floor(model))
        floors = list(stages)
        floor = min(floors, key=lambda s: s.per_s)
        results: dict[str, float] = {}
        if "scan" not in args.skip:
            baseline = None if str(args.baseline) == "none" else args.baseline or baseline_bundle(scratch / "baseline")
            baseline_config = (write_config(scratch / "baseline.toml", f"[model]\npath = {json.dumps(str(baseline))}")
                               if baseline else None)
            scans, old = [], []
            for _ in range(args.rounds):  # alternated, so that a change in the machine's load hits both
                if baseline_config:
                    old.append(run_scan(base, scratch, baseline_config, "tagd scan, tagd 0.1 default"))
                scans.append(run_scan(base, scratch, config))
            shutil.rmtree(scratch / "scan")
            scan = Stage("tagd scan", statistics.mean(s.per_s for s in scans),
                         statistics.mean(s.cpu_ms_per_photo for s in scans),
                         f"mean of {len(scans)}: " + ", ".join(f"{s.per_s:.1f}" for s in scans) + f"; {scans[-1].note}")
            stages.append(scan)
            results["scan_photos_per_s"] = scan.per_s
            results["scan_ratio_to_floor"] = scan.per_s / floor.per_s
            if old:
                stages.append(Stage("tagd scan, tagd 0.1 default", statistics.mean(s.per_s for s in old),
                                    statistics.mean(s.cpu_ms_per_photo for s in old),
                                    f"mean of {len(old)}: " + ", ".join(f"{s.per_s:.1f}" for s in old)
                                    + f"; EfficientNet-Lite0 int8 alone, at {BASELINE_REV}"))
                results["baseline_scan_photos_per_s"] = stages[-1].per_s
                results["scan_ratio_to_baseline"] = scan.per_s / stages[-1].per_s
        if "daemon" not in args.skip:
            results.update(run_daemon(burst, latency, scratch, config))
        if "idle" not in args.skip:
            results.update(run_idle(args.idle_files, args.idle_s, scratch, config, model.version))

    cpu_budget = sum(s.cpu_ms_per_photo for s in floors)
    cores = os.cpu_count() or 1
    rows = [(s.name, f"{s.per_s:.1f} photos/s", f"{s.cpu_ms_per_photo:.0f} ms CPU/photo", s.note) for s in stages]
    rows.append(("CPU bound", f"{1000 * cores / cpu_budget:.1f} photos/s", f"{cpu_budget:.0f} ms CPU/photo",
                 f"sum of the {len(floors)} stages' CPU over {cores} cores: no pipeline can beat this"))
    if "scan_ratio_to_floor" in results:
        results["scan_ratio_to_cpu_bound"] = results["scan_photos_per_s"] * cpu_budget / (1000 * cores)
        rows.append(("scan / slowest floor", f"{results['scan_ratio_to_floor']:.2f}", "", f"slowest floor: {floor.name}"))
        rows.append(("scan / CPU bound", f"{results['scan_ratio_to_cpu_bound']:.2f}", "", "the stages share the cores"))
    if "scan_ratio_to_baseline" in results:
        rows.append(("scan / tagd 0.1 default", f"{results['scan_ratio_to_baseline']:.2f}", "",
                     "same photos, same run, alternated"))
    if "burst_s" in results:
        rows += [
            ("daemon burst", f"{results['burst_photos_per_s']:.1f} photos/s", f"{results['burst_s']:.0f} s", f"{len(burst)} photos moved in at once"),
            ("latency p50 / p95", f"{results['latency_p50_ms']:.0f} / {results['latency_p95_ms']:.0f} ms", "", f"{len(latency)} single photos, arrival to tags in the index, minus {SETTLE_S} s settle"),
            ("daemon peak RSS", f"{results['peak_rss_mb']:.0f} MB", "", "VmHWM of tagd run (exiftool children apart)"),
        ]
    if "idle_cpu_pct" in results:
        rows.append(("idle CPU", f"{results['idle_cpu_pct']:.2f} %", f"{results['idle_rss_mb']:.0f} MB peak",
                     f"{args.idle_files} unchanged files watched, {args.idle_s:.0f} s"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    table = ["| stage | rate | cost | note |", "|---|---|---|---|"] + [f"| {' | '.join(r)} |" for r in rows]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))

    fields: dict[str, float] = {**results, "cpu_bound_per_s": 1000 * cores / cpu_budget}
    for stage in floors:
        key = stage.name.split()[0]
        fields[f"{key}_floor_per_s"] = stage.per_s
        fields[f"{key}_cpu_ms"] = stage.cpu_ms_per_photo
    order = ["scan_photos_per_s", "scan_ratio_to_baseline", "baseline_scan_photos_per_s", "scan_ratio_to_floor",
             "decode_cpu_ms", "classifier_cpu_ms", "detector_cpu_ms", "write_cpu_ms", "index_cpu_ms",
             "latency_p50_ms", "latency_p95_ms", "peak_rss_mb", "idle_cpu_pct"]
    keys = order + [k for k in fields if k not in order]
    result = "RESULT " + " ".join(f"{k}={fields[k]:.3f}" if k in fields else f"{k}=nan" for k in keys)
    if not args.no_results:
        cmd = "python bench/bench_e2e.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_results(args.results, "\n".join([
            "# tagd end-to-end benchmark", "",
            f"Run {started.isoformat()} with `{cmd.strip()}`: {args.n} photos for the floors and the scan, "
            f"a {args.burst}-photo burst, {args.latency} single photos, {args.idle_files} idle files; "
            f"model {model.version}.", "",
            f"Machine: {machine()}.", "",
            *table, "",
            "```", result, "```", "",
        ]))
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
