"""Benchmark the tag index: bulk insert, query latency, similar, and CLI end-to-end latency.

Builds an index of N photos (default 1,000,000) x 8 tags drawn from the packaged vocabulary with
Zipf-like frequencies (s = 1: the commonest tag is on ~70% of photos, the median on ~1%), dates
over 2005-2025 in bursts ("events", more photos in later years, 8% undated), paths like
/home/user/Pictures/2024/2024-06-15 beach/IMG_1234.jpg, ten cameras, 1% failed, 1% pending.
Tag provenance: ~82% model/kept, 5% user/added, 9% model/suggested, the rest removed, rejected,
suggested-removal. Then times, through the library on a warm Index (no result caching):

  single   one tag, drawn uniformly from the tags in use (so p95 is a frequent tag)
  boolean  `A B -C` or `(A OR B) -C`, tags drawn from the 40 commonest
  hierarchy a tag with children (animal, dog, vehicle, food, ...), drawn uniformly
  date     taken: a month range, a year, `>YYYY`, a day, drawn uniformly

each as --count and as the first 100 paths (default sort: score); then `similar` top-10 over
100,000 embeddings (a second index), and `python -m tagd --index X search --count Q`
as a subprocess (process start included).

Usage:  python bench/bench_index.py [--photos N] [--similar-photos N] [--queries Q] [--keep DIR]

Last line: RESULT key=value ... (latencies in ms). Exit 0 whenever the benchmark completes.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tagd.index import Index, IndexedTag, PhotoRecord  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # `import synthetic_index` however this file is started
    sys.path.insert(0, str(BENCH_DIR))

from synthetic_index import add_index_options, packaged_vocabulary, work_folder  # noqa: E402

TARGETS = {"count_ms": 50.0, "first100_ms": 100.0, "insert_per_s": 5000.0, "similar_ms": 100.0}
CAMERAS = [
    "Google Pixel 7", "Google Pixel 8 Pro", "Apple iPhone 13", "Apple iPhone 15 Pro", "Canon EOS R6",
    "Canon EOS 5D Mark III", "Sony ILCE-7M3", "FUJIFILM X-T4", "NIKON D750", "samsung SM-G991B",
]
EVENTS = ["beach", "birthday", "hike", "christmas", "zoo", "city trip", "garden", "wedding", "snow", "family"]
FAILURES = ["cannot decode: image file is truncated", "not an image", "zero bytes", "permission denied"]


class Generator:
    def __init__(self, vocab: list[tuple[str, list[str], list[str]]], seed: int) -> None:
        self.rng = random.Random(seed)
        self.names = [name for name, _, _ in vocab]
        self.rng.shuffle(self.names)  # Zipf rank independent of the vocabulary's order
        self.weights = [1.0 / (rank + 1) for rank in range(len(self.names))]
        self.cum = list(_accumulate(self.weights))
        start, end = datetime(2005, 1, 1), datetime(2025, 12, 31)
        self.span_days = (end - start).days
        self.start = start
        self.event_day = start
        self.event_left = 0
        self.event_name = ""
        self.n = 0

    def tags(self) -> list[IndexedTag]:
        chosen: list[str] = []
        while len(chosen) < 8:
            name = self.names[_bisect(self.cum, self.rng.random() * self.cum[-1])]
            if name not in chosen:
                chosen.append(name)
        out = []
        for name in chosen:
            r = self.rng.random()
            if r < 0.82:
                out.append(IndexedTag(name, round(self.rng.uniform(0.1, 1.0), 4), "model", "kept"))
            elif r < 0.87:
                out.append(IndexedTag(name, 1.0, "user", "added"))
            elif r < 0.96:
                out.append(IndexedTag(name, round(self.rng.uniform(0.01, 0.2), 4), "model", "suggested"))
            elif r < 0.98:
                out.append(IndexedTag(name, round(self.rng.uniform(0.1, 0.9), 4), "model", "removed"))
            elif r < 0.99:
                out.append(IndexedTag(name, round(self.rng.uniform(0.1, 0.9), 4), "model", "rejected"))
            else:
                out.append(IndexedTag(name, 1.0, "user", "suggested-removal"))
        return out

    def record(self, with_embedding: bool = False) -> PhotoRecord:
        rng = self.rng
        if self.event_left == 0:
            # more photos in later years: day offset ~ sqrt(uniform) skews towards the end
            day = int(math.sqrt(rng.random()) * self.span_days)
            self.event_day = self.start + timedelta(days=day, hours=rng.randint(7, 20))
            self.event_left = rng.randint(1, 60)
            self.event_name = rng.choice(EVENTS)
        self.event_left -= 1
        self.n += 1
        taken = self.event_day + timedelta(seconds=rng.randint(0, 4 * 3600))
        folder = f"/home/user/Pictures/{taken.year}/{taken:%Y-%m-%d} {self.event_name}"
        undated = rng.random() < 0.08
        r = rng.random()
        status = "failed" if r < 0.01 else "pending" if r < 0.02 else "tagged"
        emb = None
        if with_embedding:
            emb = np.random.default_rng(self.n).standard_normal(1280).astype(np.float32)
        return PhotoRecord(
            path=Path(f"{folder}/IMG_{self.n:07d}.jpg"),
            content_hash=f"{rng.getrandbits(256):064x}",
            size=rng.randint(1_000_000, 8_000_000),
            mtime_ns=int(taken.timestamp() * 1e9),
            width=4032,
            height=3024,
            taken=None if undated else taken,
            camera=rng.choice(CAMERAS),
            status=status,
            error=rng.choice(FAILURES) if status == "failed" else None,
            model_version="efficientnet-lite0@0123456789ab" if status == "tagged" else None,
            tagged_at=datetime(2025, 1, 1) if status == "tagged" else None,
            tags=self.tags() if status == "tagged" else [],
            embedding=emb if status == "tagged" else None,
        )


def _accumulate(xs: list[float]):
    total = 0.0
    for x in xs:
        total += x
        yield total


def _bisect(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def build(path: Path, n: int, seed: int, batch: int = 5000, embeddings: bool = False) -> tuple[float, float]:
    """Insert n photos; return (photos/s overall, photos/s over the last tenth, into a nearly full index)."""
    vocab = packaged_vocabulary()[0]
    gen = Generator(vocab, seed)
    inside = 0.0
    at_90 = None
    with Index(path) as index:
        index.set_vocabulary(vocab)
        done = 0
        while done < n:
            records = [gen.record(embeddings) for _ in range(min(batch, n - done))]
            if embeddings:
                # clustered: every 50 photos share a direction, so neighbours exist
                for i, rec in enumerate(records):
                    if rec.embedding is not None:
                        centre = np.random.default_rng((done + i) // 50).standard_normal(1280).astype(np.float32)
                        rec.embedding = centre + 0.6 * rec.embedding
            started = time.perf_counter()
            index.upsert_photos(records)
            inside += time.perf_counter() - started
            done += len(records)
            if at_90 is None and done >= 0.9 * n:
                at_90 = (done, inside)
            if done % 100_000 == 0 or done == n:
                print(f"  inserted {done:,} photos, {done / inside:,.0f}/s", file=sys.stderr, flush=True)
    assert at_90 is not None
    last = (n - at_90[0]) / max(inside - at_90[1], 1e-9) if n > at_90[0] else n / inside
    return n / inside, last


def queries(vocab: list[tuple[str, list[str], list[str]]], index: Index, count: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    parents = sorted({p for _, ps, _ in vocab for p in ps})
    stats = index.stats(top=300)
    in_use = [t["name"] for t in stats["tags"]["top"]]
    common = in_use[:40]

    def boolean() -> str:
        a, b, c = rng.sample(common, 3)
        return f"{_q(a)} {_q(b)} -{_q(c)}" if rng.random() < 0.5 else f"({_q(a)} OR {_q(b)}) -{_q(c)}"

    def date_query() -> str:
        year = rng.randint(2006, 2025)
        month = rng.randint(1, 12)
        kind = rng.randrange(4)
        if kind == 0:
            end = min(12, month + rng.randint(0, 5))
            return f"taken:{year}-{month:02d}..{year}-{end:02d}"
        if kind == 1:
            return f"taken:{year}"
        if kind == 2:
            return f"taken:>{year}"
        return f"taken:{year}-{month:02d}-{rng.randint(1, 28):02d}"

    return {
        "single": [_q(rng.choice(in_use)) for _ in range(count)],
        "boolean": [boolean() for _ in range(count)],
        "hierarchy": [_q(rng.choice(parents)) for _ in range(count)],
        "date": [date_query() for _ in range(count)],
    }


def _q(name: str) -> str:
    return f'"{name}"' if " " in name else name


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_index_options(ap, photos=1_000_000, seed=1, kept="the indexes")
    ap.add_argument("--similar-photos", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=40, help="queries per kind")
    args = ap.parse_args()

    folder = work_folder(args.keep, "index")
    main_db = folder / f"index-{args.photos}.sqlite3"
    sim_db = folder / f"similar-{args.similar_photos}.sqlite3"
    vocab = packaged_vocabulary()[0]
    results: dict[str, float] = {}

    print(f"index: {args.photos:,} photos x 8 tags at {main_db}", file=sys.stderr)
    if not main_db.exists():
        rate, last = build(main_db, args.photos, args.seed)
        results["insert_per_s"] = rate
        results["insert_last_tenth_per_s"] = last
    else:
        print("  (reusing the existing index: no insert figure)", file=sys.stderr)
    size_mb = sum(os.path.getsize(p) for p in folder.glob(f"{main_db.name}*")) / 1e6

    rows = []
    with Index(main_db, readonly=True) as index:
        qs = queries(vocab, index, args.queries, args.seed)
        for kind, texts in qs.items():
            index.count(texts[0])  # first touch of this kind's pages
            counts = [timed(lambda q=q: index.count(q)) for q in texts]
            firsts = [timed(lambda q=q: index.search(q, limit=100)) for q in texts]
            sizes = [index.count(q) for q in texts]
            rows.append((kind, statistics.median(counts), p95(counts), statistics.median(firsts), p95(firsts), statistics.median(sizes), max(sizes)))
            results[f"{kind}_count_p95_ms"] = p95(counts)
            results[f"{kind}_first100_p95_ms"] = p95(firsts)
        for sort in ("taken", "path"):
            t = [timed(lambda q=q, sort=sort: index.search(q, sort=sort, limit=100)) for q in qs["single"]]
            results[f"single_first100_{sort}_p95_ms"] = p95(t)
        stats_ms = timed(lambda: index.stats())
        results["stats_ms"] = stats_ms

    # CLI end to end: a new process each time, as a user runs it.
    cli_query = qs["boolean"][0]
    cli_times = []
    for _ in range(10):
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "tagd", "--index", str(main_db), "search", "--count", cli_query],
            capture_output=True, text=True, cwd=REPO,
        )
        cli_times.append((time.perf_counter() - started) * 1000)
        if proc.returncode not in (0, 1):
            print(proc.stderr, file=sys.stderr)
    results["cli_count_median_ms"] = statistics.median(cli_times)
    results["cli_count_p95_ms"] = p95(cli_times)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    results["python_start_ms"] = (time.perf_counter() - started) * 1000

    print(f"similar: {args.similar_photos:,} photos with 1280-d embeddings at {sim_db}", file=sys.stderr)
    if not sim_db.exists():
        rate, _ = build(sim_db, args.similar_photos, args.seed + 1, batch=2000, embeddings=True)
        results["insert_with_embeddings_per_s"] = rate
    with Index(sim_db, readonly=True) as index:
        probe = np.random.default_rng(7).standard_normal(1280).astype(np.float32)
        results["similar_first_ms"] = timed(lambda: index.similar(probe, k=10))  # loads the int8 cache
        sims = []
        for i in range(20):
            q = np.random.default_rng(100 + i).standard_normal(1280).astype(np.float32)
            sims.append(timed(lambda q=q: index.similar(q, k=10)))
        results["similar_p95_ms"] = p95(sims)
        n_emb = index.stats()["embeddings"]

    print()
    print(f"index of {args.photos:,} photos x 8 tags ({size_mb:,.0f} MB on disk), {args.queries} queries per kind, 2-core box")
    print(f"{'query':<10} {'count p50':>10} {'count p95':>10} {'first100 p50':>13} {'first100 p95':>13} {'matches p50':>12} {'max':>9}")
    for kind, c50, c95, f50, f95, m50, mmax in rows:
        print(f"{kind:<10} {c50:>8.1f}ms {c95:>8.1f}ms {f50:>11.1f}ms {f95:>11.1f}ms {m50:>12,.0f} {mmax:>9,}")
    print()
    for kind in ("taken", "path"):
        print(f"single tag, first 100 by {kind}: p95 {results[f'single_first100_{kind}_p95_ms']:.1f} ms")
    if "insert_per_s" in results:
        print(f"bulk insert, batches of 5,000: {results['insert_per_s']:,.0f} photos/s overall, "
              f"{results['insert_last_tenth_per_s']:,.0f}/s for the last tenth (target >= {TARGETS['insert_per_s']:,.0f})")
    if "insert_with_embeddings_per_s" in results:
        print(f"bulk insert with embeddings: {results['insert_with_embeddings_per_s']:,.0f} photos/s")
    print(f"similar top-10 over {n_emb:,} embeddings: p95 {results['similar_p95_ms']:.1f} ms, first call {results['similar_first_ms']:.0f} ms (loads the cache)")
    print(f"stats: {results['stats_ms']:.0f} ms")
    print(f"CLI `search --count {cli_query}` end to end: median {results['cli_count_median_ms']:.0f} ms, p95 {results['cli_count_p95_ms']:.0f} ms (bare python start {results['python_start_ms']:.0f} ms)")
    met = all(results[f"{k}_count_p95_ms"] <= TARGETS["count_ms"] and results[f"{k}_first100_p95_ms"] <= TARGETS["first100_ms"] for k in qs)
    met &= results.get("insert_per_s", TARGETS["insert_per_s"]) >= TARGETS["insert_per_s"]
    met &= results["similar_p95_ms"] <= TARGETS["similar_ms"]
    print(f"targets {'met' if met else 'NOT met'}")
    print("RESULT " + " ".join(f"{k}={v:.1f}" for k, v in results.items()) + f" photos={args.photos} targets_met={int(met)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
