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


def test_select_walks_folders_and_skips_hidden(tmp_path: Path) -> None:
    from tagd.photos import select

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.JPG").write_bytes(b"1")
    (tmp_path / "b.png").write_bytes(b"1")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "y.jpg").write_bytes(b"1")
    (tmp_path / ".dot.jpg").write_bytes(b"1")
    (tmp_path / "c.jpg.part").write_bytes(b"1")
    found = [p.relative_to(tmp_path).as_posix() for p in select([tmp_path]).photos]
    assert found == ["b.png", "a/x.JPG"]  # a folder's files, then its subfolders, each sorted
    given = select([tmp_path / "given.txt"])  # a file named explicitly is taken as it is
    assert (given.refused, list(given.photos)) == ([], [tmp_path / "given.txt"])


def symlinked_library(real_photo_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """library/ with a photo, a link to another photo inside it, a link to a photo outside it
    and a link to a folder outside it; outside/ holds the photos the links point at."""
    library, outside = tmp_path / "library", tmp_path / "outside"
    library.mkdir()
    (outside / "more").mkdir(parents=True)
    shutil.copyfile(real_photo_dir / "chelsea.jpg", library / "cat.jpg")
    with Image.open(real_photo_dir / "coffee.jpg") as im:
        im.save(outside / "coffee_out.png")
    shutil.copyfile(real_photo_dir / "rocket.jpg", outside / "more" / "rocket.jpg")
    os.symlink(outside / "coffee_out.png", library / "coffee.png")
    os.symlink(library / "cat.jpg", library / "same-cat.jpg")
    os.symlink(outside / "more", library / "more")
    return library, outside


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@needs_exiftool
def test_no_command_follows_a_symlink_out_of_the_folder(real_photo_dir: Path, tmp_path: Path) -> None:
    """`tagd tag --write FOLDER` followed library/coffee.png to outside/coffee_out.png and wrote
    there; scan and run refused. Every command walks as scan does now: no symlink followed unless
    watch.follow_symlinks, and then never to a target outside the folders given."""
    library, outside = symlinked_library(real_photo_dir, tmp_path)
    index = tmp_path / "index.sqlite3"
    # A photo tagd wrote itself, outside: a revert of the library must not reach it either.
    assert tagd("--index", str(tmp_path / "other.sqlite3"), "tag", "--write", str(outside / "coffee_out.png")).returncode == 0
    before = snapshot(outside)

    listed = tagd("tag", "--json", str(library))
    assert [json.loads(line)["path"] for line in listed.stdout.splitlines()] == [str(library / "cat.jpg")], listed.stderr
    written = tagd("-v", "--index", str(index), "tag", "--write", "--json", str(library))
    assert written.returncode == 0, written.stderr
    assert [json.loads(line)["path"] for line in written.stdout.splitlines()] == [str(library / "cat.jpg")]
    assert f"{library / 'coffee.png'}: symlink; not followed (watch.follow_symlinks is off)" in written.stderr
    assert tagd("--index", str(index), "revert", str(library)).returncode == 0
    assert tagd("--index", str(index), "scan", str(library)).returncode == 0
    assert snapshot(outside) == before

    # Named on the command line, a symlink gets the walker's reason, and nothing is written.
    named = tagd("--index", str(index), "tag", "--write", str(library / "coffee.png"))
    assert named.returncode == 1
    assert named.stdout == f"{library / 'coffee.png'}\tERROR symlink; not followed (watch.follow_symlinks is off)\n"
    reverted = tagd("--index", str(index), "revert", str(library / "coffee.png"))
    assert reverted.returncode == 1 and "ERROR symlink; not followed" in reverted.stdout

    # With watch.follow_symlinks, a link that stays inside the folders given is followed; one
    # that leaves them still is not.
    config = tmp_path / "follow.toml"
    config.write_text("[watch]\nfollow_symlinks = true\n")
    follow = tagd("--config", str(config), "tag", "--json", str(library), str(library / "coffee.png"))
    rows = [json.loads(line) for line in follow.stdout.splitlines()]
    assert [(Path(r["path"]).name, r["error"]) for r in rows] == [
        ("coffee.png", f"symlink to {outside / 'coffee_out.png'} outside the watched folders; not followed"),
        ("cat.jpg", None),
        ("same-cat.jpg", None),
    ]
    (library / "same-cat.jpg").unlink()  # (two names for one file would be two writes of it at once)
    written = tagd("--config", str(config), "--index", str(index), "tag", "--write", str(library))
    assert written.returncode == 0 and written.stdout.startswith(f"{library / 'cat.jpg'}\t"), written.stderr
    assert len(written.stdout.splitlines()) == 1
    assert snapshot(outside) == before
