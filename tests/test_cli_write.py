"""`tagd tag --write` and `tagd revert` as a user runs them, checked with an independent reader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COCO128, temp_files
from metadata_oracles import as_list, exiftool_keywords, exiftool_write

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")


def tagd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagd", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def raw_stand_in(src: Path, dest: Path) -> Path:
    """A TIFF named like a camera RAW file: Pillow decodes it, and tagd must treat it as RAW."""
    from PIL import Image

    with Image.open(src) as im:
        im.convert("RGB").save(dest, "TIFF")
    return dest


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


@pytest.mark.parametrize("relative", ["photos", "."])
def test_write_with_a_relative_path_indexes_absolute_paths(photos: Path, tmp_path: Path, relative: str) -> None:
    from tagd.index.db import Index

    index = tmp_path / "index.sqlite3"
    cwd = tmp_path if relative == "photos" else photos
    proc = tagd("--index", str(index), "tag", "--write", relative, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    cat = photos / "chelsea.jpg"
    assert f"{cat}\t+" in proc.stdout  # shown as the index holds it
    with Index(index, readonly=True) as ix:
        record = ix.get(cat, embedding=False)
    assert record is not None and "cat" in [t.name for t in record.tags]


def test_write_tags_raw_files_in_a_folder_into_sidecars(photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "2024"
    folder.mkdir()
    (folder / "x.jpg").write_bytes((photos / "coffee.jpg").read_bytes())
    cr2 = raw_stand_in(photos / "chelsea.jpg", folder / "IMG_0001.CR2")
    dng = raw_stand_in(photos / "chelsea.jpg", folder / "IMG_0002.dng")
    before = {p: p.read_bytes() for p in (cr2, dng)}
    proc = tagd("--index", str(tmp_path / "index.sqlite3"), "tag", "--write", "--json", str(folder))
    assert proc.returncode == 0, proc.stderr
    records = {Path(r["path"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert sorted(records) == ["IMG_0001.CR2", "IMG_0002.dng", "x.jpg"]
    for raw in (cr2, dng):
        sidecar = raw.with_name(raw.name + ".xmp")
        assert records[raw.name]["written"] == str(sidecar)
        assert "cat" in as_list(exiftool_keywords(sidecar)["XMP-dc:Subject"])
        assert raw.read_bytes() == before[raw]  # RAW is never written in-file


def test_write_reports_a_raw_file_it_cannot_decode(photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "2024"
    folder.mkdir()
    (folder / "x.jpg").write_bytes((photos / "chelsea.jpg").read_bytes())
    (folder / "IMG_0003.NEF").write_bytes(b"II*\x00 not really a Nikon file" * 8)
    proc = tagd("--index", str(tmp_path / "index.sqlite3"), "tag", "--write", str(folder))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{folder / 'IMG_0003.NEF'}\tERROR ")
    assert "Traceback" not in proc.stderr and not (folder / "IMG_0003.NEF.xmp").exists()


def test_revert_updates_the_index_and_the_photo_is_left_alone_until_asked(photos: Path, tmp_path: Path) -> None:
    """After `tagd revert` the index shows the file as it now is, and neither a scan nor the
    daemon (same rule: Pipeline.needs_work) tags it straight back; `tagd tag --write` does."""
    index = tmp_path / "index.sqlite3"
    cat = photos / "chelsea.jpg"
    assert tagd("--index", str(index), "tag", "--write", str(cat)).returncode == 0
    shown = json.loads(tagd("--index", str(index), "show", "--json", str(cat)).stdout)
    assert "cat" in [t["name"] for t in shown["tags"] if t["state"] == "added"] and not shown["reverted"]

    assert tagd("--index", str(index), "revert", str(cat)).returncode == 0
    shown = json.loads(tagd("--index", str(index), "show", "--json", str(cat)).stdout)
    assert shown["reverted"] and not [t for t in shown["tags"] if t["source"] != "user"]
    assert shown["size"] == cat.stat().st_size and shown["mtime_ns"] == cat.stat().st_mtime_ns
    assert tagd("--index", str(index), "search", "cat").returncode == 1  # found no more
    before = cat.read_bytes()
    scan = tagd("--index", str(index), "scan", str(photos))
    assert scan.returncode == 0, scan.stderr
    assert cat.read_bytes() == before  # the other photos were tagged, this one left alone
    assert json.loads(tagd("--index", str(index), "show", "--json", str(cat)).stdout)["reverted"]

    assert tagd("--index", str(index), "tag", "--write", str(cat)).returncode == 0
    shown = json.loads(tagd("--index", str(index), "show", "--json", str(cat)).stdout)
    assert not shown["reverted"] and "cat" in [t["name"] for t in shown["tags"] if t["state"] == "added"]


def test_a_photo_that_cannot_be_written_is_still_indexed_and_found(photos: Path, tmp_path: Path) -> None:
    """Tagged but refused (here a read-only file): failed with the reason, but its tags are in
    the index, so search finds it; unchanged, it is not retried."""
    index = tmp_path / "index.sqlite3"
    cat = photos / "chelsea.jpg"
    cat.chmod(0o444)
    before = cat.read_bytes()
    proc = tagd("--index", str(index), "tag", "--write", str(cat))
    assert proc.returncode == 1 and "read-only file" in proc.stdout
    assert cat.read_bytes() == before
    shown = json.loads(tagd("--index", str(index), "show", "--json", str(cat)).stdout)
    assert shown["status"] == "failed" and "read-only file" in shown["error"]
    assert "cat" in [t["name"] for t in shown["tags"]]
    found = tagd("--index", str(index), "search", "cat")
    assert found.returncode == 0 and str(cat) in found.stdout
    scan = tagd("--index", str(index), "scan", str(photos))
    assert scan.returncode in (0, 1) and "read-only" not in scan.stderr  # not retried while unchanged
    assert cat.read_bytes() == before

    cat.chmod(0o644)  # the owner lifts it: the next scan (or the daemon, on the chmod's event) writes it
    scan = tagd("--index", str(index), "scan", str(photos))
    assert scan.returncode == 0, scan.stderr
    assert "cat" in as_list(exiftool_keywords(cat)["XMP-dc:Subject"])
    assert json.loads(tagd("--index", str(index), "show", "--json", str(cat)).stdout)["status"] == "tagged"


def test_camera_stored_only_in_xmp_is_indexed_and_found(photos: Path, tmp_path: Path) -> None:
    """`camera:` ignored make and model that a photo carries only in XMP (tiff:Make, tiff:Model;
    8 of coco128's photos), though the date was read from XMP."""
    from metadata_oracles import exiftool_json

    nikon, canon = photos / "chelsea.jpg", photos / "coffee.jpg"
    exiftool_write(nikon, "-XMP-tiff:Make=NIKON CORPORATION", "-XMP-tiff:Model=NIKON D700")
    exiftool_write(canon, "-XMP-tiff:Make=Canon", "-XMP-tiff:Model=Canon EOS 550D", "-IFD0:Make=", "-IFD0:Model=")
    record = exiftool_json(nikon, "-G1", "-a", "-Make", "-Model")
    assert "IFD0:Make" not in record and record["XMP-tiff:Make"] == "NIKON CORPORATION"  # XMP only
    index = tmp_path / "index.sqlite3"
    assert tagd("--index", str(index), "tag", "--write", str(photos)).returncode == 0
    found = tagd("--index", str(index), "search", "camera:nikon")
    assert (found.returncode, found.stdout) == (0, f"{nikon}\n"), found.stderr
    assert tagd("--index", str(index), "search", 'camera:"eos 550d"').stdout == f"{canon}\n"
    shown = json.loads(tagd("--index", str(index), "show", "--json", str(nikon)).stdout)
    assert shown["camera"] == "NIKON D700"


@pytest.mark.skipif(not (COCO128 / "images").is_dir(), reason="../shared/data/coco128-dev not present")
def test_coco_photos_with_their_camera_only_in_xmp(tmp_path: Path) -> None:
    """The coco128 photos whose camera is only in XMP: 2 Canon, 4 Nikon among them."""
    from metadata_oracles import exiftool_json

    folder = tmp_path / "coco"
    folder.mkdir()
    xmp_only = {"nikon": [], "canon": []}
    for src in sorted((COCO128 / "images").glob("*.jpg")):
        record = exiftool_json(src, "-G1", "-a", "-IFD0:Make", "-XMP-tiff:Make")
        make = str(record.get("XMP-tiff:Make", "")).lower()
        if "IFD0:Make" not in record and make.split()[:1] in (["nikon"], ["canon"]):
            shutil.copyfile(src, folder / src.name)
            xmp_only[make.split()[0]].append(folder / src.name)
    assert (len(xmp_only["canon"]), len(xmp_only["nikon"])) == (2, 4)
    index = tmp_path / "index.sqlite3"
    assert tagd("--index", str(index), "tag", "--write", str(folder)).returncode == 0
    for make, paths in xmp_only.items():
        found = tagd("--index", str(index), "search", "--sort", "path", f"camera:{make}")
        assert found.stdout.splitlines() == [str(p) for p in paths], (make, found.stderr)


@pytest.mark.parametrize("env", [{"LC_ALL": "C"}, {"LC_ALL": "C.UTF-8"}, {"LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}],
                         ids=["C", "C.UTF-8", "strict-utf8"])
def test_every_json_output_is_valid_utf8_for_a_latin1_file_name(photos: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """A file named in Latin-1 (byte 0xE9) came out of `--json` as the raw byte (not UTF-8), or
    as a traceback where stdout is strict. Every line of every --json output is valid UTF-8
    JSON now, the byte as a \\udce9 escape that os.fsencode turns back into it."""
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    folder.mkdir()
    cat = Path(os.fsdecode(os.fsencode(folder) + b"/chat \xe9t\xe9.jpg"))
    broken = Path(os.fsdecode(os.fsencode(folder) + b"/cass\xe9.jpg"))
    shutil.copyfile(photos / "chelsea.jpg", cat)
    shutil.copyfile(photos / "coffee.jpg", folder / "café.jpg")  # a UTF-8 name stays as it is
    broken.write_bytes(b"not a photo")
    index = tmp_path / "index.sqlite3"

    def json_lines(*args: str) -> list[dict]:
        proc = subprocess.run([sys.executable, "-m", "tagd", "--index", str(index), *args], capture_output=True,
                              timeout=300, env={**os.environ, **env})
        assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
        assert proc.stdout, (args, proc.stderr)
        return [json.loads(line.decode("utf-8")) for line in proc.stdout.splitlines()]  # strict UTF-8

    expected = {os.fsencode(p) for p in (cat, broken, folder / "café.jpg")}
    for rows in (json_lines("tag", "--json", str(folder)), json_lines("tag", "--write", "--json", str(folder))):
        assert {os.fsencode(r["path"]) for r in rows} == expected
    written = {os.fsencode(r["path"]): r for r in json_lines("tag", "--write", "--json", "--sidecar", str(cat))}
    assert written[os.fsencode(cat)]["written"] == os.fsdecode(os.fsencode(cat) + b".xmp")
    assert "chat \\udce9t\\udce9.jpg" in json.dumps(written[os.fsencode(cat)]["path"])

    assert os.fsencode(json_lines("search", "--json", "cat")[0]["path"]) == os.fsencode(cat)
    assert os.fsencode(json_lines("show", "--json", str(cat))[0]["path"]) == os.fsencode(cat)
    assert os.fsencode(json_lines("similar", "--json", "-k", "1", str(folder / "café.jpg"))[0]["path"]) == os.fsencode(cat)
    stats = json_lines("stats", "--json")[0]
    assert [os.fsencode(f["path"]) for f in stats["failed"]["files"]] == [os.fsencode(broken)]
    # The plain output prints a path as its bytes, as ls does: what xargs needs.
    proc = subprocess.run([sys.executable, "-m", "tagd", "--index", str(index), "search", "cat"], capture_output=True,
                          timeout=60, env={**os.environ, **env})
    assert proc.stdout == os.fsencode(cat) + b"\n"


def test_revert_says_what_it_did_in_a_sentence(photos: Path) -> None:
    """'nothing to revert: tagd never wrote here: (no keywords)' read as two messages glued."""
    cat, coffee = photos / "chelsea.jpg", photos / "coffee.jpg"
    exiftool_write(cat, "-XMP-dc:Subject=Mittens")
    proc = tagd("revert", str(cat))
    assert proc.stdout == f"{cat}\tnothing to revert: tagd has not written keywords to this photo\n"
    assert tagd("tag", "--write", str(cat), str(coffee)).returncode == 0
    proc = tagd("revert", str(cat), str(coffee))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{cat}\treverted; keywords now: Mittens",
                                        f"{coffee}\treverted; the photo has no keywords now"]


def test_a_photo_kept_out_of_in_file_writing_gets_a_sidecar_and_a_line_saying_why(photos: Path, tmp_path: Path) -> None:
    """IPTC mixing Latin-1 and UTF-8 cannot be rewritten without garbling one: the photo stays
    byte-identical, its keywords go to a sidecar, and the line says so and why."""
    import subprocess

    cat = photos / "chelsea.jpg"
    for charset, keyword in (("Latin", "Café"), ("UTF8", "naïve")):
        subprocess.run(["exiftool", "-q", "-overwrite_original", "-charset", f"iptc={charset}",
                        f"-IPTC:Keywords+={keyword}", str(cat)], check=True, timeout=60)
    before = cat.read_bytes()
    proc = tagd("--index", str(tmp_path / "index.sqlite3"), "tag", "--write", str(cat))
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.endswith(f"(wrote {cat}.xmp; the photo itself is untouched: its IPTC mixes UTF-8 and Latin-1 text "
                         "without saying which, and rewriting it would garble one of them)"), line
    assert cat.read_bytes() == before
    assert {"Café", "naïve", "cat"} <= set(as_list(exiftool_keywords(Path(f"{cat}.xmp"))["XMP-dc:Subject"]))
