"""The 128 coco128-dev photos as a user has them: each edited once with exiftool (a keyword
added), then `tagd tag --write`, a second run over the grown index, and `tagd revert`, with
exiftool and exiv2 as the readers. 15 of these Flickr photos keep their XMP behind the
non-standard "XMP\\0://" header, so after the user's edit they carry two packets that the two
readers see differently; one has 57 KB of Lightroom corrections."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED
from metadata_oracles import KEYWORD_ARGS, as_list, exiv2_keywords

COCO = SHARED / "data" / "coco128-dev" / "images"
WORD = "rufus"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not COCO.is_dir(), reason="coco128-dev is not here (../shared/data)"),
    pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed"),
]


def exiftool_fields(paths: list[Path]) -> dict[str, dict]:
    """Every keyword field of many files, one fresh exiftool for all of them."""
    proc = subprocess.run(["exiftool", "-j", "-struct", "-a", "-G1", "-charset", "iptc=UTF8", "-use", "MWG",
                           *KEYWORD_ARGS, "-@", "-"], input="\n".join(map(str, paths)) + "\n",
                          capture_output=True, text=True, timeout=600)
    out = {}
    for record in json.loads(proc.stdout, parse_int=str, parse_float=str):
        path = record.pop("SourceFile")
        record.pop("File:CurrentIPTCDigest", None)  # follows from the IPTC block, compared via its fields
        out[path] = record
    return out


def tagd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tagd", *args], capture_output=True, text=True, timeout=1800)


def test_every_user_keyword_survives_tagd_and_revert_gives_every_field_back(tmp_path: Path) -> None:
    library = tmp_path / "Pictures"
    library.mkdir()
    photos = []
    for src in sorted(COCO.glob("*.jpg")):
        shutil.copy(src, library / src.name)
        os.chmod(library / src.name, 0o644)
        photos.append(library / src.name)
    assert len(photos) == 128
    subprocess.run(["exiftool", "-q", "-q", "-overwrite_original", f"-XMP-dc:Subject+={WORD}", *map(str, photos)],
                   check=True, timeout=600)
    before = exiftool_fields(photos)
    before_exiv2 = {str(p): exiv2_keywords(p) for p in photos}
    two_views = [p for p in photos if WORD not in as_list(before[str(p)].get("XMP-dc:Subject"))]
    assert len(two_views) >= 1  # exiftool shows the old packet there, exiv2 the new one

    index = str(tmp_path / "index.sqlite3")
    first = tagd("tag", "--write", "--index", index, str(library))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    rows = dict(line.split("\t", 1) for line in first.stdout.splitlines())
    assert len(rows) == 128 and not [r for r in rows.values() if "ERROR" in r]
    sidecars = sorted(library.glob("*.xmp"))
    assert not sidecars, f"written beside the photo instead: {sidecars}"
    after = exiftool_fields(photos)
    for photo in photos:
        old_keywords = (set(as_list(before[str(photo)].get("XMP-dc:Subject"))) |
                        set(before_exiv2[str(photo)].get("subject", []))) - {""}  # "": an empty bag
        for reader in (as_list(after[str(photo)].get("XMP-dc:Subject")), exiv2_keywords(photo).get("subject", [])):
            assert WORD in reader and old_keywords <= set(reader), f"{photo.name}: {reader} lost some of {old_keywords}"

    # The index has grown by 128 photos of the user's keywords; nothing about any photo is new.
    written = {p: p.read_bytes() for p in photos}
    second = tagd("tag", "--write", "--index", index, str(library))
    assert second.returncode == 0, second.stderr[-3000:]
    assert all(line.endswith("(unchanged)") for line in second.stdout.splitlines()), second.stdout
    assert [p.name for p in photos if p.read_bytes() != written[p]] == []

    reverted = tagd("revert", "--index", index, str(library))
    assert reverted.returncode == 0, reverted.stdout[-3000:]
    back = exiftool_fields(photos)
    wrong = [p.name for p in photos if back[str(p)] != before[str(p)] or exiv2_keywords(p) != before_exiv2[str(p)]]
    assert wrong == [], {w: (before[str(library / w)], back[str(library / w)]) for w in wrong[:2]}
    assert sorted(library.iterdir()) == photos
