"""The one value type for an object found in a photo: what the detector returns, what the
metadata writer turns into an MWG region, what the index stores and `tagd show` lists.

A leaf module (no tagd imports), like errors.py, so that detector, metadata and index can
share it without knowing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """One object, named by its tag, its box normalised to the photo as displayed (EXIF
    orientation applied): centre (x, y) and size (w, h) in 0..1, as MWG regions store them."""

    label: str
    score: float
    x: float
    y: float
    w: float
    h: float
