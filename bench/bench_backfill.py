"""Distributed backfill benchmark: `tagd backfill --ray local` on the same N real photos with 1, 2
and 4 Ray workers on this machine, and a projection to 10 million photos on N machines.

    python bench/bench_backfill.py                     # 2,000 photos (made once by bench/photos.py)
    python bench/bench_backfill.py --n 300             # a quick look
    python bench/bench_backfill.py --workers 1,2 --photos ~/bench-photos

Each configuration copies the same N photos into a fresh library with a fresh index (so every
run starts unindexed) and runs the real command in a subprocess, on its own local Ray cluster.
What it reports, per worker count W:
- photos/s while tagging (from the first batch submitted to the last recorded: the command's
  own summary), and end to end (the whole command: planning, cluster start, model loads);
- scaling efficiency: rate_W / (W * rate_1); on a machine of C cores, W > C cannot scale;
- CPU-ms per photo: the workers' CPU (each worker process and its exiftool) over the photos
  (the driver's and Ray's own processes apart: their CPU is not added up here);
- core use: rate_W * CPU-ms / 1000 / C, the share of the machine's cores busy tagging. A worker
  holds one CPU in Ray's accounting and runs onnxruntime on one thread, but its decode,
  classifier, detector and exiftool overlap on their own threads and process: alone on an idle
  machine it uses more than one core (on 2 cores, nearly both), so rate_1 is not one core's rate
  and the scaling efficiency understates; core use says how much of the machine was used.
Then the driver's own ceiling: the photos/s at which it records results in the index (the
photos of the 1-worker run, recorded again into a fresh index), and a projection for 10 million
photos on N machines of C cores from the CPU-ms per photo of the 1-worker run, assuming linear
scaling at the core use measured with one worker per core here (the command's default), and
never faster than the driver records.

Batches: --batch, by default the command's 64, fewer for a small run (n / (2 x the most
workers)) so that every worker still has two batches.

The last line is machine-readable:
  RESULT photos=... rate_w1=... efficiency_w2=... cpu_ms_w1=... core_use_w1=... ... index_per_s=...
         hours_10m_1x16=... hours_10m_10x16=... hours_10m_100x16=...
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SUMMARY = re.compile(r"backfilled .*?: (?P<tagged>\d+) tagged \((?P<failed>\d+) failed\).* in (?P<elapsed>[\d.]+) s "
                     r"\((?P<rate>[\d.]+) photos/s, (?P<cpu_ms>\d+) ms CPU a photo, workers up in (?P<start>[\d.]+) s\)")
TEN_MILLION = 10_000_000


@dataclass
class Run:
    workers: int
    tagged: int
    failed: int
    rate: float  # photos/s while tagging
    cpu_ms: float  # worker CPU per photo
    start_s: float  # cluster start and model loads
    wall_s: float  # the whole command

    @property
    def end_to_end(self) -> float:
        return self.tagged / self.wall_s

    def core_use(self, cores: int) -> float:
        return self.rate * self.cpu_ms / 1000 / cores


def real_photos(folder: Path, n: int) -> list[Path]:
    """`n` 12 MP camera-like JPEGs in `folder`, made there by bench/photos.py (from the photos
    scikit-image and scikit-learn ship, each one distinct) if it has fewer."""
    photos = sorted(p for p in folder.glob("*.jpg") if p.is_file())
    if len(photos) < n:
        if str(BENCH_DIR) not in sys.path:
            sys.path.insert(0, str(BENCH_DIR))
        from photos import make_photos

        print(f"making {n} photos in {folder} (bench/photos.py)", file=sys.stderr, flush=True)
        make_photos(folder, n, seed=0)
        photos = sorted(p for p in folder.glob("*.jpg") if p.is_file())
    return photos[:n]


def backfill(photos: Sequence[Path], workers: int, batch: int, scratch: Path) -> tuple[Run, Path, Path]:
    """The real command on a fresh copy of `photos`; its figures, its library and its index."""
    library, index = scratch / f"library-w{workers}", scratch / f"index-w{workers}.sqlite3"
    library.mkdir()
    for p in photos:
        shutil.copy2(p, library / p.name)
    ray_tmp = Path(tempfile.mkdtemp(prefix="tbb-", dir="/tmp"))  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "XDG_CONFIG_HOME": str(scratch / "config"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "tagd", "--index", str(index), "backfill", "--ray", "local",
            "--workers", str(workers), "--batch", str(batch), str(library)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=6 * 3600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    wall = time.perf_counter() - started
    found = SUMMARY.search(proc.stderr)
    if proc.returncode not in (0, 1) or not found:
        sys.exit(f"bench_backfill: the backfill with {workers} workers failed ({proc.returncode}):\n{proc.stderr}")
    run = Run(workers, int(found["tagged"]), int(found["failed"]), float(found["rate"]), float(found["cpu_ms"]),
              float(found["start"]), wall)
    return run, library, index


def index_rate(index_path: Path, library: Path, scratch: Path, batch: int) -> float:
    """Photos/s the driver records: the run's own records, read back and upserted again into a
    fresh index in the batches the workers return."""
    from tagd.index.db import Index

    with Index(index_path, readonly=True) as source:
        records = [r for p in sorted(library.glob("*.jpg")) if (r := source.get(p)) is not None]
        vocabulary = source.read(lambda conn: conn.execute("SELECT count(*) FROM tag").fetchone()[0])
    with Index(scratch / "index-floor.sqlite3") as target:
        from tagd.backfill import vocabulary_entries

        target.set_vocabulary(vocabulary_entries(None))
        started = time.perf_counter()
        for i in range(0, len(records), batch):
            target.upsert_photos(records[i:i + batch])
        elapsed = time.perf_counter() - started
    assert vocabulary > 0
    return len(records) / elapsed


def hours(photos: int, cpu_ms: float, machines: int, cores: int, efficiency: float, index_per_s: float) -> float:
    """Linear scaling at `efficiency`, never faster than the driver records."""
    compute_s = photos * cpu_ms / 1000 / (machines * cores * efficiency)
    return max(compute_s, photos / index_per_s) / 3600


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=Path(tempfile.gettempdir()) / "tagd-bench-photos",
                        help="folder of 12 MP JPEGs, made there by bench/photos.py when it has too few (kept for the next run)")
    parser.add_argument("--n", type=int, default=2000, help="photos per run (default 2000)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to compare (default 1,2,4)")
    parser.add_argument("--batch", type=int, help="photos a task (default: n / (2 x the most workers), at most 64)")
    parser.add_argument("--cores", type=int, default=16, help="cores a machine in the projection (default 16)")
    parser.add_argument("--machines", default="1,10,100", help="machine counts in the projection")
    args = parser.parse_args(argv)
    counts = sorted({int(w) for w in args.workers.split(",")})
    if 1 not in counts:
        counts.insert(0, 1)  # the efficiency is relative to one worker
    photos = real_photos(args.photos, args.n)
    cores_here = os.cpu_count() or 1
    args.batch = args.batch or max(1, min(64, args.n // (2 * max(counts))))
    print(f"{args.n} photos from {args.photos}, workers {counts}, batch {args.batch}; "
          f"{platform.processor() or platform.machine()}, {cores_here} cores; Python {platform.python_version()}", flush=True)

    runs: dict[int, Run] = {}
    with tempfile.TemporaryDirectory(prefix="tagd-bench-backfill-") as tmp:
        scratch = Path(tmp)
        for w in counts:
            run, library, index = backfill(photos, w, args.batch, scratch)
            runs[w] = run
            print(f"  {w} worker{'s' if w > 1 else ' '}: {run.rate:6.1f} photos/s tagging, {run.end_to_end:6.1f} end to end "
                  f"({run.wall_s:.0f} s, workers up in {run.start_s:.1f} s), {run.cpu_ms:.0f} ms CPU a photo, "
                  f"cores {100 * run.core_use(cores_here):.0f} % busy, {run.tagged} tagged, {run.failed} failed", flush=True)
            if w == 1:
                index_per_s = index_rate(index, library, scratch, args.batch)
            shutil.rmtree(library)
    base = runs[1].rate
    efficiency = {w: r.rate / (w * base) for w, r in runs.items()}
    print("scaling efficiency (rate_W / (W x rate_1)): "
          + ", ".join(f"{w} workers {efficiency[w]:.2f}" for w in counts)
          + (f"; above {cores_here} workers this machine has no core to give" if max(counts) > cores_here else ""))
    print(f"driver ceiling: {index_per_s:.0f} photos/s recorded in the index (SQLite, this machine)")

    # The projection: cpu_ms a photo (1 worker: the least contention), every core of every machine
    # as busy as with one worker per core here.
    per_core = max(w for w in counts if w <= cores_here)
    eff = runs[per_core].core_use(cores_here)
    cpu_ms = runs[1].cpu_ms
    machines = [int(m) for m in args.machines.split(",")]
    print(f"projection for {TEN_MILLION:,} photos at {cpu_ms:.0f} ms CPU a photo (1 worker), machines of "
          f"{args.cores} cores, linear scaling with the cores {100 * eff:.0f} % busy (measured with {per_core} "
          f"workers on {cores_here} cores), never faster than the driver records ({index_per_s:.0f} photos/s):")
    projected = {}
    for m in machines:
        projected[m] = hours(TEN_MILLION, cpu_ms, m, args.cores, eff, index_per_s)
        bound = " (driver-bound)" if TEN_MILLION / index_per_s / 3600 >= projected[m] - 1e-9 else ""
        print(f"  {m:>4} machine{'s' if m > 1 else ' '} x {args.cores} cores: {projected[m]:8.1f} h{bound}")
    print("  (photos as here: 12 MP JPEGs; the driver walks the tree first, minutes for 10M files, not counted)")

    fields = {"photos": args.n, "batch": args.batch, "index_per_s": index_per_s, "cpu_ms_per_photo": cpu_ms,
              "projection_core_use": eff}
    for w, r in runs.items():
        fields[f"rate_w{w}"] = r.rate
        fields[f"end_to_end_w{w}"] = r.end_to_end
        fields[f"efficiency_w{w}"] = efficiency[w]
        fields[f"cpu_ms_w{w}"] = r.cpu_ms
        fields[f"core_use_w{w}"] = r.core_use(cores_here)
    for m, h in projected.items():
        fields[f"hours_10m_{m}x{args.cores}"] = h
    print("RESULT " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
