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
from tagd.metadata.writer import _single_image

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
    assert _single_image(before.payload) == (not trailer)  # the path under test: stubs or whole files
    with pytest.raises(WriteError, match="new validation warnings"):
        writer._metadata_records(original, clean, warned, before, after, temp)
    # The other way round (the edit removes warnings) is fine, and so is no change at all.
    writer._metadata_records(temp, warned, clean, after, before, original)
    writer._metadata_records(original, clean, clean, before, before, original)
    assert sorted(tmp_path.iterdir()) == [original, temp]  # the stubs live elsewhere and are gone
