"""Where keywords go: into the file, or into an `.xmp` sidecar beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

# The one table of photo formats (tagd/photos.py): RAW is never written in-file; the in-file
# formats each have a payload check in containers.py (TIFF by pixels); anything else gets a sidecar.
from tagd.photos import IN_FILE_SUFFIXES, RAW_SUFFIXES

__all__ = ["IN_FILE_SUFFIXES", "RAW_SUFFIXES", "SidecarNaming", "SidecarPolicy", "existing_sidecar", "sidecar_path",
           "wants_sidecar"]

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
