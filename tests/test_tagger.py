"""Tagger: input order kept across batches, bad files reported and the rest still tagged."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tagd.tagger import Tagger


def test_order_and_errors_across_batch_boundaries(model, photos: Path) -> None:
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_text("hello")
    good = sorted(photos.glob("[a-z]*.jpg"))
    paths = [photos / "empty.jpg", *good[:3], photos / "text.png", *good[3:], photos / "missing.jpg"]
    tagger = Tagger(model, batch_size=2, decode_workers=2)
    results = list(tagger.tag_paths(paths))
    assert [r.path for r in results] == paths
    errors = {r.path.name: r.error for r in results if not r.ok}
    assert set(errors) == {"empty.jpg", "text.png", "missing.jpg"}
    assert all(r.tags for r in results if r.ok)


def test_results_do_not_depend_on_batch_size(model, real_photo_dir: Path) -> None:
    paths = sorted(real_photo_dir.glob("*.jpg"))
    one = [r.tags for r in Tagger(model, batch_size=1).tag_paths(paths)]
    many = [r.tags for r in Tagger(model, batch_size=16).tag_paths(paths)]
    assert [[t.name for t in tags] for tags in one] == [[t.name for t in tags] for tags in many]


def test_building_the_tagger_limits_blas_to_one_thread() -> None:
    """OpenBLAS's idle workers busy-wait and took 24 ms of CPU per photo from decoding and
    inference in `tagd scan` (tagd/cpu.py); the tagger every command builds turns them off."""
    import subprocess

    code = (
        "import os; os.environ.pop('OPENBLAS_NUM_THREADS', None); os.environ.pop('OMP_NUM_THREADS', None)\n"
        "import numpy; from tagd.cpu import blas_threads; from tagd.config import Settings\n"
        "from tagd.pipeline import make_tagger\n"
        "before = blas_threads(); make_tagger(Settings()); print(before, blas_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert after == 1
    if (os.cpu_count() or 1) > 1:
        assert before > 1  # otherwise the limit had nothing to do here
