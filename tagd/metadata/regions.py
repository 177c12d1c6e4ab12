"""The detector's boxes as MWG regions (`XMP-mwg-rs:RegionInfo`), beside the user's own.

MWG regions (digiKam, Lightroom, Picasa-era tools) are a list of areas, each with a centre,
a size (normalised to the image) and a type: Face, Pet, Focus or BarCode. tagd writes its
people and objects with Type "Pet" for animals and no type otherwise (they are whole bodies
and things, not faces: a face tool must not offer them for naming), its tag as Name, and
"tagd <score>" as Description, which is how tagd finds its own regions again. A region the
user made is never altered: tagd's are replaced, the user's copied through as exiftool read
them (numbers as their original text), and `tagd revert` removes only tagd's.

Areas are relative to the photo as displayed (EXIF orientation applied), as tagd decodes it,
with AppliedToDimensions giving those dimensions unless the user's regions already set them.
Pure functions; the writer applies them through exiftool's JSON import (`-j=`), so values
need no escaping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from tagd.boxes import Box

REGION_INFO = "XMP-mwg-rs:RegionInfo"
MARK = "tagd"
ANIMALS = frozenset({"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"})



def is_tagd(region: dict[str, Any]) -> bool:
    return str(region.get("Description", "")).startswith(f"{MARK} ")


def user_regions(info: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [r for r in region_list(info) if not is_tagd(r)]


def tagd_regions(info: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [r for r in region_list(info) if is_tagd(r)]


def region_list(info: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not isinstance(info, dict):
        return []
    regions = info.get("RegionList") or []
    return [r for r in (regions if isinstance(regions, list) else [regions]) if isinstance(r, dict)]


def merged(info: dict[str, Any] | None, boxes: Iterable[Box], size: tuple[int | None, int | None]) -> dict[str, Any] | None:
    """The RegionInfo to write: the user's regions as they are, then tagd's `boxes`. None when
    there is nothing to hold (no user region, no box)."""
    own = [_region(b) for b in boxes]
    users = user_regions(info)
    if not own and not users:
        return None
    out: dict[str, Any] = {k: v for k, v in (info or {}).items() if k != "RegionList"}
    width, height = size
    if "AppliedToDimensions" not in out and width and height:
        out["AppliedToDimensions"] = {"W": str(width), "H": str(height), "Unit": "pixel"}
    out["RegionList"] = [*users, *own]
    return out


def _region(box: Box) -> dict[str, Any]:
    region: dict[str, Any] = {
        "Area": {"X": f"{box.x:.4f}", "Y": f"{box.y:.4f}", "W": f"{box.w:.4f}", "H": f"{box.h:.4f}", "Unit": "normalized"},
        "Name": box.label,
        "Description": f"{MARK} {box.score:.2f}",
    }
    if box.label in ANIMALS:
        region["Type"] = "Pet"
    return region


def import_file(info: dict[str, Any] | None, scratch: Path) -> Path:
    """A JSON file exiftool imports with `-j=` to set RegionInfo to `info` (None: remove it)."""
    path = scratch / "regions.json"
    path.write_text(json.dumps([{"SourceFile": "*", REGION_INFO: info if info is not None else ""}], ensure_ascii=False),
                    encoding="utf-8")
    return path
