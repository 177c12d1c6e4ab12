"""`tagd tag --write` and `tagd revert` as a user runs them, checked with an independent reader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import temp_files
from metadata_oracles import as_list, exiftool_keywords, exiftool_write

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")


def tagd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagd", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_tag_write_then_again_then_revert(photos: Path) -> None:
    cat = photos / "chelsea.jpg"
    exiftool_write(cat, "-XMP-dc:Subject=Mittens", "-IPTC:Keywords=Mittens")
    proc = tagd("tag", "--write", "--json", str(photos))
    assert proc.returncode == 0, proc.stderr
    records = {Path(r["path"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert records["chelsea.jpg"]["written"] == str(cat)
    got = exiftool_keywords(cat)
    assert as_list(got["XMP-dc:Subject"])[0] == "Mittens" and "cat" in as_list(got["XMP-dc:Subject"])
    assert "animal|cat" in as_list(got["XMP-lr:HierarchicalSubject"])
    assert as_list(got["IPTC:Keywords"]) == as_list(got["XMP-dc:Subject"])
    snapshot = {p.name: p.read_bytes() for p in photos.iterdir()}

    again = tagd("tag", "--write", "--json", str(photos))
    assert again.returncode == 0
    assert all(json.loads(line)["written"] is None for line in again.stdout.splitlines())
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == snapshot  # byte-identical

    reverted = tagd("revert", str(photos))
    assert reverted.returncode == 0, reverted.stderr
    back = exiftool_keywords(cat)
    assert as_list(back["XMP-dc:Subject"]) == ["Mittens"] and as_list(back["IPTC:Keywords"]) == ["Mittens"]
    assert "XMP-lr:HierarchicalSubject" not in back
    assert temp_files(photos) == []


def test_sidecar_flag_leaves_photos_untouched(photos: Path) -> None:
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    proc = tagd("tag", "--write", "--sidecar", str(photos / "chelsea.jpg"))
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_bytes() for p in photos.iterdir() if p.suffix == ".jpg"} == before
    assert "cat" in as_list(exiftool_keywords(photos / "chelsea.jpg.xmp")["XMP-dc:Subject"])


def test_bad_file_reported_others_written(photos: Path) -> None:
    broken = photos / "broken.jpg"
    broken.write_bytes((photos / "coffee.jpg").read_bytes()[:5000])
    before = broken.read_bytes()
    proc = tagd("tag", "--write", "--json", str(photos))
    assert proc.returncode == 1
    records = {Path(r["path"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert records["broken.jpg"]["error"] and records["chelsea.jpg"]["error"] is None
    assert broken.read_bytes() == before


def test_missing_exiftool_is_one_clear_line(photos: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    proc = tagd("tag", "--write", str(photos / "chelsea.jpg"), env={"PATH": str(bin_dir)})
    assert proc.returncode == 1
    assert "exiftool not found" in proc.stderr and "apt-get install libimage-exiftool-perl" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sidecar_without_write_is_a_usage_error(photos: Path) -> None:
    proc = tagd("tag", "--sidecar", str(photos))
    assert proc.returncode == 2 and "--write" in proc.stderr
