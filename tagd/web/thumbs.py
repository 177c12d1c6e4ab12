"""Thumbnails and previews for the web app: made once, cached by the photo's content hash.

A cached image is `$XDG_CACHE_HOME/tagd/thumbnails/ab/<sha256>-<px>.jpg`: the same photo in two
folders, or moved, shares one; a photo whose bytes change (new keywords included) gets a new
one, made on its next view. Decoding is tagd's own (tagd.decode: draft-mode JPEG, EXIF
orientation, the decoded-pixel limit), so a hostile file is refused here as it is when tagging.
Camera RAW files are shown through the JPEG preview the camera embedded in them (exiftool
extracts it), turned by the RAW's own orientation.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
import threading
from pathlib import Path

from PIL import Image

from tagd.decode import load_rgb
from tagd.errors import ReadError
from tagd.memory import DEFAULT_MAX_DECODE_PIXELS
from tagd.photos import RAW_SUFFIXES

JPEG_QUALITY = 82
RAW_PREVIEW_TAGS = ("JpgFromRaw", "PreviewImage", "OtherImage", "ThumbnailImage")  # largest first, as cameras store them


def cache_dir() -> Path:
    from tagd.config import xdg_dir

    return xdg_dir("cache") / "tagd" / "thumbnails"


class Thumbnails:
    """Cached JPEG renditions of photos at a given long side."""

    def __init__(self, directory: Path | None = None, max_pixels: int = DEFAULT_MAX_DECODE_PIXELS, workers: int = 2) -> None:
        self.directory = directory or cache_dir()
        self.max_pixels = max_pixels
        # Decoding is CPU-bound: a gallery's 120 misses at once would only queue up behind each other.
        self._slots = threading.BoundedSemaphore(workers)

    def path_for(self, content_hash: str, px: int) -> Path:
        if not _is_hex(content_hash):  # it names a file: nothing but a sha256 may
            raise ValueError(f"not a content hash: {content_hash!r}")
        return self.directory / content_hash[:2] / f"{content_hash}-{px}.jpg"

    def get(self, photo: Path, content_hash: str, px: int) -> Path:
        """The cached rendition of `photo` (whose content is `content_hash`), made if missing.
        Raises ReadError with the reason when the photo cannot be decoded."""
        target = self.path_for(content_hash, px)
        if target.is_file():
            return target
        with self._slots:
            if target.is_file():  # made by another request while this one waited
                return target
            data = render(photo, px, self.max_pixels)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        return target


def render(photo: Path, px: int, max_pixels: int = DEFAULT_MAX_DECODE_PIXELS) -> bytes:
    """`photo` as a JPEG whose long side is at most `px`, upright."""
    if photo.suffix.lower() in RAW_SUFFIXES:
        im = _raw_preview(photo, px)
    else:
        im = load_rgb(photo, 1, max_pixels=max_pixels, long_side=px)
        if max(im.size) > px:
            im.thumbnail((px, px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=px > 400)
    return out.getvalue()


def _raw_preview(photo: Path, px: int) -> Image.Image:
    from tagd.metadata.exiftool import child_environment

    for tag in RAW_PREVIEW_TAGS:
        try:
            data = subprocess.run(["exiftool", "-b", f"-{tag}", "--", str(photo)], capture_output=True, timeout=30,
                                  env=child_environment(), check=False).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReadError(photo, f"cannot read the RAW file's preview: {exc}") from None
        if len(data) < 100:
            continue
        try:
            im = Image.open(io.BytesIO(data))
            im.draft("RGB", (px, px))
            im = im.convert("RGB")
        except (OSError, SyntaxError, ValueError):
            continue
        im = _rotate(im, _raw_orientation(photo))
        im.thumbnail((px, px), Image.Resampling.LANCZOS)
        return im
    raise ReadError(photo, "a RAW file with no embedded preview tagd can show")


def _raw_orientation(photo: Path) -> int:
    from tagd.metadata.exiftool import child_environment

    try:
        out = subprocess.run(["exiftool", "-s3", "-n", "-Orientation", "--", str(photo)], capture_output=True,
                             text=True, timeout=30, env=child_environment(), check=False).stdout.strip()
        return int(out or 1)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return 1


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # EXIF orientation -> the turn that makes the image upright (what ImageOps.exif_transpose does)


def _rotate(im: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return im.transpose(method) if method is not None else im


def _is_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
