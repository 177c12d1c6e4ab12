"""Writing keywords: read back by independent readers, nothing else changed, every format."""

from __future__ import annotations

import os
import zlib
import shutil
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image

from conftest import temp_files
from metadata_oracles import (
    as_list, exiftool_json, exiftool_keywords, exiftool_write, exiv2_keywords, full_metadata,
    scan_data, validate,
)
from tagd.metadata import KeywordUpdate, MetadataWriter, WriteOptions

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")

KEYWORDS = ["animal", "cat", "café", "Straße", "日本", "🐱 emoji", "Lisbon 2023"]
HIERARCHY = {"cat": "animal|cat"}
KEYWORD_FIELDS = {
    "XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList", "XMP-microsoft:LastKeywordXMP",
    "IPTC:Keywords", "IFD0:XPKeywords", "Photoshop:IPTCDigest", "IPTC:CodedCharacterSet", "XMP-x:XMPToolkit",
    "RIFF:WebP_Flags", "IPTC:EnvelopeRecordVersion",
}


def update(keywords: list[str] = KEYWORDS, **extra) -> KeywordUpdate:
    return KeywordUpdate(keywords=keywords, hierarchy=HIERARCHY, machine_tags={"cat": 0.93, "animal": 0.97},
                         added=["animal", "cat"], model_version="test@000000000000", **extra)


def write(writer: MetadataWriter, path: Path, upd: KeywordUpdate | None = None):
    return writer.write(writer.read(path), upd or update())


def _variant(real_photo_dir: Path, tmp_path: Path, suffix: str) -> Path:
    path = tmp_path / f"cat{suffix}"
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        if suffix == ".jpg":
            path.write_bytes((real_photo_dir / "chelsea.jpg").read_bytes())
        else:
            im.save(path)
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_keywords_read_back_identically_by_exiftool_and_exiv2(writer, real_photo_dir: Path, tmp_path: Path, suffix: str) -> None:
    path = _variant(real_photo_dir, tmp_path, suffix)
    warnings_before = validate(path)
    meta_before = full_metadata(path)
    outcome = write(writer, path)
    assert outcome.changed and outcome.target == path
    got = exiftool_keywords(path)
    assert as_list(got["XMP-dc:Subject"]) == KEYWORDS
    assert as_list(got["XMP-lr:HierarchicalSubject"]) == ["animal|cat", *KEYWORDS[2:]]
    exiv2 = exiv2_keywords(path)
    assert exiv2["subject"] == KEYWORDS
    assert exiv2["hierarchical"] == ["animal|cat", *KEYWORDS[2:]]
    assert validate(path) == warnings_before  # no new warnings
    meta_after = full_metadata(path)
    changed = {k for k in set(meta_before) | set(meta_after)
               if meta_before.get(k) != meta_after.get(k) and not k.startswith(("XMP-tagd:", "Composite:"))
               and not k.endswith(("Offset", "Offsets"))}
    assert changed <= KEYWORD_FIELDS | {"SourceFile"}, changed
    assert temp_files(tmp_path) == []


def test_jpeg_scan_data_and_jfif_untouched(writer, jpeg: Path) -> None:
    before = scan_data(jpeg)
    jfif_before = exiftool_json(jpeg, "-JFIF:all")
    write(writer, jpeg)
    assert scan_data(jpeg) == before and len(before) > 1000
    assert exiftool_json(jpeg, "-JFIF:all") == {**jfif_before, "SourceFile": str(jpeg)}


def _nikon_jpeg(path: Path) -> bytes:
    """A JPEG with a camera-style Nikon type-3 maker note (own TIFF header, three entries)."""
    entries = [(0x0001, 7, 4, b"0210"), (0x0002, 3, 2, b"\x00\x00\xc8\x00"), (0x0004, 2, 5, b"FINE\x00")]
    ifd = len(entries).to_bytes(2, "little")
    data_area = b""
    data_offset = 8 + 2 + 12 * len(entries) + 4
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            ifd += tag.to_bytes(2, "little") + typ.to_bytes(2, "little") + count.to_bytes(4, "little") + value.ljust(4, b"\x00")
        else:
            ifd += tag.to_bytes(2, "little") + typ.to_bytes(2, "little") + count.to_bytes(4, "little") + (data_offset + len(data_area)).to_bytes(4, "little")
            data_area += value + (b"\x00" if len(value) % 2 else b"")
    ifd += b"\x00\x00\x00\x00"
    maker_note = b"Nikon\x00\x02\x10\x00\x00" + b"II*\x00\x08\x00\x00\x00" + ifd + data_area
    exif = piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"NIKON CORPORATION", piexif.ImageIFD.Model: b"NIKON D750"},
        "Exif": {piexif.ExifIFD.MakerNote: maker_note, piexif.ExifIFD.DateTimeOriginal: b"2023:06:01 10:00:00"},
    })
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path, quality=90, exif=exif)
    return maker_note


def test_maker_notes_survive(writer, tmp_path: Path) -> None:
    path = tmp_path / "nikon.jpg"
    _nikon_jpeg(path)
    before = exiftool_json(path, "-MakerNotes:all", "-n")
    raw_before = exiftool_json(path, "-b", "-EXIF:MakerNoteNikon", "-MakerNotes")
    assert any(k.startswith("Nikon:") for k in before), before  # exiftool understands it as Nikon
    write(writer, path)
    assert exiftool_json(path, "-MakerNotes:all", "-n") == before
    assert exiftool_json(path, "-b", "-EXIF:MakerNoteNikon", "-MakerNotes") == raw_before


@pytest.fixture
def all_fields_jpeg(jpeg: Path) -> Path:
    """Every keyword field present, as digiKam + Windows + an IPTC editor would leave them."""
    exiftool_write(
        jpeg, "-XMP-dc:Subject=old", "-XMP-lr:HierarchicalSubject=Places|old", "-XMP-digiKam:TagsList=Places/old",
        "-XMP-microsoft:LastKeywordXMP=old", "-IPTC:Keywords=old", "-IPTC:CodedCharacterSet=UTF8",
        "-IFD0:XPKeywords=old", "-IPTC:City=Lisboa",
    )
    return jpeg


def test_non_ascii_round_trips_in_every_field(writer, all_fields_jpeg: Path) -> None:
    cur = writer.read(all_fields_jpeg)
    assert cur.keywords == ["old"]
    final = ["old", *KEYWORDS]
    writer.write(cur, update(final))
    got = exiftool_keywords(all_fields_jpeg)
    assert as_list(got["XMP-dc:Subject"]) == final
    assert as_list(got["XMP-microsoft:LastKeywordXMP"]) == final
    assert as_list(got["IPTC:Keywords"]) == final
    # exiftool 12.57 shows characters outside the BMP in XPKeywords as "?" (it decodes UCS-2);
    # the bytes are proper UTF-16LE, which libexiv2 (below) and Windows read back exactly.
    assert str(got["IFD0:XPKeywords"]).split(";")[:-2] == final[:-2]
    assert as_list(got["XMP-lr:HierarchicalSubject"]) == ["Places|old", "animal|cat", *KEYWORDS[2:]]
    assert as_list(got["XMP-digiKam:TagsList"]) == ["Places/old", "animal/cat", *KEYWORDS[2:]]
    assert got["Photoshop:IPTCDigest"] == got["File:CurrentIPTCDigest"]
    assert as_list(got["MWG:Keywords"]) == final  # exiftool's own MWG reading agrees
    assert exiftool_json(all_fields_jpeg, "-IPTC:City")["IPTC:City"] == "Lisboa"  # other IPTC kept
    exiv2 = exiv2_keywords(all_fields_jpeg)
    for field in ("subject", "lastkeywordxmp", "iptc", "xpkeywords"):
        assert exiv2[field] == final, field


def test_iptc_truncated_on_character_boundary_xmp_keeps_full_text(writer, all_fields_jpeg: Path) -> None:
    long = "Ünïcödé " * 6 + "日本語のキーワード"  # > 64 bytes in UTF-8
    assert len(long.encode()) > 64
    writer.write(writer.read(all_fields_jpeg), update(["old", long]))
    got = exiftool_keywords(all_fields_jpeg)
    assert long in as_list(got["XMP-dc:Subject"])
    iptc = as_list(got["IPTC:Keywords"])
    cut = iptc[1]
    assert len(cut.encode("utf-8")) <= 64 and long.startswith(cut) and cut != long
    assert writer.read(all_fields_jpeg).keywords == ["old", long]  # MWG reads the full XMP text


def test_writing_twice_is_byte_identical(writer, jpeg: Path) -> None:
    assert write(writer, jpeg).changed
    first = jpeg.read_bytes()
    second = write(writer, jpeg)
    assert not second.changed
    assert jpeg.read_bytes() == first


def test_mode_xattrs_and_mtime_policy(jpeg: Path, tmp_path: Path) -> None:
    os.chmod(jpeg, 0o640)
    os.setxattr(jpeg, "user.origin", b"phone-sync")
    os.utime(jpeg, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    inode = jpeg.stat().st_ino
    preserving = MetadataWriter(options=WriteOptions(mtime="preserve"))
    try:
        preserving.write(preserving.read(jpeg), update())
    finally:
        preserving.exiftool.close()
    st = jpeg.stat()
    assert st.st_mode & 0o777 == 0o640
    assert os.getxattr(jpeg, "user.origin") == b"phone-sync"
    assert st.st_mtime_ns == 1_600_000_000_000_000_000
    assert st.st_ino != inode  # replaced atomically, not rewritten in place


def test_mtime_updated_by_default(writer, jpeg: Path) -> None:
    os.utime(jpeg, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    write(writer, jpeg)
    assert jpeg.stat().st_mtime_ns > 1_600_000_000_000_000_000


def test_symlink_target_is_written_and_link_kept(writer, jpeg: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.jpg"
    link.symlink_to(jpeg)
    write(writer, link)
    assert link.is_symlink()
    assert as_list(exiftool_keywords(jpeg)["XMP-dc:Subject"]) == KEYWORDS


# ---- sidecars ---------------------------------------------------------------------------------

def _raw_stand_in(real_photo_dir: Path, tmp_path: Path, name: str = "IMG_0001.DNG") -> Path:
    """A TIFF-based file with a RAW suffix: tagd must never write into it."""
    path = tmp_path / name
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        im.save(path, format="TIFF")
    return path


def test_raw_gets_a_sidecar_and_stays_byte_identical(writer, real_photo_dir: Path, tmp_path: Path) -> None:
    raw = _raw_stand_in(real_photo_dir, tmp_path)
    before = raw.read_bytes()
    outcome = write(writer, raw)
    sidecar = tmp_path / "IMG_0001.DNG.xmp"
    assert outcome.target == sidecar and sidecar.is_file()
    assert raw.read_bytes() == before
    assert as_list(exiftool_keywords(sidecar)["XMP-dc:Subject"]) == KEYWORDS
    assert exiv2_keywords(sidecar)["subject"] == KEYWORDS
    assert writer.read(raw).keywords == KEYWORDS
    assert temp_files(tmp_path) == []


def test_existing_sidecar_merged_unknown_namespaces_kept(writer, real_photo_dir: Path, tmp_path: Path) -> None:
    raw = _raw_stand_in(real_photo_dir, tmp_path, "IMG_0002.CR2")
    sidecar = tmp_path / "IMG_0002.xmp"  # Adobe-style name, already there
    sidecar.write_text(
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' darktable:history_end="3" darktable:xmp_version="5">'
        '<dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>'
        '</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>', encoding="utf-8")
    cur = writer.read(raw)
    assert cur.target == sidecar and cur.keywords == ["holiday"]
    writer.write(cur, update(["holiday", *KEYWORDS]))
    got = exiftool_json(sidecar, "-XMP-darktable:all", "-XMP-dc:Subject")
    assert got["XMP-darktable:History_end"] == "3" and got["XMP-darktable:Xmp_version"] == "5"
    assert as_list(got["XMP-dc:Subject"]) == ["holiday", *KEYWORDS]
    assert not (tmp_path / "IMG_0002.CR2.xmp").exists()


def test_sidecar_naming_stem(real_photo_dir: Path, tmp_path: Path) -> None:
    raw = _raw_stand_in(real_photo_dir, tmp_path, "IMG_0003.NEF")
    w = MetadataWriter(options=WriteOptions(sidecar_naming="stem"))
    try:
        assert w.write(w.read(raw), update()).target == tmp_path / "IMG_0003.xmp"
    finally:
        w.exiftool.close()


def test_sidecar_only_mode_leaves_a_jpeg_untouched(jpeg: Path, tmp_path: Path) -> None:
    exiftool_write(jpeg, "-XMP-dc:Subject=mine")
    before = jpeg.read_bytes()
    w = MetadataWriter(options=WriteOptions(sidecar="always"))
    try:
        cur = w.read(jpeg)
        assert cur.keywords == ["mine"] and cur.in_sidecar
        outcome = w.write(cur, update(["mine", *KEYWORDS]))
    finally:
        w.exiftool.close()
    assert jpeg.read_bytes() == before
    assert outcome.target == tmp_path / "cat.jpg.xmp"
    assert as_list(exiftool_keywords(outcome.target)["XMP-dc:Subject"]) == ["mine", *KEYWORDS]


@pytest.mark.parametrize("charset", ["Latin", "UTF8"])
def test_iptc_that_does_not_declare_its_charset_keeps_its_text(writer, real_photo_dir: Path, tmp_path: Path,
                                                               charset: str) -> None:
    """Old tools wrote IPTC in Latin-1, some newer ones in UTF-8, neither saying which (no 1:90).
    Both must come through a write and a revert as the same text: not "Caf?" and not "CafÃ©"."""
    import subprocess

    path = tmp_path / "iptc.jpg"
    shutil.copy(real_photo_dir / "chelsea.jpg", path)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-charset", f"iptc={charset}", "-IPTC:Keywords=Café",
                    "-IPTC:Keywords=Müller", "-IPTC:City=Zürich", str(path)], check=True, timeout=60)
    raw = path.read_bytes()
    assert ("Caf\xe9".encode("latin-1") if charset == "Latin" else "Café".encode()) in raw
    assert "IPTC:CodedCharacterSet" not in exiftool_json(path, "-IPTC:CodedCharacterSet")
    digests = exiftool_json(path, "-Photoshop:IPTCDigest", "-File:CurrentIPTCDigest")

    current = writer.read(path)
    assert current.keywords == ["Café", "Müller"]
    write(writer, path, update(["Café", "Müller", "cat"]))
    got = exiftool_keywords(path)
    assert got["IPTC:CodedCharacterSet"] == "UTF8"  # now declared, so every reader agrees
    assert as_list(got["IPTC:Keywords"]) == as_list(got["XMP-dc:Subject"]) == ["Café", "Müller", "cat"]
    assert exiv2_keywords(path)["iptc"] == ["Café", "Müller", "cat"]
    assert exiftool_json(path, "-IPTC:City")["IPTC:City"] == "Zürich"  # the rest of the IPTC, re-encoded

    writer.revert(path)
    back = exiftool_json(path, "-charset", f"iptc={charset}", "-IPTC:Keywords", "-IPTC:City")
    assert as_list(back["IPTC:Keywords"]) == ["Café", "Müller"] and back["IPTC:City"] == "Zürich"
    assert path.read_bytes().count("Caf\xe9".encode("latin-1") if charset == "Latin" else "Café".encode()) == 1
    # ... and undeclared again, in its own bytes: the same IPTC block, the same digest.
    assert "IPTC:CodedCharacterSet" not in exiftool_json(path, "-IPTC:CodedCharacterSet")
    assert exiftool_json(path, "-Photoshop:IPTCDigest", "-File:CurrentIPTCDigest") | {"SourceFile": ""} == \
        digests | {"SourceFile": ""}


NONSTANDARD_XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
    'A cat on a mat</rdf:li></rdf:Alt></dc:description><dc:subject><rdf:Bag/></dc:subject>'
    '</rdf:Description></rdf:RDF></x:xmpmeta>'
)


def _with_segments(data: bytes, *bodies: bytes) -> bytes:
    return data[:2] + b"".join(b"\xff\xe1" + (len(b) + 2).to_bytes(2, "big") + b for b in bodies) + data[2:]


def _xmp_segments(data: bytes) -> list[bytes]:
    """Every APP1 segment body that is (or holds) XMP, in file order."""
    from tagd.metadata.containers import inspect, xmp_kind

    container = inspect(data, ".jpg")
    return [data[s.body_start:s.end] for s in container.segments if s.marker == 0xE1 and xmp_kind(data, s)]


def test_xmp_with_a_nonstandard_header_is_folded_and_given_back(writer, real_photo_dir: Path, tmp_path: Path) -> None:
    """About one Flickr photo in ten (15 of coco128's 128) carries its XMP behind "XMP\\0://ns.adobe.com/
    xap/1.0/\\0", with an empty dc:subject bag and no xpacket wrapper: exiftool reads it, exiv2 does
    not. tagd writes one standard packet with it folded in (both readers then agree) and keeps
    the original segment for revert, which gives the file's XMP back byte for byte."""
    from tagd.metadata.containers import STASH_NONSTANDARD_HEADER, XMP_JPEG_HEADER, XMP_NONSTANDARD_HEADER

    path = tmp_path / "flickr.jpg"
    path.write_bytes(_with_segments((real_photo_dir / "chelsea.jpg").read_bytes(),
                                    XMP_NONSTANDARD_HEADER + NONSTANDARD_XMP.encode()))
    original = path.read_bytes()
    assert writer.read(path).keywords == []  # the empty bag is no keyword, not ""
    assert "subject" not in exiv2_keywords(path)

    outcome = write(writer, path, update(["cat", "animal"]))
    assert outcome.changed
    new = path.read_bytes()
    assert new.count(XMP_JPEG_HEADER) == 1 and XMP_NONSTANDARD_HEADER not in new
    assert new.count(STASH_NONSTANDARD_HEADER + zlib.compress(NONSTANDARD_XMP.encode(), 9)) == 1  # kept, deflated
    got = exiftool_json(path, "-XMP-dc:all", "-ExifTool:Warning")
    assert as_list(got["XMP-dc:Subject"]) == ["cat", "animal"]
    assert got["XMP-dc:Description"] == "A cat on a mat"  # the rest of the packet kept
    assert "ExifTool:Warning" not in got or "non-standard" not in str(got["ExifTool:Warning"]).lower()
    assert exiv2_keywords(path)["subject"] == ["cat", "animal"]
    assert scan_data(path) == scan_data(real_photo_dir / "chelsea.jpg")
    assert not write(writer, path, update(["cat", "animal"])).changed  # stable

    writer.revert(path)
    assert _xmp_segments(path.read_bytes()) == _xmp_segments(original)
    assert "subject" not in exiv2_keywords(path)
    assert exiftool_keywords(path) | {"SourceFile": ""} == exiftool_keywords_of(original, tmp_path)


def exiftool_keywords_of(data: bytes, tmp_path: Path) -> dict:
    copy = tmp_path / "copy-of-original.jpg"
    copy.write_bytes(data)
    return exiftool_keywords(copy) | {"SourceFile": ""}


def test_a_legacy_packet_beside_a_standard_one_is_merged_without_losing_a_keyword(
        writer, real_photo_dir: Path, tmp_path: Path) -> None:
    """A user added "rufus" with exiftool to a Flickr photo whose keywords sit in a legacy packet:
    exiftool wrote a second, standard packet, so exiv2 shows only "rufus" and exiftool only
    the old keywords. Both are the user's: tagd writes one packet with all of them (and the
    legacy packet's other properties), and revert gives back both packets as they were."""
    from tagd.metadata.containers import XMP_JPEG_HEADER, XMP_NONSTANDARD_HEADER

    legacy = NONSTANDARD_XMP.replace("<dc:subject><rdf:Bag/></dc:subject>",
                                     "<dc:subject><rdf:Bag><rdf:li>dog</rdf:li><rdf:li>teddy bear</rdf:li></rdf:Bag></dc:subject>")
    path = tmp_path / "flickr.jpg"
    path.write_bytes(_with_segments((real_photo_dir / "chelsea.jpg").read_bytes(), XMP_NONSTANDARD_HEADER + legacy.encode()))
    exiftool_write(path, "-XMP-dc:Subject+=rufus")
    original = path.read_bytes()
    assert len(_xmp_segments(original)) == 2
    before_exiftool, before_exiv2 = exiftool_keywords(path), exiv2_keywords(path)
    assert before_exiv2["subject"] == ["rufus"]

    current = writer.read(path)
    assert current.keywords == ["rufus", "dog", "teddy bear"]
    write(writer, path, update(["rufus", "dog", "teddy bear", "cat"]))
    new = path.read_bytes()
    assert new.count(XMP_JPEG_HEADER) == 1 and XMP_NONSTANDARD_HEADER not in new
    for reader in (as_list(exiftool_keywords(path)["XMP-dc:Subject"]), exiv2_keywords(path)["subject"]):
        assert reader == ["rufus", "dog", "teddy bear", "cat"]
    assert exiftool_json(path, "-XMP-dc:Description")["XMP-dc:Description"] == "A cat on a mat"

    writer.revert(path)
    assert _xmp_segments(path.read_bytes()) == _xmp_segments(original)
    assert exiftool_keywords(path) == before_exiftool and exiv2_keywords(path) == before_exiv2


def test_a_file_name_that_is_not_utf8_is_written(writer, real_photo_dir: Path, tmp_path: Path) -> None:
    """Linux names are bytes: a Latin-1 name from an old camera card or a Windows share must
    reach exiftool as those bytes, not re-encoded (it would not find the file)."""
    import subprocess

    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/latin1-\xe9t\xe9.jpg"))
    shutil.copy(real_photo_dir / "chelsea.jpg", path)
    write(writer, path, update(["cat", "été"]))
    out = subprocess.run([b"exiftool", b"-s3", b"-XMP-dc:Subject", os.fsencode(path)], capture_output=True,
                         check=True, timeout=60).stdout.decode()
    assert out.strip() == "cat, été"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left behind
    writer.revert(path)
    assert writer.read(path).keywords == ["été"]  # update() counts only "cat" as tagd's addition


def test_iptc_mixing_latin1_and_utf8_is_read_right_and_never_rewritten(writer, real_photo_dir: Path,
                                                                       tmp_path: Path) -> None:
    """A Latin-1 keyword from an old tool and a UTF-8 one from a newer tool, no 1:90: exiftool can
    re-encode the block in only one charset, which would garble the other. The photo is left
    untouched; its keywords (read right) go to a sidecar, with the reason."""
    import subprocess

    path = tmp_path / "mixed.jpg"
    shutil.copy(real_photo_dir / "chelsea.jpg", path)
    for charset, keyword in (("Latin", "Café"), ("UTF8", "naïve")):
        subprocess.run(["exiftool", "-q", "-overwrite_original", "-charset", f"iptc={charset}",
                        f"-IPTC:Keywords+={keyword}", str(path)], check=True, timeout=60)
    before = path.read_bytes()
    assert "Café".encode("latin-1") in before and "naïve".encode() in before
    current = writer.read(path)
    assert current.keywords == ["Café", "naïve"]
    outcome = writer.write(current, update(["Café", "naïve", "cat"]))
    assert "mixes UTF-8 and Latin-1" in (outcome.sidecar_reason or "")
    assert outcome.target == tmp_path / "mixed.jpg.xmp"
    assert as_list(exiftool_keywords(outcome.target)["XMP-dc:Subject"]) == ["Café", "naïve", "cat"]
    assert path.read_bytes() == before and temp_files(tmp_path) == []
    writer.revert(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed.jpg"] and path.read_bytes() == before


def test_same_keywords_in_another_order_do_not_rewrite_the_file(writer, jpeg: Path) -> None:
    """As the library grows its evidence reorders tagd's additions; a photo whose keywords are
    the same is not rewritten just to reorder them (sync clients would upload it again)."""
    write(writer, jpeg, update(["Mittens", "cat", "animal"]))
    before = jpeg.read_bytes()
    outcome = write(writer, jpeg, update(["Mittens", "animal", "cat"]))
    assert not outcome.changed and jpeg.read_bytes() == before
    assert outcome.keywords == ["Mittens", "cat", "animal"]
    assert write(writer, jpeg, update(["Mittens", "animal", "cat", "sofa"])).changed  # a new one: written
