"""A user's keywords come through tagd exactly as the user wrote them: hierarchies from digiKam,
Windows and Lightroom in every field that had them, keywords holding a field's own separator,
and any text at all, written twice byte-identically and reverted exactly. exiftool and exiv2
(libexiv2, through pyexiv2) are the oracles."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metadata_oracles import as_list, exiftool_keywords, exiftool_write, exiv2_keywords
from tagd.metadata import KeywordUpdate, MetadataWriter

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")

TAGD = {"umbrella": "umbrella", "person": "person", "cat": "animal|cat", "café": "drink|café"}


def tagd_writes(writer: MetadataWriter, path: Path, added: list[str] = ["umbrella", "person"]):  # noqa: B006
    current = writer.read(path)
    update = KeywordUpdate(keywords=list(dict.fromkeys([*current.keywords, *added])), hierarchy={k: TAGD[k] for k in added},
                           machine_tags={k: 0.9 for k in added}, added=list(added), model_version="test@000000000000")
    return writer.write(current, update)


def keyword_fields(path: Path) -> tuple[dict, dict]:
    """Every keyword field as exiftool and as exiv2 read it (the digests included)."""
    got = exiftool_keywords(path)
    got.pop("SourceFile", None)
    return got, exiv2_keywords(path)


@pytest.fixture
def photo(jpeg: Path) -> Path:
    return jpeg


def test_digikam_hierarchy_without_lightroom_field_is_kept(writer, photo: Path) -> None:
    """digiKam's TagsList People/Anna with dc:subject Anna, no lr:hierarchicalSubject: TagsList
    keeps People/Anna (it became "Anna"), and Lightroom's new field gets the same path."""
    exiftool_write(photo, "-XMP-digiKam:TagsList=People/Anna", "-XMP-dc:Subject=Anna")
    before = keyword_fields(photo)
    tagd_writes(writer, photo)
    got, exiv2 = keyword_fields(photo)
    assert as_list(got["XMP-digiKam:TagsList"]) == exiv2["tagslist"] == ["People/Anna", "umbrella", "person"]
    assert as_list(got["XMP-lr:HierarchicalSubject"]) == ["People|Anna", "umbrella", "person"]
    assert as_list(got["XMP-dc:Subject"]) == exiv2["subject"] == ["Anna", "umbrella", "person"]
    writer.revert(photo)
    assert keyword_fields(photo) == before


def test_windows_hierarchy_is_kept(writer, photo: Path) -> None:
    exiftool_write(photo, "-XMP-microsoft:LastKeywordXMP=People/Anna", "-XMP-dc:Subject=Anna")
    before = keyword_fields(photo)
    tagd_writes(writer, photo)
    got, exiv2 = keyword_fields(photo)
    assert as_list(got["XMP-microsoft:LastKeywordXMP"]) == ["People/Anna", "umbrella", "person"]
    assert exiv2["lastkeywordxmp"] == ["People/Anna", "umbrella", "person"]
    writer.revert(photo)
    assert keyword_fields(photo) == before


def test_a_parent_in_a_path_gets_no_flat_entry(writer, photo: Path) -> None:
    """dc:subject Pets, Mittens (Lightroom writes every level there) and the hierarchy Pets|Mittens:
    "Pets" is already named by the path; no flat "Pets" is added to either hierarchy field."""
    exiftool_write(photo, "-XMP-dc:Subject=Pets", "-XMP-dc:Subject=Mittens", "-XMP-lr:HierarchicalSubject=Pets|Mittens",
                   "-XMP-digiKam:TagsList=Pets/Mittens")
    before = keyword_fields(photo)
    tagd_writes(writer, photo, ["cat"])
    got, exiv2 = keyword_fields(photo)
    assert as_list(got["XMP-lr:HierarchicalSubject"]) == exiv2["hierarchical"] == ["Pets|Mittens", "animal|cat"]
    assert as_list(got["XMP-digiKam:TagsList"]) == exiv2["tagslist"] == ["Pets/Mittens", "animal/cat"]
    assert as_list(got["XMP-dc:Subject"]) == ["Pets", "Mittens", "cat"]
    writer.revert(photo)
    assert keyword_fields(photo) == before


def test_a_keyword_holding_a_separator_is_stable_and_reverts_exactly(writer, photo: Path) -> None:
    """"Family|Anna" in dc:subject is one keyword; written into lr:hierarchicalSubject it would read
    back as the path Family > Anna (and bring a keyword "Anna"). The second write changes
    nothing, and revert leaves no field that was not there."""
    exiftool_write(photo, "-XMP-dc:Subject=Holiday", "-XMP-dc:Subject=Family|Anna", "-IPTC:Keywords=Holiday",
                   "-IPTC:Keywords=Family|Anna", "-XPKeywords=Holiday;Family|Anna")
    before = keyword_fields(photo)
    assert tagd_writes(writer, photo).changed
    first = photo.read_bytes()
    assert writer.read(photo).keywords == ["Holiday", "Family|Anna", "umbrella", "person"]
    assert not tagd_writes(writer, photo).changed and photo.read_bytes() == first
    writer.revert(photo)
    assert keyword_fields(photo) == before


# Keyword text as people type it: separators of every field, commas, quotes, accents, CJK,
# emoji, long ones (IPTC keeps 64 bytes); single-line and trimmed, as tagd keeps keywords.
_CHARS = st.sampled_from(list("abcXYZ019 |/;,.-_'\"&<>éßø日本🐱"))
KEYWORD = st.text(_CHARS, min_size=1, max_size=70).map(str.strip).filter(bool)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keywords=st.lists(KEYWORD, min_size=1, max_size=4, unique=True),
       fields=st.sets(st.sampled_from(["lr", "digikam", "iptc", "xp"])))
def test_any_keyword_text_is_written_stably_and_reverted_exactly(writer, real_photo_dir: Path, tmp_path_factory,
                                                                 keywords: list[str], fields: set[str]) -> None:
    path = tmp_path_factory.mktemp("kw") / "photo.jpg"
    shutil.copy(real_photo_dir / "chelsea.jpg", path)
    args = [f"-XMP-dc:Subject={k}" for k in keywords]
    if "lr" in fields:
        args += [f"-XMP-lr:HierarchicalSubject={k}" for k in keywords if "|" not in k]
    if "digikam" in fields:
        args += [f"-XMP-digiKam:TagsList={k}" for k in keywords if "/" not in k]
    if "iptc" in fields:
        args += ["-IPTC:CodedCharacterSet=UTF8", *(f"-IPTC:Keywords={k}" for k in keywords)]
    if "xp" in fields and not any(";" in k for k in keywords):
        args.append("-XPKeywords=" + ";".join(keywords))
    exiftool_write(path, *args)
    before = keyword_fields(path)
    users = writer.read(path).keywords
    assert tagd_writes(writer, path).changed
    first = path.read_bytes()
    assert writer.read(path).keywords == [*users, "umbrella", "person"]
    assert not tagd_writes(writer, path).changed and path.read_bytes() == first
    writer.revert(path)
    assert keyword_fields(path) == before


def _iptc_segment(*records: tuple[int, int, bytes]) -> bytes:
    """An APP13 Photoshop IRB holding these raw IPTC records, byte for byte as a camera wrote them."""
    import struct

    iptc = b"".join(b"\x1c" + bytes([r, t]) + struct.pack(">H", len(v)) + v for r, t, v in records)
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    body = b"Photoshop 3.0\x00" + resource + (b"\x00" if len(iptc) % 2 else b"")
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


@pytest.mark.parametrize("charset", ["ascii", "latin", "declared"])
def test_camera_iptc_times_are_never_rewritten(writer, photo: Path, charset: str) -> None:
    """Cameras and old tools write IPTC times without a zone ("120000", "1200"). Copying every IPTC
    value (exiftool's -tagsFromFile @ -IPTC:all) would rewrite them as "12:00:00+00:00", and the
    photo was refused. Now only the text that needs another charset is touched: the photo is
    written in the file, its times byte-identical, and revert gives the block back exactly."""
    from tagd.metadata.containers import inspect

    city = {"ascii": b"Zurich", "latin": "Zürich".encode("latin-1"), "declared": "Zürich".encode()}[charset]
    records = [(2, 0, b"\x00\x04"), (2, 25, b"old"), (2, 55, b"20210704"), (2, 60, b"120000"), (2, 62, b"20210704"),
               (2, 63, b"1200"), (2, 90, city)]
    if charset == "declared":
        records.insert(0, (1, 90, b"\x1b%G"))
    data = photo.read_bytes()
    photo.write_bytes(data[:2] + _iptc_segment(*records) + data[2:])
    before = exiftool_keywords(photo)  # (exiv2 cannot read undeclared Latin IPTC at all)
    outcome = tagd_writes(writer, photo, ["café"])  # a keyword that is not ASCII
    assert outcome.target == photo and outcome.sidecar_reason is None
    new = photo.read_bytes()
    for raw in (b"\x1c\x02\x3c\x00\x06120000", b"\x1c\x02\x3f\x00\x041200"):
        assert raw in new, "an IPTC time was rewritten"
    assert as_list(exiftool_keywords(photo)["IPTC:Keywords"]) == ["old", "café"]
    assert exiv2_keywords(photo)["iptc"] == ["old", "café"]
    writer.revert(photo)
    assert exiftool_keywords(photo) == before
    segment = lambda d: next(d[s.start:s.end] for s in inspect(d, ".jpg").segments if s.marker == 0xED)  # noqa: E731
    assert segment(photo.read_bytes()) == segment(data[:2] + _iptc_segment(*records) + data[2:])


def test_xmp_too_large_for_one_segment_goes_on_in_extended_xmp(writer, photo: Path) -> None:
    """A packet near JPEG's 64 KB limit (Lightroom's local corrections, 57 KB in coco128's 597):
    with tagd's keywords and provenance it no longer fits one segment, so exiftool moves its
    largest property into Extended XMP. That is written, every property kept, and the keywords
    stay where exiv2, which reads no Extended XMP, finds them."""
    from tagd.metadata.containers import XMP_EXTENSION_HEADER

    big = "x" * 64_500  # fits, just: 65,155 bytes of 65,533
    exiftool_write(photo, "-XMP-dc:Subject=Kenya", f"-XMP-dc:Description={big}")
    before = keyword_fields(photo)
    outcome = tagd_writes(writer, photo)
    assert outcome.target == photo and outcome.sidecar_reason is None
    assert XMP_EXTENSION_HEADER in photo.read_bytes()
    got = exiftool_keywords(photo)
    assert as_list(got["XMP-dc:Subject"]) == exiv2_keywords(photo)["subject"] == ["Kenya", "umbrella", "person"]
    from metadata_oracles import exiftool_json
    assert exiftool_json(photo, "-XMP-dc:Description")["XMP-dc:Description"] == big
    writer.revert(photo)
    assert keyword_fields(photo) == before
