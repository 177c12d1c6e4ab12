"""Photo decoding for inference: fast, orientation-correct, and safe on hostile files.

JPEGs are decoded with Pillow's draft mode, which lets libjpeg scale by 1/2, 1/4 or 1/8
while decoding the DCT blocks: a 12 MP photo becomes ~500 px for a fraction of the cost
of a full decode.

Decompression bombs (a header claiming far more pixels than anyone should allocate) are refused
by what decoding would actually allocate, not by the size the header claims: Pillow's own check
does the latter, and refused 96-102 MP camera JPEGs that draft mode decodes at 1.5 MP. So Pillow's
check is off and `max_pixels` (model.max_decode_pixels) is applied to the decoded size instead.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from tagd.errors import ReadError, first_line
from tagd.memory import DEFAULT_MAX_DECODE_PIXELS, large_operation

# Opening a file reads only its header; the limit that matters is checked in _to_model_input.
Image.MAX_IMAGE_PIXELS = None

RESAMPLE = Image.Resampling.BILINEAR


def load_rgb(path: Path, short_side: int, max_pixels: int = DEFAULT_MAX_DECODE_PIXELS, long_side: int = 0) -> Image.Image:
    """Open `path`, apply its EXIF orientation, return an RGB image whose short side is `short_side`,
    or, with `long_side`, the smallest image whose short side is at least `short_side` and long
    side at least `long_side` (one decode for a classifier and a detector: tagd.tagger).

    Raises ReadError with a one-line reason for anything that is not a decodable photo, or whose
    decode would allocate more than `max_pixels` pixels.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ReadError(path, "file not found") from None
    except PermissionError:
        raise ReadError(path, "permission denied") from None
    except OSError as exc:
        raise ReadError(path, f"cannot stat: {exc.strerror or exc}") from None
    if not _is_regular(st.st_mode):
        raise ReadError(path, "not a regular file")
    if st.st_size == 0:
        raise ReadError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            return _to_model_input(im, short_side, st.st_size, max_pixels, long_side)
    except TooLarge as exc:
        raise ReadError(path, str(exc)) from None
    except UnidentifiedImageError:
        raise ReadError(path, "not an image Pillow can read") from None
    except PermissionError:
        raise ReadError(path, "permission denied") from None
    except FileNotFoundError:
        raise ReadError(path, "file vanished while reading") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncation and corrupt streams as OSError/SyntaxError/ValueError.
        raise ReadError(path, f"cannot decode: {first_line(exc)}") from None
    except MemoryError:
        raise ReadError(path, "cannot decode: out of memory") from None


# Formats without draft mode (PNG, TIFF, WebP) decode at full size: ~50 MB for 12 MP, so large
# ones take tagd.memory's lock, and so do progressive JPEGs (below); baseline JPEGs (draft-decoded,
# a few MB) never wait.
FULL_DECODE_PIXELS = 4_000_000
MAX_READ_BLOCK = 8 * 1024 * 1024  # a JPEG larger than this is read in blocks of this size


class TooLarge(Exception):
    """Decoding would allocate more pixels than allowed; the text says how many and what to raise."""

    def __init__(self, size: tuple[int, int], max_pixels: int, decoded: tuple[int, int] | None = None,
                 why: str = "") -> None:
        width, height = size
        text = f"image is {width}×{height} = {_mp(width * height)}"
        if decoded is not None:
            text += f", decoded at {decoded[0]}×{decoded[1]} = {_mp(decoded[0] * decoded[1])}"
        super().__init__(f"{text}{why}, more than model.max_decode_pixels ({max_pixels:,} = {_mp(max_pixels)}) allows; "
                         "raise it to tag such photos")


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} MP" if pixels >= 10e6 else f"{pixels / 1e6:.1f} MP"


def _to_model_input(im: Image.Image, short_side: int, size: int = 0,
                    max_pixels: int = DEFAULT_MAX_DECODE_PIXELS, long_side: int = 0) -> Image.Image:
    orientation = _exif_orientation(im)
    full = im.size
    held_whole = True  # what decoding allocates: the full image, except for a baseline JPEG
    if isinstance(im, JpegImagePlugin.JpegImageFile):  # MPO too (a JPEG with previews, as cameras write)
        # libjpeg keeps every DCT coefficient of a progressive JPEG until its last scan, at full
        # size whatever the scaling (a 96 MP one: 300 MB); a baseline one is decoded in strips.
        held_whole = bool(im.info.get("progressive"))
        if held_whole and full[0] * full[1] > max_pixels:
            raise TooLarge(full, max_pixels, why=" (a progressive JPEG is held whole while decoding)")
        # DCT scaling never goes below the requested box; the box is the photo at the scale the
        # models need (in the stored orientation: scaling commutes with the EXIF rotation).
        scale = _scale(full, short_side, long_side)
        im.draft("RGB", (max(1, math.ceil(full[0] * scale)), max(1, math.ceil(full[1] * scale))))
        if im.size[0] * im.size[1] > max_pixels:
            raise TooLarge(full, max_pixels, decoded=im.size)
        # One read and one decoder call for the whole file, not one per 64 kB: the decoder
        # releases the GIL while it works and must take it back after each call, which costs a
        # wait whenever the writer or inference threads hold it.
        im.decodermaxblock = max(im.decodermaxblock, min(size, MAX_READ_BLOCK))
    elif full[0] * full[1] > max_pixels:
        raise TooLarge(full, max_pixels)
    if not held_whole or full[0] * full[1] < FULL_DECODE_PIXELS:
        im.load()  # decode now so truncation errors surface here, inside the error handling
        return _resized(im, orientation, short_side, long_side)
    with large_operation:
        im.load()
        return _resized(im, orientation, short_side, long_side)


def _scale(size: tuple[int, int], short_side: int, long_side: int) -> float:
    """The factor that brings `size` to a short side of `short_side`, or more where the long side
    would then fall short of `long_side`."""
    return max(short_side / min(size), long_side / max(size))


def _resized(im: Image.Image, orientation: int, short_side: int, long_side: int = 0) -> Image.Image:
    if orientation and orientation != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode != "RGB":
        im = _flatten_to_rgb(im)
    width, height = im.size
    scale = _scale(im.size, short_side, long_side)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))
    # reducing_gap: a full-size decode (PNG, WebP, TIFF: 12 MP -> 224 px) is first box-reduced by
    # an integer factor, then filtered: 9 instead of 32 ms, same antialiasing. A draft-decoded
    # JPEG up to ~20 MP (<= 500 px after 1/8 scaling) is too close to the target for it to apply.
    return im.resize(size, RESAMPLE, reducing_gap=2.0) if size != im.size else im


def _flatten_to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale (scientific TIFF/PNG): scale to 8 bits instead of clipping.
        arr = np.asarray(im, dtype=np.float32)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr * (255.0 / top)).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def _exif_orientation(im: Image.Image) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF; we fall back to 1
            return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # corrupt EXIF must not stop tagging: the pixels may be fine
        return 1


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


