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


def _gif_header_only(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)  # no colour table
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + image + b"\x3b"


def _jpeg_claiming(real: Path, width: int, height: int, progressive: bool) -> bytes:
    """A small real JPEG whose frame header (SOF0 or SOF2) claims `width` x `height`."""
    buf = io.BytesIO()
    with Image.open(real) as im:
        im.save(buf, "JPEG", quality=50, progressive=progressive)
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("kind", ["png-100MP", "png-1.6GP", "gif", "progressive-jpeg"])
def test_decompression_bomb_is_refused(tmp_path: Path, real_photo_dir: Path, kind: str) -> None:
    """A header that claims more pixels than decoding may allocate is refused before any is,
    with a reason that says what to raise, not that someone attacked."""
    path, data = {
        "png-100MP": (tmp_path / "bomb.png", _png_header_only(10_000, 10_000)),
        "png-1.6GP": (tmp_path / "bomb.png", _png_header_only(40_000, 40_000)),
        "gif": (tmp_path / "bomb.gif", _gif_header_only(65_535, 65_535)),
        # libjpeg holds a progressive JPEG's coefficients at full size: 60000 x 60000 would be 10 GB
        "progressive-jpeg": (tmp_path / "bomb.jpg", _jpeg_claiming(real_photo_dir / "chelsea.jpg", 60_000, 60_000, True)),
    }[kind]
    path.write_bytes(data)
    reason = _refused(path, "more than model.max_decode_pixels (89,478,485 = 89 MP) allows; raise it to tag such photos")
    assert "attack" not in reason and "bomb" not in reason
    if kind == "progressive-jpeg":
        assert reason.startswith("image is 60000×60000 = 3600 MP (a progressive JPEG is held whole while decoding)")


CAMERA_SIZES = [(11648, 8736), (12000, 8000), (25000, 4000)]  # GFX100 frame, 96 MP, a panorama


@pytest.fixture(scope="module")
def camera_jpegs(real_photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photos at the sizes of 96-102 MP cameras, baseline JPEG as cameras write them (small
    files at low quality), one of them as MPO (a JPEG with a preview image, as many cameras
    write), and one progressive."""
    folder = tmp_path_factory.mktemp("camera")
    photos: dict[str, Path] = {}
    with Image.open(real_photo_dir / "chelsea.jpg") as cat:
        for width, height in CAMERA_SIZES:
            photos[f"{width}x{height}"] = folder / f"{width}x{height}.jpg"
            cat.resize((width, height)).save(photos[f"{width}x{height}"], quality=10)
        big = cat.resize((12000, 8000))
        photos["mpo"] = folder / "mpo.jpg"
        big.save(photos["mpo"], "MPO", save_all=True, append_images=[cat.resize((1600, 1064))], quality=10)
        photos["progressive"] = folder / "progressive.jpg"
        big.save(photos["progressive"], quality=10, progressive=True)
    return photos


@pytest.mark.parametrize("size", [f"{w}x{h}" for w, h in CAMERA_SIZES] + ["mpo"])
def test_camera_sized_jpegs_decode_at_draft_size(camera_jpegs: dict[str, Path], size: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """96-102 MP camera JPEGs were refused as decompression bombs; draft mode decodes them at
    1/8 of each side (1.5 MP), and that is what the limit counts."""
    path = camera_jpegs[size]
    seen: list[tuple[int, int]] = []
    real_load = JpegImagePlugin.JpegImageFile.load

    def spy(self):  # noqa: ANN001, ANN202 - the size libjpeg actually decodes to
        seen.append(self.size)
        return real_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    with Image.open(path) as im:
        width, height = im.size
    im = load_rgb(path, 224)
    assert min(im.size) == 224 and seen[0] == (width // 8, height // 8), seen


def test_the_limit_counts_decoded_pixels(camera_jpegs: dict[str, Path]) -> None:
    path = camera_jpegs["12000x8000"]
    assert min(load_rgb(path, 224, max_pixels=1_500_000).size) == 224  # decoded at 1500 x 1000
    reason = _refused_with(path, 1_000_000)
    assert reason == ("image is 12000×8000 = 96 MP, decoded at 1500×1000 = 1.5 MP, more than model.max_decode_pixels "
                      "(1,000,000 = 1.0 MP) allows; raise it to tag such photos")
    # A progressive JPEG is held whole while decoding (a PNG, TIFF, WebP too): its full size counts.
    progressive = camera_jpegs["progressive"]
    assert "(a progressive JPEG is held whole while decoding)" in _refused_with(progressive, 89_478_485)
    assert min(load_rgb(progressive, 224, max_pixels=96_000_000).size) == 224


def _refused_with(path: Path, max_pixels: int) -> str:
    with pytest.raises(ReadError) as info:
        load_rgb(path, 224, max_pixels=max_pixels)
    return info.value.reason


def test_tag_takes_camera_photos_and_the_limit_from_the_config(camera_jpegs: dict[str, Path], tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    paths = [str(camera_jpegs[f"{w}x{h}"]) for w, h in CAMERA_SIZES] + [str(camera_jpegs["progressive"])]

    def tag(*args: str) -> dict[str, dict]:
        proc = subprocess.run([sys.executable, "-m", "tagd", *args, "tag", "--json", *paths],
                              capture_output=True, text=True, timeout=300)
        return {Path(r["path"]).stem: r for r in map(json.loads, proc.stdout.splitlines())}

    rows = tag()
    assert [rows[f"{w}x{h}"]["error"] for w, h in CAMERA_SIZES] == [None, None, None]
    assert "cat" in [t["name"] for t in rows["12000x8000"]["tags"]]
    assert "raise it to tag such photos" in rows["progressive"]["error"]
    config = tmp_path / "config.toml"
    config.write_text("[model]\nmax_decode_pixels = 100_000_000\n")
    assert tag("--config", str(config))["progressive"]["error"] is None


def test_corrupt_exif_does_not_stop_decoding(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (5, 5, 5)).save(buf, "JPEG")
    data = buf.getvalue()
    junk = b"Exif\0\0" + b"MM\0\x2a\0\0\0\x08" + b"\xff" * 40  # IFD count that points nowhere
    app1 = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    path = tmp_path / "badexif.jpg"
    path.write_bytes(data[:2] + app1 + data[2:])
    assert min(load_rgb(path, 224).size) == 224
