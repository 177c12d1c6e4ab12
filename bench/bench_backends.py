"""PostgreSQL vs SQLite as the index: ingest and query latency on the same 100,000 photos.

The photos are bench_index.py's synthetic library (8 tags each from the packaged vocabulary,
Zipf-like, dates in bursts, cameras, failures), written in batches of 64 records, as the
daemon and the Ray backfill's driver write them; then the same queries (bench_index.queries:
single tag, boolean, hierarchy, date) as `count` and as the first 100 hits, on a warm handle.
The server is a throw-away PostgreSQL started for the run on a Unix socket (Debian's
postgresql, as the tests start it; fsync on, unlike the tests), or `--url` for one of yours.
Both run on this machine, so the figures compare the engines, not a network.

Usage:  python bench/bench_backends.py [--photos N] [--batch N] [--queries Q] [--url postgresql://...]

Last line: RESULT key=value ... (rates in photos/s, latencies in ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO, REPO / "bench", REPO / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from bench_index import Generator, p95, queries, timed  # noqa: E402
from synthetic_index import packaged_vocabulary  # noqa: E402
from tagd.index import Index  # noqa: E402


def ingest(target: Path | str, n: int, batch: int, seed: int) -> float:
    """Write n photos in transactions of `batch`; photos/s inside upsert_photos."""
    vocab = packaged_vocabulary()[0]
    gen = Generator(vocab, seed)
    inside = 0.0
    with Index(target) as index:
        index.set_vocabulary(vocab)
        done = 0
        while done < n:
            records = [gen.record() for _ in range(min(batch, n - done))]
            started = time.perf_counter()
            index.upsert_photos(records)
            inside += time.perf_counter() - started
            done += len(records)
            if done % 20_000 == 0:
                print(f"  {done:,} photos, {done / inside:,.0f}/s", file=sys.stderr, flush=True)
    return n / inside


def query_latency(target: Path | str, count: int, seed: int) -> dict[str, tuple[float, float, float, float]]:
    """kind -> (count p50, count p95, first-100 p50, first-100 p95) in ms."""
    vocab = packaged_vocabulary()[0]
    out = {}
    with Index(target, readonly=True) as index:
        qs = queries(vocab, index, count, seed)
        for kind, texts in qs.items():
            index.count(texts[0])  # warm this kind's pages
            counts = [timed(lambda q=q: index.count(q)) for q in texts]
            firsts = [timed(lambda q=q: index.search(q, limit=100)) for q in texts]
            out[kind] = (statistics.median(counts), p95(counts), statistics.median(firsts), p95(firsts))
        out["stats"] = (timed(lambda: index.stats()),) * 4
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=64, help="records per write transaction (default 64, as the pipeline)")
    ap.add_argument("--queries", type=int, default=40, help="queries per kind")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--url", help="an empty PostgreSQL database to use instead of a throw-away server")
    args = ap.parse_args()

    server = None
    url = args.url
    if url is None:
        from postgres_harness import PgServer, why_unavailable

        reason = why_unavailable()
        if reason:
            print(f"bench_backends: {reason}", file=sys.stderr)
            return 1
        server = PgServer()
        server.start(durable=True)
        url = server.new_database()
    results: dict[str, float] = {}
    table = {}
    try:
        with tempfile.TemporaryDirectory(prefix="tagd-bench-backends-") as tmp:
            targets = {"sqlite": Path(tmp) / "index.sqlite3", "postgresql": url}
            for name, target in targets.items():
                print(f"{name}: ingest {args.photos:,} photos in batches of {args.batch}", file=sys.stderr)
                results[f"{name}_ingest_per_s"] = ingest(target, args.photos, args.batch, args.seed)
                table[name] = query_latency(target, args.queries, args.seed)
                for kind, (c50, c95, f50, f95) in table[name].items():
                    if kind == "stats":
                        results[f"{name}_stats_ms"] = c50
                        continue
                    results[f"{name}_{kind}_count_p50_ms"] = c50
                    results[f"{name}_{kind}_first100_p50_ms"] = f50
                    results[f"{name}_{kind}_first100_p95_ms"] = f95
    finally:
        if server is not None:
            server.stop()

    print()
    print(f"{args.photos:,} photos x 8 tags, written in transactions of {args.batch}; {args.queries} queries per kind; "
          "both on this machine")
    print(f"{'':<22} {'SQLite':>12} {'PostgreSQL':>12} {'PG / SQLite':>12}")
    s, p = results["sqlite_ingest_per_s"], results["postgresql_ingest_per_s"]
    print(f"{'ingest (photos/s)':<22} {s:>12,.0f} {p:>12,.0f} {p / s:>11.2f}x")
    for kind in table["sqlite"]:
        if kind == "stats":
            continue
        for i, label in ((0, "count p50"), (2, "first 100 p50"), (3, "first 100 p95")):
            a, b = table["sqlite"][kind][i], table["postgresql"][kind][i]
            print(f"{kind + ' ' + label + ' (ms)':<34} {a:>8.1f} {b:>12.1f} {b / max(a, 1e-9):>11.2f}x"[:80])
    a, b = results["sqlite_stats_ms"], results["postgresql_stats_ms"]
    print(f"{'stats (ms)':<22} {a:>12.1f} {b:>12.1f} {b / max(a, 1e-9):>11.2f}x")
    print("RESULT " + " ".join(f"{k}={v:.1f}" for k, v in results.items()) + f" photos={args.photos} batch={args.batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
