"""What a photo is, and which files each command finds: one table and one walker for all of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from daemon_harness import DaemonProcess, index_rows, write_config
from tagd.photos import IN_FILE_SUFFIXES, PHOTO_SUFFIXES, RAW_SUFFIXES

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")


def tagd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagd", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def one_photo_per_suffix(real_photo_dir: Path, folder: Path) -> set[str]:
    """A small real photo under every suffix tagd knows (JPEG bytes: Pillow reads by content)."""
    folder.mkdir()
    small = folder.parent / "small.jpg"
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        im.resize((160, 120)).save(small, quality=80)
    names = set()
    for suffix in sorted(PHOTO_SUFFIXES):
        name = f"photo{suffix.upper() if suffix == '.nef' else suffix}"  # case does not matter
        shutil.copyfile(small, folder / name)
        names.add(name)
    (folder / "notes.txt").write_text("not a photo")
    return names


def test_the_one_table() -> None:
    from tagd.config import Settings
    from tagd.metadata import sidecar

    assert sidecar.RAW_SUFFIXES is RAW_SUFFIXES and sidecar.IN_FILE_SUFFIXES is IN_FILE_SUFFIXES
    assert set(Settings().watch.extensions) == PHOTO_SUFFIXES
    assert {".bmp", ".gif", ".jpe", ".pef", ".srw", ".x3f", ".heic"} <= PHOTO_SUFFIXES


@needs_exiftool
def test_tag_scan_and_run_find_the_same_photos(real_photo_dir: Path, tmp_path: Path) -> None:
    """`tagd tag DIR` once took 21 suffixes (.bmp, .gif, .jpe, .pef, .srw, .x3f, ...) that
    `scan` and `run` never looked at. Every command walks the same table now."""
    folder = tmp_path / "library"
    names = one_photo_per_suffix(real_photo_dir, folder)
    proc = tagd("tag", "--json", str(folder))
    assert {Path(json.loads(line)["path"]).name for line in proc.stdout.splitlines()} == names, proc.stderr

    scanned = tmp_path / "scan.sqlite3"
    proc = tagd("--index", str(scanned), "scan", str(folder))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert {Path(p).name for p in index_rows(scanned)} == names, proc.stderr

    # The daemon reconciles at start with the same filter: a fresh copy, so nothing is there yet.
    watched = tmp_path / "watched"
    one_photo_per_suffix(real_photo_dir, watched)
    config = write_config(tmp_path / "config.toml")
    db = tmp_path / "run.sqlite3"
    with DaemonProcess(tmp_path, [watched], config=config, index=db) as daemon:
        daemon.wait_reconciled()
        daemon.wait_for(lambda: len(index_rows(db)) >= len(names), 60, "every photo indexed")
        assert daemon.terminate()[0] == 0
    assert {Path(p).name for p in index_rows(db)} == names
