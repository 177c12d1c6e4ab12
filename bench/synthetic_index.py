"""What the benchmarks that build synthetic indexes share (bench_index.py, bench_refine.py):
the packaged vocabulary their fake photos are tagged from, and the options that size, seed and
keep the index they build (building 100,000+ rows takes minutes, so `--keep` reuses it)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def packaged_vocabulary() -> tuple[list[tuple[str, list[str], list[str]]], list[float]]:
    """(name, parents, synonyms) of every tag of the bundle tagd runs by default, and each
    tag's threshold."""
    from tagd.model import default_bundle_dir

    tags = json.loads((default_bundle_dir() / "vocab.json").read_text())["tags"]
    return [(t["name"], t.get("parents", []), t.get("synonyms", [])) for t in tags], [t["threshold"] for t in tags]


def add_index_options(parser: argparse.ArgumentParser, *, photos: int, seed: int, kept: str) -> None:
    """--photos and --seed of the synthetic index, --keep DIR to build it once and reuse it."""
    parser.add_argument("--photos", type=int, default=photos, help=f"photos in the index (default {photos:,})")
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--keep", type=Path, help=f"build (or reuse) {kept} in this folder")


def work_folder(keep: Path | None, name: str) -> Path:
    """The --keep folder (created if need be), else a new temporary one."""
    folder = keep or Path(tempfile.mkdtemp(prefix=f"tagd-bench-{name}-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
