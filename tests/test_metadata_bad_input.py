"""Every bad input in METADATA.md: refused with a one-line reason, original byte-identical, no temp left."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import temp_files, tmpfs
from tagd.metadata import KeywordUpdate, MetadataWriter, WriteError
from tagd.metadata.files import ChangedWhileWriting

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"


def update() -> KeywordUpdate:
    return KeywordUpdate(keywords=["cat", "animal"], added=["cat", "animal"], machine_tags={"cat": 0.9}, model_version="t@1")


def refused(writer: MetadataWriter, path: Path, *needles: str) -> str:
    folder = path.parent
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(WriteError) as info:
        writer.write(writer.read(path), update())
    reason = info.value.reason
    assert "\n" not in str(info.value)
    assert any(n in reason for n in needles), reason
    if before is not None:
        assert path.read_bytes() == before
    assert temp_files(folder) == []
    return reason


def app1(body: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def with_segment(data: bytes, segment: bytes) -> bytes:
    return data[:2] + segment + data[2:]


def xmp_packet(inner: str, prolog: str = "") -> bytes:
    return (
        prolog + '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">{inner}</rdf:Description>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode("utf-8")


def test_truncated_jpeg_headers(writer, jpeg: Path) -> None:
    jpeg.write_bytes(jpeg.read_bytes()[:150])
    refused(writer, jpeg, "truncated")


def test_truncated_inside_scan_data(writer, jpeg: Path) -> None:
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) - 2000])
    refused(writer, jpeg, "no EOI", "truncated")


def test_no_soi(writer, jpeg: Path) -> None:
    jpeg.write_bytes(b"\x00\x00" + jpeg.read_bytes()[2:])
    refused(writer, jpeg, "SOI", "cannot read metadata")


def test_zero_length_segment(writer, jpeg: Path) -> None:
    jpeg.write_bytes(with_segment(jpeg.read_bytes(), b"\xff\xe5\x00\x00"))
    refused(writer, jpeg, "zero-length segment")


def test_two_standard_xmp_packets(writer, jpeg: Path) -> None:
    data = jpeg.read_bytes()
    one = app1(XMP_HEADER + xmp_packet("<dc:subject><rdf:Bag><rdf:li>a</rdf:li></rdf:Bag></dc:subject>"))
    two = app1(XMP_HEADER + xmp_packet("<dc:subject><rdf:Bag><rdf:li>b</rdf:li></rdf:Bag></dc:subject>"))
    jpeg.write_bytes(with_segment(data, one + two))
    refused(writer, jpeg, "2 standard XMP packets")


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
)
XXE = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


@pytest.mark.parametrize("prolog,inner", [
    (BILLION_LAUGHS, "<dc:subject><rdf:Bag><rdf:li>&lol3;</rdf:li></rdf:Bag></dc:subject>"),
    (XXE, "<dc:subject><rdf:Bag><rdf:li>&xxe;</rdf:li></rdf:Bag></dc:subject>"),
], ids=["billion-laughs", "xxe"])
def test_xmp_with_doctype(writer, jpeg: Path, prolog: str, inner: str) -> None:
    jpeg.write_bytes(with_segment(jpeg.read_bytes(), app1(XMP_HEADER + xmp_packet(inner, prolog))))
    refused(writer, jpeg, "DOCTYPE")


def test_xmp_with_invalid_utf8(writer, jpeg: Path) -> None:
    packet = xmp_packet("<dc:subject><rdf:Bag><rdf:li>XX</rdf:li></rdf:Bag></dc:subject>").replace(b"XX", b"\xff\xfe\xc3")
    jpeg.write_bytes(with_segment(jpeg.read_bytes(), app1(XMP_HEADER + packet)))
    refused(writer, jpeg, "not valid UTF-8")


def test_malformed_xmp(writer, jpeg: Path) -> None:
    packet = xmp_packet("<dc:subject><rdf:Bag><rdf:li>a</rdf:Bag></dc:subject>")
    jpeg.write_bytes(with_segment(jpeg.read_bytes(), app1(XMP_HEADER + packet)))
    refused(writer, jpeg, "not well-formed")


def test_corrupt_exif(writer, jpeg: Path) -> None:
    # An IFD0 that claims 60,000 entries in a 40-byte segment.
    body = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 60000) + b"\x01" * 30
    jpeg.write_bytes(with_segment(jpeg.read_bytes(), app1(body)))
    refused(writer, jpeg, "exiftool", "metadata", "EXIF", "IFD")


def test_huge_exif_ifd_offset(writer, jpeg: Path) -> None:
    # IFD0 pointing 4 GB past the segment: a reader that trusts it would read far away.
    body = b"Exif\x00\x00" + b"MM\x00*\xff\xff\xff\xf0" + b"\x00" * 16
    jpeg.write_bytes(with_segment(jpeg.read_bytes(), app1(body)))
    refused(writer, jpeg, "exiftool", "metadata", "EXIF", "IFD")


def test_file_deleted_before_write(writer, jpeg: Path) -> None:
    current = writer.read(jpeg)
    jpeg.unlink()
    with pytest.raises(WriteError, match="vanished"):
        writer.write(current, update())
    assert temp_files(jpeg.parent) == []


def test_file_replaced_before_write(writer, jpeg: Path, real_photo_dir: Path) -> None:
    current = writer.read(jpeg)
    replacement = (real_photo_dir / "coffee.jpg").read_bytes()
    jpeg.write_bytes(replacement)
    with pytest.raises(ChangedWhileWriting, match="changed since its keywords were read"):
        writer.write(current, update())
    assert jpeg.read_bytes() == replacement and temp_files(jpeg.parent) == []


def test_file_replaced_during_write(jpeg: Path, real_photo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program rewrites the photo after exiftool made the temp file: tagd must not clobber it."""
    from tagd.metadata import files as files_module

    replacement = (real_photo_dir / "coffee.jpg").read_bytes()
    w = MetadataWriter()
    real_fsync = files_module.fsync_file

    def fsync_then_interfere(path: Path) -> None:
        real_fsync(path)
        jpeg.write_bytes(replacement)  # e.g. a sync client finishing a newer version

    monkeypatch.setattr(files_module, "fsync_file", fsync_then_interfere)
    try:
        with pytest.raises(WriteError, match="changed while writing"):
            w.write(w.read(jpeg), update())
    finally:
        w.exiftool.close()
    assert jpeg.read_bytes() == replacement and temp_files(jpeg.parent) == []


def _the_winner_stays(tagger, jpeg: Path, tmp_path: Path, interfere, message: str) -> None:
    """Another machine's tagd tags the photo and records it; then this one runs with the other's
    version landing at a moment `interfere(writer, land)` chooses (`land()` puts it in place).
    The file and the index keep the winner's version, and nothing marks the photo failed (a
    failed row would carry the winner's size and mtime, so nothing would ever retry it)."""
    from tagd.index.db import Index
    from tagd.pipeline import Pipeline

    w = MetadataWriter()
    try:
        with Index(tmp_path / "index.sqlite3") as index:
            original = jpeg.read_bytes()
            first = list(Pipeline(tagger, w, index).run([jpeg]))  # the other machine: tagged, recorded
            assert first[0].ok and first[0].changed
            winner, winner_mtime = jpeg.read_bytes(), jpeg.stat().st_mtime_ns
            recorded = index.get(jpeg, embedding=False)
            jpeg.write_bytes(original)  # what this machine read, before the other's write landed

            def land() -> None:
                jpeg.write_bytes(winner)
                os.utime(jpeg, ns=(winner_mtime, winner_mtime))

            interfere(w, land)
            second = list(Pipeline(tagger, w, index).run([jpeg]))
            assert message in (second[0].error or "")
            assert jpeg.read_bytes() == winner and temp_files(jpeg.parent) == []
            after = index.get(jpeg, embedding=False)
            assert after is not None and after.status == "tagged" and after.error is None
            assert [(t.name, t.state) for t in after.tags] == [(t.name, t.state) for t in recorded.tags]
    finally:
        w.exiftool.close()


def test_a_photo_changed_while_tagd_writes_keeps_the_winners_record(
        tagger, jpeg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other machine's write lands while this one writes (after its temp file is made)."""
    from tagd.metadata import files as files_module

    def interfere(writer: MetadataWriter, land) -> None:
        real_fsync = files_module.fsync_file

        def fsync_then_interfere(path: Path) -> None:
            real_fsync(path)
            land()

        monkeypatch.setattr(files_module, "fsync_file", fsync_then_interfere)

    _the_winner_stays(tagger, jpeg, tmp_path, interfere, "changed while writing")


def test_a_photo_changed_after_tagd_read_it_keeps_the_winners_record(
        tagger, jpeg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other machine's write lands between this one's read of the keywords and its write
    (the race two daemons on one PostgreSQL index once lost: the photo was marked failed)."""
    def interfere(writer: MetadataWriter, land) -> None:
        real_read = writer.read

        def read_then_the_other_writes(path: Path):
            current = real_read(path)
            land()
            return current

        monkeypatch.setattr(writer, "read", read_then_the_other_writes)

    _the_winner_stays(tagger, jpeg, tmp_path, interfere, "changed since its keywords were read")


def test_read_only_file(writer, jpeg: Path) -> None:
    jpeg.chmod(0o444)
    refused(writer, jpeg, "read-only file")


def test_directory_without_write_bits(writer, jpeg: Path) -> None:
    """chmod 555 on a folder says "do not change": refused even for root, who could write."""
    jpeg.parent.chmod(0o555)
    try:
        refused(writer, jpeg, "directory is read-only")
    finally:
        jpeg.parent.chmod(0o755)


def test_hard_linked_file(writer, jpeg: Path) -> None:
    os.link(jpeg, jpeg.with_name("other-name.jpg"))
    refused(writer, jpeg, "hard-linked")


@pytest.fixture
def read_only_mount(real_photo_dir: Path, tmp_path: Path):
    """A photo on a file system mounted read-only (a NAS share, a card): root cannot write either."""
    with tmpfs(tmp_path / "ro", "2m") as mount:
        (mount / "cat.jpg").write_bytes((real_photo_dir / "chelsea.jpg").read_bytes())
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount / "cat.jpg"


def test_read_only_directory(writer, read_only_mount: Path) -> None:
    refused(writer, read_only_mount, "directory is not writable")


def test_decompression_bomb_is_refused_before_any_write(tmp_path: Path) -> None:
    """`tagd tag --write` decodes for inference first: a bomb is refused and never written."""
    import json

    from test_decode import _png_header_only

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(40_000, 40_000))
    before = bomb.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "tagd", "tag", "--write", "--json", str(bomb)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "more than model.max_decode_pixels" in json.loads(proc.stdout)["error"]
    assert bomb.read_bytes() == before and temp_files(tmp_path) == []


def test_not_an_image(writer, tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("hello\n" * 100)
    refused(writer, path, "SOI", "metadata")
