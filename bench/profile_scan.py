"""Where `tagd scan` spends its time: a py-spy profile of a real scan, summed by pipeline stage.

    pip install py-spy
    python bench/profile_scan.py --photos ~/bench-photos            # 500 photos, as bench_e2e.py makes them
    python bench/profile_scan.py --photos ~/bench-photos --gil      # only what holds the GIL
    python bench/profile_scan.py --photos DIR --stacks out.txt      # keep the collapsed stacks (flamegraph.pl input)

It copies N photos to a fresh folder, runs `tagd scan` on them under `py-spy record`, and
sorts every sample (every thread, idle ones included unless --gil) by the pipeline stage its
stack is in. Alongside, the CPU the scan used: the tagd process (onnxruntime's own threads
included) and its exiftool children. The two together say where a photo's time goes: in
Pillow's decoder, onnxruntime and exiftool (C and Perl), or in Python glue, which is what a
Python-side change could still win.

The last line is machine-readable: `RESULT profile_photos_per_s=... profile_<stage>_ms=...`
(thread-milliseconds per photo by stage) `process_cpu_ms=... exiftool_cpu_ms=...`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from bench_e2e import REPO_ROOT, copy_photos, count_tagged, prepare_photos, proc_cpu_s, tagd_cmd, write_config  # noqa: E402

# The first rule whose marker appears anywhere in a stack names its stage; order matters (a
# write that waits on exiftool is "exiftool", not "write (Python)").
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("start-up", ("_find_and_load", "_make_session", "Model.__init__")),
    ("decode", ("(tagd/decode.py",)),
    ("inference", ("Session.run", "(tagd/model.py")),
    ("waiting on exiftool", ("ExifTool._read_until", "_Spawner._run")),
    ("fsync", ("_fsync_file", "_fsync_dir")),
    ("write (Python)", ("(tagd/metadata/",)),
    ("index", ("(tagd/index/",)),
    ("refine", ("(tagd/refine.py", "(tagd/library.py")),
    ("tagging glue", ("(tagd/tagger.py", "(tagd/vocab.py", "(tagd/pipeline.py", "(tagd/scan.py")),
]
# A thread parked on a queue or a condition, outside any stage: waiting for work.
IDLE_LEAVES = ("Condition.wait", "_worker (concurrent/futures/thread.py", "Event.wait", "Queue.get",
               "Thread.join", "_wait_for_tstate_lock", "select (")


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    if any(frames[-1].startswith(leaf) for leaf in IDLE_LEAVES) and not any(
            m in stack for m in ("ExifTool._read_until", "_Spawner._run")):
        return "waiting for work"
    for name, markers in STAGES:
        if any(m in stack for m in markers):
            return name
    return "other"


def summarise(lines: Iterable[str]) -> Counter[str]:
    samples: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            samples[stage_of(stack)] += int(count)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=500, help="photos to scan (default 500)")
    parser.add_argument("--photos", type=Path, help="photos made by bench_e2e.py (made here if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second per thread")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument("--stacks", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args(argv)

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(py_spy, os.X_OK):
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tagd-profile-") as tmp:
        scratch = Path(tmp)
        photos = prepare_photos(args.photos or scratch / "photos", args.n, args.seed)
        folder = scratch / "scan"
        copy_photos(photos, folder)
        config = write_config(scratch / "tagd.toml")
        db = scratch / "scan.db"
        stacks = args.stacks or scratch / "stacks.txt"
        record = [py_spy, "record", "--rate", str(args.rate), "--format", "raw", "--output", str(stacks),
                  "--gil" if args.gil else "--idle", "--"]
        t0 = time.perf_counter()
        proc = subprocess.Popen([*record, *tagd_cmd("--config", str(config), "--index", str(db), "scan", str(folder))],
                                cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # pid -> CPU seconds at its last look, for tagd and its exiftool children (py-spy, the
        # direct child, apart): what the last 0.1 s of a process adds is missed.
        tagd_cpu: dict[int, float] = {}
        exiftool_cpu: dict[int, float] = {}
        while proc.poll() is None:
            for pid in descendants(proc.pid):
                table = exiftool_cpu if b"exiftool" in read_proc(pid, "cmdline") else tagd_cpu
                with contextlib.suppress(OSError, ValueError, IndexError):
                    table[pid] = max(table.get(pid, 0.0), proc_cpu_s(pid))
            time.sleep(0.1)
        stderr = proc.stderr.read() if proc.stderr else ""
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"py-spy/tagd exited {proc.returncode}: {stderr[-2000:]}", file=sys.stderr)
            return 1
        tagged = count_tagged(db)
        samples = summarise(stacks.read_text().splitlines())
    per = max(1, tagged)
    ms_per_sample = 1000 / args.rate
    total_samples = sum(samples.values())
    print(f"tagd scan under py-spy ({'GIL holder' if args.gil else 'every thread'}, {args.rate} Hz): "
          f"{tagged}/{len(photos)} photos in {wall:.1f} s = {tagged / wall:.1f} photos/s")
    print(f"{'stage':<22}{'samples':>9}{'share':>8}{'thread-ms/photo':>17}")
    for name, count in samples.most_common():
        print(f"{name:<22}{count:>9}{100 * count / total_samples:>7.1f}%{count * ms_per_sample / per:>17.1f}")
    tagd_ms, exiftool_ms = (1000 * sum(t.values()) / per for t in (tagd_cpu, exiftool_cpu))
    gil_held = f"; the GIL was held {100 * total_samples / args.rate / wall:.0f} % of the time" if args.gil else ""
    print(f"CPU per photo: tagd {tagd_ms:.0f} ms (onnxruntime's threads included), exiftool {exiftool_ms:.0f} ms{gil_held}")
    fields = {"profile_photos_per_s": tagged / wall, "tagd_cpu_ms": tagd_ms, "exiftool_cpu_ms": exiftool_ms}
    if args.gil:
        fields["gil_held_pct"] = 100 * total_samples / args.rate / wall
    for name, count in samples.items():
        fields[f"profile_{name.replace(' ', '_').replace('(', '').replace(')', '')}_ms"] = count * ms_per_sample / per
    print("RESULT " + " ".join(f"{k}={v:.3f}" for k, v in fields.items()))
    return 0


def read_proc(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as fh:
            return fh.read()
    except OSError:  # gone meanwhile
        return b""


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_proc(int(entry), "stat")
            if stat:
                ppid = int(stat.rsplit(b")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found += children.get(pid, [])
        todo += children.get(pid, [])
    return found


if __name__ == "__main__":
    raise SystemExit(main())
