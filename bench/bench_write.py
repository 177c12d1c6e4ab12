"""Benchmark keyword writes per second on 12 MP JPEGs, three ways, on identical copies.

Why three numbers: writing keywords into a JPEG means rewriting the whole file, so
absolute writes/s depend on the disk and the machine. Measured on the same photos on
the same machine,
- `exiftool_per_file` (one `exiftool -overwrite_original` process per photo) is what a
  naive script does, and shows what a warm daemon saves;
- `exiftool_stay_open` (one warm `exiftool -stay_open` process, the same assignments,
  `-overwrite_original`: exiftool's own temp file + rename, but no structure check, no
  verification re-read, no fsync) is the floor for any exiftool-based writer;
- `tagd` (MetadataWriter.read() + write(): structure check, temp file, verification
  re-read, fsync, attribute copy, os.replace, directory fsync, plus tagd's provenance)
so the ratio tagd/stay_open says what tagd's safety costs on top of that floor.

Every method writes pristine files: the photos are generated once (outside the
timings) and copied to a separate folder per method.

Usage:  python bench/bench_write.py [--photos DIR] [-n N] [--keywords K] [--seed S]
                                    [--keep] [--profile [N]]

The last line printed is machine-readable:
  RESULT tagd_writes_per_s=... exiftool_stay_open_per_s=... exiftool_per_file_per_s=...
         tagd_ratio_to_stay_open=... photos=N
Exit status is 0 when every write succeeded and every sampled file read its keywords
back; 1 otherwise (the figures are still printed, counting successful writes only).

Over 400 lines: a benchmark with its own photo set-up, floors and report; nothing here is imported.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Lets `import photos` work however this file is started (as a script, or via runpy
# from the repo root), without making bench/ a package.
BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from photos import make_photos  # noqa: E402

from tagd.metadata import KeywordUpdate, MetadataWriter, WriteError  # noqa: E402

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})
SAMPLE = 5  # files per method whose keywords are read back after the timings
MODEL_VERSION = "bench@1"

# (keyword, hierarchy path): realistic tags, with non-ASCII ones early so that any
# --keywords >= 4 exercises UTF-8 in every field.
KEYWORD_POOL: tuple[tuple[str, str], ...] = (
    ("cat", "animal|cat"),
    ("café", "place|café"),
    ("street", "place|street"),
    ("日本", "place|日本"),
    ("sunset", "sky|sunset"),
    ("bicycle", "vehicle|bicycle"),
    ("portrait", "people|portrait"),
    ("coffee cup", "object|coffee cup"),
    ("mountain", "landscape|mountain"),
    ("flower", "plant|flower"),
    ("Zürich", "place|Zürich"),
    ("motorcycle", "vehicle|motorcycle"),
    ("dog", "animal|dog"),
    ("beach", "landscape|beach"),
    ("night", "time|night"),
    ("architecture", "place|architecture"),
)


@dataclass(frozen=True)
class Keywords:
    names: list[str]
    hierarchy: dict[str, str]  # keyword -> "animal|cat"
    scores: dict[str, float]

    @property
    def paths(self) -> list[str]:
        return [self.hierarchy[k] for k in self.names]


@dataclass
class MethodRun:
    name: str
    photos: int
    wall_s: float = 0.0
    ok: int = 0
    errors: list[str] = field(default_factory=list)  # "FILE: reason", first few kept
    verified: int = 0
    sampled: int = 0
    verify_note: str = ""

    @property
    def per_s(self) -> float:
        # Only successful writes count, so failing fast is not rewarded.
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ms_per_photo(self) -> float:
        return 1000.0 * self.wall_s / self.ok if self.ok else float("nan")


def make_keywords(k: int) -> Keywords:
    pairs = list(KEYWORD_POOL[:k])
    pairs += [(f"tag {i}", f"misc|tag {i}") for i in range(len(pairs) + 1, k + 1)]
    names = [name for name, _ in pairs]
    # Descending scores, as a tagger would rank them.
    scores = {name: round(0.95 - 0.5 * i / max(1, k), 3) for i, name in enumerate(names)}
    return Keywords(names, dict(pairs), scores)


def exiftool_assignments(kw: Keywords) -> list[str]:
    """The keyword fields tagd always writes, replaced (cleared, then one item each)."""
    return [
        "-XMP-dc:Subject=", *(f"-XMP-dc:Subject={k}" for k in kw.names),
        "-XMP-lr:HierarchicalSubject=", *(f"-XMP-lr:HierarchicalSubject={p}" for p in kw.paths),
    ]


def list_jpegs(folder: Path) -> list[Path]:
    """JPEGs directly in `folder`, sorted; hidden partial files are skipped."""
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in JPEG_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _exiftool_exe() -> str:
    exe = shutil.which("exiftool")
    if not exe:
        raise SystemExit("exiftool not found on PATH (sudo apt-get install libimage-exiftool-perl)")
    return exe


# ---- the three methods --------------------------------------------------------------------
def write_per_file(paths: Sequence[Path], kw: Keywords, run: MethodRun) -> None:
    exe = _exiftool_exe()
    assignments = exiftool_assignments(kw)
    for path in paths:
        proc = subprocess.run(
            [exe, "-overwrite_original", *assignments, os.path.abspath(path)],
            capture_output=True, text=True, timeout=120,
        )
        if proc.returncode == 0 and "1 image files updated" in proc.stdout:
            run.ok += 1
        else:
            _record_error(run, path, (proc.stderr or proc.stdout).strip())


class StayOpen:
    """A bare `exiftool -stay_open True -@ -` driver: one command in, read to {ready}."""

    def __init__(self) -> None:
        # stderr merged into stdout: one pipe to drain, so it can never fill up and block.
        self.proc = subprocess.Popen(
            [_exiftool_exe(), "-stay_open", "True", "-@", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def execute(self, args: Sequence[str]) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(("\n".join([*args, "-execute", ""])).encode("utf-8"))
        self.proc.stdin.flush()
        lines: list[bytes] = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"exiftool exited with status {self.proc.wait()}")
            if line.rstrip() == b"{ready}":
                return b"".join(lines).decode("utf-8", "replace")
            lines.append(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"-stay_open\nFalse\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)


def write_stay_open(daemon: StayOpen, paths: Sequence[Path], kw: Keywords, run: MethodRun) -> None:
    assignments = ["-overwrite_original", *exiftool_assignments(kw)]
    for path in paths:
        out = daemon.execute([*assignments, os.path.abspath(path)])
        if "1 image files updated" in out:
            run.ok += 1
        else:
            _record_error(run, path, out.strip())


def _timed_stay_open(paths: Sequence[Path], kw: Keywords, run: MethodRun) -> None:
    daemon = StayOpen()
    try:
        daemon.execute(["-ver"])  # warm: perl started and modules loaded, as a daemon would be
        start = time.perf_counter()
        write_stay_open(daemon, paths, kw, run)
        run.wall_s = time.perf_counter() - start
    finally:
        daemon.close()


def make_update(kw: Keywords) -> KeywordUpdate:
    return KeywordUpdate(
        keywords=list(kw.names), hierarchy=dict(kw.hierarchy), machine_tags=dict(kw.scores),
        added=list(kw.names), model_version=MODEL_VERSION,
    )


def write_tagd(writer: MetadataWriter, paths: Sequence[Path], kw: Keywords, run: MethodRun) -> None:
    for path in paths:
        try:
            current = writer.read(path)
            outcome = writer.write(current, make_update(kw))
        except WriteError as exc:
            _record_error(run, path, exc.reason)
            continue
        if outcome.changed:
            run.ok += 1
        else:
            _record_error(run, path, f"not rewritten: {outcome.message}")


def _timed_tagd(paths: Sequence[Path], kw: Keywords, run: MethodRun) -> None:
    writer = MetadataWriter()
    try:
        writer.exiftool.execute(["-ver"])  # warm, like the daemon between photos
        start = time.perf_counter()
        write_tagd(writer, paths, kw, run)
        run.wall_s = time.perf_counter() - start
    finally:
        writer.exiftool.close()


def _timed_per_file(paths: Sequence[Path], kw: Keywords, run: MethodRun) -> None:
    start = time.perf_counter()
    write_per_file(paths, kw, run)
    run.wall_s = time.perf_counter() - start


def _record_error(run: MethodRun, path: Path, reason: str) -> None:
    if len(run.errors) < 5:
        run.errors.append(f"{path.name}: {reason.splitlines()[0] if reason else 'no output'}")
    else:
        run.errors.append("")  # counted, not kept


# ---- checks, outside the timings ----------------------------------------------------------
def sample(paths: Sequence[Path], k: int = SAMPLE) -> list[Path]:
    """`k` files spread evenly over the set (first and last included)."""
    if len(paths) <= k:
        return list(paths)
    return [paths[round(i * (len(paths) - 1) / (k - 1))] for i in range(k)]


def verify(paths: Sequence[Path], kw: Keywords, run: MethodRun) -> None:
    """Read the keywords back with a fresh exiftool, independent of all three writers."""
    picked = sample(paths)
    run.sampled = len(picked)
    proc = subprocess.run(
        [_exiftool_exe(), "-j", "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject",
         *(os.path.abspath(p) for p in picked)],
        capture_output=True, timeout=120,
    )
    try:
        records = json.loads(proc.stdout.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        run.verify_note = f"unreadable exiftool output: {proc.stderr.decode(errors='replace')[:200]}"
        return
    bad: list[str] = []
    for record in records:
        subject = _as_list(record.get("Subject"))
        hierarchical = _as_list(record.get("HierarchicalSubject"))
        if subject == kw.names and hierarchical == kw.paths:
            run.verified += 1
        else:
            bad.append(f"{Path(str(record.get('SourceFile'))).name}: Subject={subject}")
    run.verify_note = "; ".join(bad[:2])


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


# ---- profile of tagd's writer -------------------------------------------------------------
def profile_tagd(paths: Sequence[Path], kw: Keywords, top: int = 15) -> str:
    """cProfile of read()+write() on `paths`: top entries by cumulative time, plus where
    the exiftool round trips go (cProfile sees them as time waiting in select)."""
    writer = MetadataWriter()
    writer.exiftool.execute(["-ver"])
    run = MethodRun("tagd (profiled)", len(paths))
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    write_tagd(writer, paths, kw, run)
    profiler.disable()
    wall = time.perf_counter() - start
    writer.exiftool.close()

    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("cumulative").print_stats(top)
    lines = [
        f"profile: tagd read()+write() on {len(paths)} photos, {wall:.2f} s "
        f"({1000 * wall / max(1, len(paths)):.1f} ms/photo, {run.ok} ok, under cProfile)",
    ]
    lines += _phase_breakdown(stats, len(paths))
    lines.append(f"top {top} by cumulative time:")
    lines += [ln for ln in buf.getvalue().splitlines() if ln.strip()][-(top + 1):]
    return "\n".join(lines)


def _phase_breakdown(stats: pstats.Stats, photos: int) -> list[str]:
    """ms/photo of each step of the safe write, from the profile's call graph."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, dict]] = stats.stats  # type: ignore[attr-defined]

    def func(module_tail: str, name: str) -> tuple[str, int, str] | None:
        for key in raw:
            if key[2] == name and key[0].endswith(module_tail):
                return key
        return None

    def cumulative(module_tail: str, name: str) -> float:
        key = func(module_tail, name)
        return raw[key][3] if key else 0.0

    def via(callee: tuple[str, str], caller: tuple[str, str]) -> float:
        ckey, pkey = func(*callee), func(*caller)
        if ckey is None or pkey is None:
            return 0.0
        edge = raw[ckey][4].get(pkey)
        return edge[3] if edge else 0.0

    w = "metadata/writer.py"
    x = "metadata/exiftool.py"
    c = "metadata/containers.py"
    steps: list[tuple[str, Callable[[], float]]] = [
        ("read(): exiftool read of the keywords", lambda: cumulative(w, "read")),
        ("write() total", lambda: cumulative(w, "write")),
        ("  precheck: stat + read_bytes + structure check", lambda: cumulative(w, "_precheck")),
        # Every exiftool call that is not a JSON read is the write itself, whichever helper
        # of _apply issues it.
        ("  exiftool writes the temp file",
         lambda: cumulative(x, "execute") - cumulative(x, "read_json")),
        ("  verify total", lambda: cumulative(w, "_verify")),
        ("    verify: exiftool -all -validate on both files",
         lambda: via((x, "read_json"), (w, "_verify"))),
        ("    verify: structure check of both + payload compare",
         lambda: via((c, "inspect"), (w, "_verify"))),
        ("  fsync temp file", lambda: cumulative(w, "_fsync_file")),
        ("  copy mode/owner/xattrs", lambda: cumulative(w, "_copy_attributes")),
        ("  replace + fsync directory", lambda: cumulative(w, "_replace")),
    ]
    out = ["phase breakdown (ms/photo):"]
    for label, get in steps:
        out.append(f"  {label:<55} {1000 * get() / max(1, photos):8.1f}")
    return out


# ---- driver -------------------------------------------------------------------------------
def _print_table(rows: Sequence[tuple[str, str, str, str]]) -> None:
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    for label, a, b, note in rows:
        print(f"{label:<{width[0]}}  {a:>{width[1]}}  {b:>{width[2]}}  {note}".rstrip())


def _warn(message: str) -> None:
    # Flush stdout first so that, with 2>&1, warnings never land after the RESULT line.
    sys.stdout.flush()
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _prepare_photos(args: argparse.Namespace, scratch: Path) -> list[Path]:
    if args.photos is not None:
        folder: Path = args.photos
        if folder.is_dir() and list_jpegs(folder):
            found = list_jpegs(folder)
            paths = found[: args.n]
            note = "" if len(found) <= args.n else f" (first {args.n} of {len(found)})"
            if len(found) < args.n:
                note = f" (only {len(found)} there; -n {args.n} not reached)"
            print(f"reusing {len(paths)} JPEGs in {folder}{note}")
            return paths
    else:
        folder = scratch / "source"
    start = time.perf_counter()
    paths = make_photos(folder, args.n, seed=args.seed)
    print(f"generated {len(paths)} photos in {folder} in {time.perf_counter() - start:.1f} s")
    return paths


def _fresh_copy(paths: Sequence[Path], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=False)
    copies = []
    for path in paths:
        target = dest / path.name
        shutil.copyfile(path, target)  # content only: every method gets the same bytes
        copies.append(target)
    return copies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark keyword writes into 12 MP JPEGs.")
    parser.add_argument(
        "--photos", type=Path, help="reuse JPEGs in DIR, never modified (generated there if it has none)"
    )
    parser.add_argument("-n", type=int, default=200, help="number of photos (default 200)")
    parser.add_argument("--keywords", type=int, default=8, help="keywords per photo (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the generated photos and copies")
    parser.add_argument(
        "--profile", type=int, nargs="?", const=50, default=0, metavar="N",
        help="afterwards, cProfile tagd on fresh copies of N photos (default 50)",
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be at least 1")
    if args.keywords < 1:
        parser.error("--keywords must be at least 1")

    total_start = time.perf_counter()
    kw = make_keywords(args.keywords)
    scratch = Path(tempfile.mkdtemp(prefix="tagd-bench-write-"))
    try:
        paths = _prepare_photos(args, scratch)
        n = len(paths)
        if n == 0:
            _warn("no photos to write")
            return 1
        megabytes = sum(p.stat().st_size for p in paths) / 1e6

        methods: list[tuple[str, Callable[[Sequence[Path], Keywords, MethodRun], None]]] = [
            ("exiftool_per_file", _timed_per_file),
            ("exiftool_stay_open", _timed_stay_open),
            ("tagd", _timed_tagd),
        ]
        copies = {name: _fresh_copy(paths, scratch / name) for name, _ in methods}
        runs: dict[str, MethodRun] = {}
        for name, timed in methods:
            # Flush the copies' (and the previous method's) dirty pages now, so that no
            # method pays for another's writeback.
            os.sync()
            run = MethodRun(name, n)
            timed(copies[name], kw, run)
            runs[name] = run
            print(f"  {name}: {run.ok}/{n} written in {run.wall_s:.2f} s", flush=True)
        for name, _ in methods:
            verify(copies[name], kw, runs[name])

        profile_text = ""
        if args.profile > 0:
            subset = _fresh_copy(paths[: args.profile], scratch / "tagd-profile")
            os.sync()
            profile_text = profile_tagd(subset, kw)
    finally:
        if args.keep:
            print(f"kept photos and copies in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    per_file, stay, tagd = runs["exiftool_per_file"], runs["exiftool_stay_open"], runs["tagd"]
    ratio = tagd.per_s / stay.per_s if stay.per_s > 0 else 0.0
    source = args.photos if args.photos is not None else "a temp dir"
    rows: list[tuple[str, str, str, str]] = [
        ("method", "photos/s", "ms/photo", "note"),
        ("photos", str(n), "", f"{megabytes:.0f} MB of 12 MP JPEG from {source}, {len(kw.names)} keywords each"),
    ]
    for run in (per_file, stay, tagd):
        failed = len(run.errors)
        note = (f"{run.wall_s:.2f} s wall, {run.ok} ok, {failed} errors, "
                f"read back {run.verified}/{run.sampled}")
        rows.append((run.name, f"{run.per_s:.2f}", f"{run.ms_per_photo:.1f}", note))
    _print_table(rows)
    print(f"ratio tagd/stay_open: {ratio:.3f} (tagd costs {1 / ratio if ratio else float('inf'):.2f}x "
          f"the exiftool floor per photo)")
    if profile_text:
        print(profile_text)
    print(f"benchmark wall time: {time.perf_counter() - total_start:.1f} s")

    failed_any = False
    for run in (per_file, stay, tagd):
        if run.errors:
            failed_any = True
            kept = [e for e in run.errors if e]
            _warn(f"{run.name}: {len(run.errors)} failed writes, e.g. {' | '.join(kept)}")
        if run.verified != run.sampled:
            failed_any = True
            _warn(f"{run.name}: keywords read back on {run.verified}/{run.sampled} sampled files; "
                  f"{run.verify_note}")
    print(
        f"RESULT tagd_writes_per_s={tagd.per_s:.2f} exiftool_stay_open_per_s={stay.per_s:.2f} "
        f"exiftool_per_file_per_s={per_file.per_s:.2f} tagd_ratio_to_stay_open={ratio:.3f} "
        f"photos={n}"
    )
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main())
