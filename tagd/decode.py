"""Photo decoding for inference: fast, orientation-correct, and safe on hostile files.

JPEGs are decoded with Pillow's draft mode, which lets libjpeg scale by 1/2, 1/4 or 1/8
while decoding the DCT blocks: a 12 MP photo becomes ~500 px for a fraction of the cost
of a full decode. Pillow's decompression-bomb guard stays on and its warning is an error.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tagd.errors import ReadError
from tagd.memory import large_operation

# The guard stays at Pillow's default; we only make sure nobody has turned it off and that
# the "DecompressionBombWarning" band (between the limit and twice the limit) also refuses.
if Image.MAX_IMAGE_PIXELS is None:
    Image.MAX_IMAGE_PIXELS = 89_478_485

RESAMPLE = Image.Resampling.BILINEAR


def load_rgb(path: Path, short_side: int) -> Image.Image:
    """Open `path`, apply its EXIF orientation, return an RGB image whose short side is `short_side`.

    Raises ReadError with a one-line reason for anything that is not a decodable photo.
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
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return _to_model_input(im, short_side, st.st_size)
    except ReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ReadError(path, f"refused as a decompression bomb ({_first_line(exc)})") from None
    except UnidentifiedImageError:
        raise ReadError(path, "not an image Pillow can read") from None
    except PermissionError:
        raise ReadError(path, "permission denied") from None
    except FileNotFoundError:
        raise ReadError(path, "file vanished while reading") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncation and corrupt streams as OSError/SyntaxError/ValueError.
        raise ReadError(path, f"cannot decode: {_first_line(exc)}") from None
    except MemoryError:
        raise ReadError(path, "cannot decode: out of memory") from None


# Formats without draft mode (PNG, TIFF, WebP) decode at full size: ~50 MB for 12 MP, so large
# ones take tagd.memory's lock; JPEGs (draft-decoded, a few MB) never wait.
FULL_DECODE_PIXELS = 4_000_000
MAX_READ_BLOCK = 8 * 1024 * 1024  # a JPEG larger than this is read in blocks of this size


def _to_model_input(im: Image.Image, short_side: int, size: int = 0) -> Image.Image:
    orientation = _exif_orientation(im)
    if im.format == "JPEG":
        # DCT scaling never goes below the requested box, so asking for a square of the short
        # side keeps at least `short_side` pixels on both axes whatever the orientation.
        im.draft("RGB", (short_side, short_side))
        # One read and one decoder call for the whole file, not one per 64 kB: the decoder
        # releases the GIL while it works and must take it back after each call, which costs a
        # wait whenever the writer or inference threads hold it.
        im.decodermaxblock = max(im.decodermaxblock, min(size, MAX_READ_BLOCK))
        im.load()  # decode now so truncation errors surface here, inside the guard
        return _resized(im, orientation, short_side)
    if im.size[0] * im.size[1] < FULL_DECODE_PIXELS:
        im.load()
        return _resized(im, orientation, short_side)
    with large_operation:
        im.load()
        return _resized(im, orientation, short_side)


def _resized(im: Image.Image, orientation: int, short_side: int) -> Image.Image:
    if orientation and orientation != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode != "RGB":
        im = _flatten_to_rgb(im)
    width, height = im.size
    scale = short_side / min(width, height)
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
