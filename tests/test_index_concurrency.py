"""One writer process and three searching processes on the same index, as with the daemon running.

The writer adds 5,000 photos in transactions of 50 and, in each, moves 10 earlier photos from tag
`x` to tag `y`. Every committed state therefore has a multiple of 50 photos, each with exactly
one of x and y; a search that saw half a transaction, or bitmaps from one state and rows from
another, breaks one of these. No reader may see an error ("database is locked" or any other).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tagd.index.db import Index

REPO = Path(__file__).resolve().parent.parent
PHOTOS, BATCH, FLIPS = 5000, 50, 25

WRITER = """
import sys, time
from pathlib import Path
from tagd.index.db import Index, IndexedTag, PhotoRecord
index_path, ready, done = map(Path, sys.argv[1:4])
PHOTOS, BATCH, FLIPS = {photos}, {batch}, {flips}
while len(list(ready.glob("reader-*"))) < 3:
    time.sleep(0.01)
def photo(i, tag):
    return PhotoRecord(Path(f"/lib/{{i // 100:03d}}/img-{{i:05d}}.jpg"), None, 1, 1, tags=[
        IndexedTag("photo", 1.0, "user", "added"), IndexedTag(tag, 0.5 + (i % 50) / 100, "model", "kept")])
with Index(index_path) as index:
    flipped = 0
    for start in range(0, PHOTOS, BATCH):
        records = [photo(i, "x") for i in range(start, start + BATCH)]
        records += [photo(j, "y") for j in range(flipped, min(flipped + FLIPS, start))]
        flipped = min(flipped + FLIPS, start)
        index.upsert_photos(records)
        time.sleep(0.002)
done.touch()
"""

READER = """
import json, subprocess, sys, time
from pathlib import Path
from tagd.index.db import Index
index_path, ready, done, name, use_cli = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
BATCH = {batch}
checks = 0
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)
index = Index(index_path, readonly=True)
(ready / f"reader-{{name}}").touch()
last = 0
while True:
    finished = done.exists()  # read before searching: after it, the last search sees everything
    n = index.count("photo")
    check(n % BATCH == 0 and n >= last, f"count(photo) = {{n}} after {{last}}")
    last = n
    check(index.count("x y") == 0, "a photo with both x and y")
    check(index.count("photo -x -y") == 0, "a photo with neither x nor y")
    hits = index.search("x OR y", sort="path")
    check(len(hits) % BATCH == 0 and len({{h.path for h in hits}}) == len(hits), f"search(x OR y) gave {{len(hits)}}")
    top = index.search("photo", limit=5)
    check(all(h.score == 1.0 for h in top), "ranking")
    # one search, many reads: each term loads its bitmaps with its own statement
    check(index.count(" OR ".join(["(x y)", "(photo -x -y)"] * 8)) == 0, "x and y out of step within one search")
    s = index.stats()
    total, top = s["photos"]["total"], {{t["name"]: t["photos"] for t in s["tags"]["top"]}}
    check(total % BATCH == 0 and top.get("photo", 0) == total, f"stats: {{total}} photos, {{top}}")
    check(top.get("x", 0) + top.get("y", 0) == total, f"stats: x + y != {{total}}: {{top}}")
    if use_cli and checks % 5 == 0:
        proc = subprocess.run([sys.executable, "-m", "tagd", "--index", str(index_path), "search", "--count", "x OR y"],
                              capture_output=True, text=True)
        check(proc.returncode in (0, 1) and proc.stderr == "" and int(proc.stdout) % BATCH == 0, f"cli: {{proc.returncode}} {{proc.stdout!r}} {{proc.stderr!r}}")
    checks += 1
    if finished:
        break
print(json.dumps({{"checks": checks, "final": last, "problems": problems[:5]}}))
"""


def test_one_writer_three_readers(tmp_path: Path) -> None:
    index_path = tmp_path / "index.sqlite3"
    ready, done = tmp_path / "ready", tmp_path / "done"
    ready.mkdir()
    with Index(index_path) as index:
        index.set_vocabulary([("photo", [], []), ("x", [], []), ("y", [], [])])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER.format(batch=BATCH), str(index_path), str(ready), str(done), str(i), "1" if i == 0 else "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for i in range(3)
    ]
    started = time.monotonic()
    writer = subprocess.run(
        [sys.executable, "-c", WRITER.format(photos=PHOTOS, batch=BATCH, flips=FLIPS), str(index_path), str(ready), str(done)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert writer.returncode == 0, writer.stderr
    reports = []
    for proc in readers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert err == "", err  # no warning, no "database is locked", nothing
        reports.append(json.loads(out))
    assert time.monotonic() - started < 90
    for report in reports:
        assert report["problems"] == [], report
        assert report["final"] == PHOTOS
        assert report["checks"] >= 5, report  # they really searched while the writer wrote
    with Index(index_path, readonly=True) as index:
        assert index.count("photo") == PHOTOS
        flipped = 0
        for start in range(0, PHOTOS, BATCH):
            flipped = min(flipped + FLIPS, start)
        assert index.count("y") == flipped
        assert index.count("x") + index.count("y") == PHOTOS
