"""The "no new validation warnings" check of the safe write, on both of its paths.

JPEGs with one image are validated as their metadata alone (cheap stubs); JPEGs with a
trailer after the main image, and other containers, are validated whole. Either way a
temp file whose metadata brings new `exiftool -validate` warnings must be refused.
"""

from __future__ import annotations

import io
from pathlib import Path

import piexif
import pytest
from PIL import Image

from tagd.metadata import MetadataWriter, WriteError
from tagd.metadata.containers import inspect
from tagd.metadata.containers import metadata_stub

# piexif packs IFD values at odd offsets: exiftool's validation counts a warning for each.
_EXIF = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Cam", piexif.ImageIFD.Model: b"Model X",
                             piexif.ImageIFD.Software: b"s"}})


def _jpeg(real_photo_dir: Path) -> bytes:
    out = io.BytesIO()
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        im.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def _with_exif(data: bytes) -> bytes:
    out = io.BytesIO()
    piexif.insert(_EXIF, data, out)
    return out.getvalue()


TRAILER = b"\xff\xd8\xff\xd9"  # a second (empty) image after the main one, as MPF previews sit


@pytest.mark.parametrize("trailer", [b"", TRAILER], ids=["single-image", "with-trailer"])
def test_new_validation_warnings_refused(writer: MetadataWriter, real_photo_dir: Path, tmp_path: Path, trailer: bytes) -> None:
    clean = _jpeg(real_photo_dir) + trailer
    warned = _with_exif(_jpeg(real_photo_dir)) + trailer
    original, temp = tmp_path / "a.jpg", tmp_path / "b.jpg"
    original.write_bytes(clean)
    temp.write_bytes(warned)
    before, after = inspect(clean, ".jpg"), inspect(warned, ".jpg")
    assert before.payload == after.payload  # only the metadata differs
    assert (metadata_stub(clean, before) is None) == bool(trailer)  # the path under test: stubs or whole files
    with pytest.raises(WriteError, match="would leave a new warning"):
        writer.safe._metadata_records(original, original, clean, warned, before, after, temp, "UTF8")
    # The other way round (the edit removes warnings) is fine, and so is no change at all.
    writer.safe._metadata_records(temp, temp, warned, clean, after, before, original, "UTF8")
    writer.safe._metadata_records(original, original, clean, clean, before, before, original, "UTF8")
    assert sorted(tmp_path.iterdir()) == [original, temp]  # the stubs live elsewhere and are gone


def _png_chunks(data: bytes) -> list[bytes]:
    import struct

    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kinds.append(data[pos + 4:pos + 8])
        pos += 12 + length
    return kinds


def test_png_stub_keeps_every_chunk_but_the_image_data_and_puts_it_back(real_photo_dir: Path) -> None:
    from tagd.metadata.containers import png_stub, png_unstub

    out = io.BytesIO()
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        im.save(out, "PNG", compress_level=1, exif=_EXIF)  # Pillow splits IDAT into 64 kB chunks
    data = out.getvalue()
    assert _png_chunks(data).count(b"IDAT") > 1
    stub, run = png_stub(data)
    assert _png_chunks(stub).count(b"IDAT") == 1 and len(stub) < 2000
    assert [k for k in _png_chunks(stub) if k != b"IDAT"] == [k for k in _png_chunks(data) if k != b"IDAT"]
    assert b"".join(png_unstub(stub, run)) == data
    assert inspect(stub, ".png").payload == b""
    with pytest.raises(Exception, match="placeholder"):
        png_unstub(data, run)  # no placeholder to fill


def test_png_whose_image_data_is_split_is_not_cut(real_photo_dir: Path) -> None:
    import struct
    import zlib

    from tagd.metadata.containers import StructureError, png_stub

    out = io.BytesIO()
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        im.save(out, "PNG", compress_level=1)
    data = out.getvalue()
    first_idat = data.find(b"IDAT") - 4
    second_idat = data.find(b"IDAT", first_idat + 8) - 4
    text = b"Comment\x00between"
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    split = data[:second_idat] + chunk + data[second_idat:]
    with pytest.raises(StructureError, match="not consecutive"):
        png_stub(split)


def test_jpeg_edit_stub_round_trip_and_refusals(real_photo_dir: Path) -> None:
    from tagd.metadata.containers import StructureError, jpeg_edit_stub, jpeg_unstub

    data = _with_exif(_jpeg(real_photo_dir))
    container = inspect(data, ".jpg")
    stub = inspect(jpeg_edit_stub(data, container), ".jpg")  # a JPEG exiftool will edit
    edited = jpeg_edit_stub(data, container)
    assert len(edited) < 2000 and stub.payload is not None and len(stub.payload) < 40
    assert b"".join(jpeg_unstub(edited, container.payload)) == data
    for broken in (edited[:-2], edited[:-2] + b"\x00\x00\xff\xd9", edited + b"\xff\xda\x00\x02\xff\xd9"):
        with pytest.raises(StructureError, match="changed after its metadata"):
            jpeg_unstub(broken, container.payload)


@pytest.mark.parametrize("trailer", [b"", TRAILER], ids=["single-image", "with-trailer"])
def test_jpeg_keywords_written_through_the_stub_or_whole(writer: MetadataWriter, real_photo_dir: Path, tmp_path: Path,
                                                         trailer: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single-image JPEG goes through exiftool as a stub; one with a trailer (MPF previews,
    whose offsets need the whole file) as a whole file. Either way only the keywords change."""
    import json
    import subprocess

    from tagd.metadata import KeywordUpdate
    from tagd.metadata import containers, safe_write as writer_mod

    unstubbed: list[int] = []
    real_unstub = containers.jpeg_unstub
    monkeypatch.setattr(writer_mod, "jpeg_unstub", lambda edited, payload: unstubbed.append(1) or real_unstub(edited, payload))
    photo = tmp_path / "p.jpg"
    original = _with_exif(_jpeg(real_photo_dir)) + trailer
    photo.write_bytes(original)
    writer.write(writer.read(photo), KeywordUpdate(keywords=["cat", "Lisboa 2023"], added=["cat"], model_version="t@1"))
    assert len(unstubbed) == (0 if trailer else 1)
    new = photo.read_bytes()
    assert inspect(new, ".jpg").payload == inspect(original, ".jpg").payload
    out = subprocess.run(["exiftool", "-j", "-XMP-dc:Subject", str(photo)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)[0]["Subject"] == ["cat", "Lisboa 2023"]
    assert sorted(tmp_path.iterdir()) == [photo]


def test_single_image_check_agrees_with_a_plain_search() -> None:
    """containers.single_image scans with numpy (no GIL held); it must say exactly what
    "the first 0xFFD9 is the last two bytes" says, on payloads full of 0xFF and 0xD9."""
    from hypothesis import given, settings, strategies as st

    from tagd.metadata.containers import Container, single_image

    @settings(max_examples=2000, deadline=None)
    @given(st.lists(st.sampled_from([0xFF, 0xD9, 0x00, 0xDA, 0x12]), min_size=2, max_size=40))
    def agree(body: list[int]) -> None:
        payload = bytes(body)
        assert single_image(Container("jpeg", [], payload)) == (payload.find(b"\xff\xd9") == len(payload) - 2)

    agree()


def test_jpeg_whose_metadata_holds_sos_bytes_goes_through_the_stub(writer: MetadataWriter, real_photo_dir: Path,
                                                                    tmp_path: Path) -> None:
    """Most camera JPEGs carry an EXIF thumbnail, itself a JPEG with its own start-of-scan
    marker; a comment (or an ICC profile, a digest) may hold the bytes FF DA too. The stub is
    cut where the segments say the scan starts, so these write, thumbnail intact."""
    import json
    import subprocess

    from tagd.metadata import KeywordUpdate

    thumb = tmp_path / "thumb.jpg"
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        im.convert("RGB").resize((160, 120)).save(thumb, quality=80)
    photo = tmp_path / "p.jpg"
    data = _jpeg(real_photo_dir)
    comment = b"note \xff\xda inside"
    photo.write_bytes(data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:])
    subprocess.run(["exiftool", "-q", "-overwrite_original", f"-ThumbnailImage<={thumb}", str(photo)], check=True)
    thumb.unlink()
    original = photo.read_bytes()
    head = original[: len(original) - len(inspect(original, ".jpg").payload)]
    assert head.count(b"\xff\xda") >= 2  # the comment's and the thumbnail's
    writer.write(writer.read(photo), KeywordUpdate(keywords=["cat"], added=["cat"], model_version="t@1"))
    new = photo.read_bytes()
    assert inspect(new, ".jpg").payload == inspect(original, ".jpg").payload
    read = subprocess.run(["exiftool", "-j", "-XMP-dc:Subject", "-File:Comment", str(photo)],
                          capture_output=True, text=True, check=True)
    record = json.loads(read.stdout)[0]
    assert record["Subject"] in ("cat", ["cat"]) and record["Comment"].endswith("inside")
    before = subprocess.run(["exiftool", "-b", "-ThumbnailImage", "-"], input=original, capture_output=True, check=True).stdout
    after = subprocess.run(["exiftool", "-b", "-ThumbnailImage", str(photo)], capture_output=True, check=True).stdout
    assert before == after and before[:2] == b"\xff\xd8"
    assert sorted(tmp_path.iterdir()) == [photo]
