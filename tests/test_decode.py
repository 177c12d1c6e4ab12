"""Decoding: orientation, draft mode, odd colour modes, and every bad input refused in one line."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image, JpegImagePlugin

from tagd.decode import load_rgb
from tagd.errors import ReadError


def _jpeg_with_orientation(path: Path, pixels: np.ndarray, orientation: int) -> None:
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: orientation}})
    Image.fromarray(pixels).save(path, quality=90, exif=exif)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored landscape (300 wide, 200 high) with orientation 6: displayed as portrait.
    pixels = np.zeros((200, 300, 3), dtype=np.uint8)
    pixels[:, :150] = (255, 0, 0)  # left half red as stored
    path = tmp_path / "rotated.jpg"
    _jpeg_with_orientation(path, pixels, 6)
    im = load_rgb(path, 224)
    width, height = im.size
    assert width == 224 and height > width, im.size
    # Orientation 6 rotates 90° clockwise for display: the stored left half becomes the top.
    arr = np.asarray(im)
    assert arr[: height // 4, :, 0].mean() > 200 and arr[-height // 4:, :, 0].mean() < 60


def test_short_side_is_the_requested_size(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (1000, 400), (10, 20, 30)).save(path)
    assert load_rgb(path, 224).size == (560, 224)


def test_large_jpeg_is_decoded_in_draft_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(path, quality=85)
    seen: list[tuple[int, int]] = []
    real_load = JpegImagePlugin.JpegImageFile.load

    def spy(self):  # the size libjpeg actually decodes to, after draft()
        seen.append(self.size)
        return real_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    im = load_rgb(path, 224)
    assert min(im.size) == 224
    assert seen and max(seen[0]) <= 4000 // 8, f"decoded at {seen[0]}, not DCT-scaled"


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16", "LA"])
def test_colour_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"img-{mode.replace(';', '')}.{'jpg' if mode in ('L', 'CMYK') else 'png' if mode != 'LA' else 'png'}"
    Image.new(mode, (320, 240)).save(path)
    im = load_rgb(path, 224)
    assert im.mode == "RGB" and min(im.size) == 224


def test_webp_and_tiff(tmp_path: Path) -> None:
    for suffix in ("webp", "tiff"):
        path = tmp_path / f"x.{suffix}"
        Image.new("RGB", (300, 300), (1, 2, 3)).save(path)
        assert load_rgb(path, 224).size == (224, 224)


def _refused(path: Path, *needles: str) -> str:
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(ReadError) as info:
        load_rgb(path, 224)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    assert any(n in info.value.reason for n in needles), info.value.reason
    if before is not None:
        assert path.read_bytes() == before  # reading never changes the file
    return info.value.reason


def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _refused(path, "empty")


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n" * 20)
    _refused(path, "not an image")


def test_truncated_jpeg(real_photo_dir: Path, tmp_path: Path) -> None:
    data = (real_photo_dir / "chelsea.jpg").read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "cannot decode", "truncated")


def test_jpeg_header_only(real_photo_dir: Path, tmp_path: Path) -> None:
    data = (real_photo_dir / "chelsea.jpg").read_bytes()
    path = tmp_path / "header.jpg"
    path.write_bytes(data[:200])
    _refused(path, "cannot decode", "not an image")


def test_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.jpg", "not found")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "dir.jpg"
    folder.mkdir()
    _refused(folder, "not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable(real_photo_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "locked.jpg"
    path.write_bytes((real_photo_dir / "chelsea.jpg").read_bytes())
    path.chmod(0)
    try:
        _refused(path, "permission denied")
    finally:
        path.chmod(0o644)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 40_000])  # 100 MP: warning band; 1.6 GP: hard error
def test_decompression_bomb_is_refused(tmp_path: Path, side: int) -> None:
    path = tmp_path / f"bomb{side}.png"
    path.write_bytes(_png_header_only(side, side))
    _refused(path, "decompression bomb")


def test_corrupt_exif_does_not_stop_decoding(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (5, 5, 5)).save(buf, "JPEG")
    data = buf.getvalue()
    junk = b"Exif\0\0" + b"MM\0\x2a\0\0\0\x08" + b"\xff" * 40  # IFD count that points nowhere
    app1 = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    path = tmp_path / "badexif.jpg"
    path.write_bytes(data[:2] + app1 + data[2:])
    assert min(load_rgb(path, 224).size) == 224
