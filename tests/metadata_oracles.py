"""Independent readers used as test oracles: exiftool (CLI, fresh process) and exiv2 (pyexiv2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

KEYWORD_ARGS = [
    "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject", "-XMP-digiKam:TagsList",
    "-XMP-microsoft:LastKeywordXMP", "-IPTC:Keywords", "-IPTC:CodedCharacterSet", "-IFD0:XPKeywords",
    "-MWG:Keywords", "-Photoshop:IPTCDigest", "-File:CurrentIPTCDigest",
]


def exiftool_json(path: Path, *args: str) -> dict[str, Any]:
    """A fresh exiftool process (not tagd's warm one), numbers kept as strings."""
    out = subprocess.run(
        ["exiftool", "-j", "-struct", "-a", "-G1", "-charset", "iptc=UTF8", *args, str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return json.loads(out, parse_int=str, parse_float=str)[0]


def exiftool_keywords(path: Path) -> dict[str, Any]:
    return exiftool_json(path, "-use", "MWG", *KEYWORD_ARGS)


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def full_metadata(path: Path) -> dict[str, Any]:
    return exiftool_json(path, "-n", "--System:all", "--File:all")


def validate(path: Path) -> list[str]:
    out = subprocess.run(["exiftool", "-validate", "-warning", "-error", "-a", "-s3", str(path)],
                         capture_output=True, text=True, timeout=60).stdout
    return sorted(line for line in out.splitlines() if line.strip())


def exiv2_keywords(path: Path) -> dict[str, list[str]]:
    """XMP, IPTC and XPKeywords as libexiv2 reads them."""
    import pyexiv2

    with pyexiv2.Image(str(path), encoding="utf-8") as img:
        xmp, iptc, exif = img.read_xmp(), img.read_iptc(), img.read_exif()
    out: dict[str, list[str]] = {}
    for key, name in (("Xmp.dc.subject", "subject"), ("Xmp.lr.hierarchicalSubject", "hierarchical"),
                      ("Xmp.digiKam.TagsList", "tagslist"), ("Xmp.MicrosoftPhoto.LastKeywordXMP", "lastkeywordxmp")):
        if key in xmp:
            out[name] = as_list(xmp[key])
    if "Iptc.Application2.Keywords" in iptc:
        out["iptc"] = as_list(iptc["Iptc.Application2.Keywords"])
    if "Exif.Image.XPKeywords" in exif:
        out["xpkeywords"] = [k for k in str(exif["Exif.Image.XPKeywords"]).rstrip("\x00").split(";") if k]
    return out


def exiftool_write(path: Path, *assignments: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-charset", "iptc=UTF8", *assignments, str(path)],
                   check=True, capture_output=True, timeout=60)


def scan_data(path: Path) -> bytes:
    """JPEG bytes from the first SOS marker to the end of the file."""
    from tagd.metadata.containers import inspect

    return inspect(path.read_bytes(), path.suffix).payload or b""
