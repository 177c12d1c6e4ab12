"""Where keywords go: into the file, or into an `.xmp` sidecar beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

# Camera RAW: never written in-file, as Lightroom, darktable and digiKam do.
RAW_SUFFIXES = frozenset({
    ".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".iiq", ".k25", ".kdc",
    ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl",
    ".sr2", ".srf", ".srw", ".x3f",
})
# Formats tagd writes in-file: each has a payload check in containers.py (TIFF by pixels).
IN_FILE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff"})

SidecarNaming = Literal["full", "stem"]  # IMG_1234.CR2.xmp | IMG_1234.xmp
SidecarPolicy = Literal["auto", "always"]


def sidecar_path(photo: Path, naming: SidecarNaming = "full") -> Path:
    return photo.with_name(photo.name + ".xmp") if naming == "full" else photo.with_suffix(".xmp")


def existing_sidecar(photo: Path) -> Path | None:
    """A sidecar already beside the photo, in either naming style (full name first)."""
    for naming in ("full", "stem"):
        candidate = sidecar_path(photo, naming)  # type: ignore[arg-type]
        if candidate.is_file():
            return candidate
    return None


def wants_sidecar(photo: Path, policy: SidecarPolicy) -> bool:
    if policy == "always":
        return True
    return photo.suffix.lower() not in IN_FILE_SUFFIXES
