"""Reading keywords by the MWG rule: pure cases, and real files edited by other tools."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from metadata_oracles import exiftool_write
from tagd.metadata.fields import FieldValues, mwg_keywords, truncate_utf8
from tagd.metadata.iptc import MIXED as IPTC_MIXED, IptcState


def values(digest: str | None = None, current: str | None = None, has_xmp: bool = True, **present: list[str]) -> FieldValues:
    return FieldValues(dict(present), digest, current, has_xmp)


def test_xmp_only() -> None:
    assert mwg_keywords(values(subject=["a", "b"])) == ["a", "b"]


def test_iptc_only() -> None:
    assert mwg_keywords(values(has_xmp=False, iptc=["a", "b"])) == ["a", "b"]


def test_matching_digest_means_xmp_wins() -> None:
    assert mwg_keywords(values("d1", "d1", subject=["new"], iptc=["stale"])) == ["new"]


def test_missing_digest_means_xmp_wins() -> None:
    assert mwg_keywords(values(None, "d1", subject=["new"], iptc=["stale"])) == ["new"]


def test_digest_mismatch_means_iptc_was_edited_later() -> None:
    assert mwg_keywords(values("old", "d2", subject=["stale"], iptc=["edited"])) == ["edited"]


def test_truncated_iptc_repaired_from_xmp() -> None:
    long = "x" * 70
    cut = truncate_utf8(long)
    assert mwg_keywords(values("old", "new", subject=[long, "b"], iptc=[cut, "c"])) == [long, "c"]


def test_hierarchical_leaves_and_xpkeywords_added() -> None:
    got = mwg_keywords(values(subject=["a"], hierarchical=["Places|Lisbon", "a"], xpkeywords=["win"]))
    assert got == ["a", "Lisbon", "win"]


@given(st.text(min_size=0, max_size=40))
def test_truncate_utf8_never_splits_a_character(text: str) -> None:
    cut = truncate_utf8(text, 20)
    assert len(cut.encode("utf-8")) <= 20
    assert text.startswith(cut)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_file_edited_by_a_non_xmp_aware_tool(writer, jpeg: Path) -> None:
    """IPTC and XMP disagree: read by MWG (IPTC edited later wins), not by union."""
    exiftool_write(jpeg, "-XMP-dc:Subject=beach", "-XMP-dc:Subject=dog", "-IPTC:Keywords=beach",
                   "-IPTC:Keywords=dog", "-Photoshop:IPTCDigest=new")
    assert writer.read(jpeg).keywords == ["beach", "dog"]
    # An old IPTC-only editor removes "dog" and adds "sea"; it knows nothing of the digest.
    exiftool_write(jpeg, "-IPTC:Keywords=beach", "-IPTC:Keywords=sea", "-Photoshop:IPTCDigest=00000000000000000000000000000000")
    assert writer.read(jpeg).keywords == ["beach", "sea"]


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_seq_and_single_values(writer, jpeg: Path) -> None:
    exiftool_write(jpeg, "-XMP-dc:Subject=only", "-XMP-digiKam:TagsList=a/b")
    # A lone dc:subject item reads as a scalar, TagsList is a Seq; digiKam shows the tag a/b,
    # so its leaf is one of the photo's keywords, as lr:hierarchicalSubject's leaves are.
    assert writer.read(jpeg).keywords == ["only", "b"]


def charset(record: dict) -> str:
    return IptcState.from_exiftool(record).charset


def test_iptc_charset_from_the_bytes_when_the_file_does_not_declare_one() -> None:
    # exiftool read these as Latin (cp1252): each character stands for one byte.
    latin = {"IPTC:Keywords": ["Caf\xe9", "M\xfcller"], "IPTC:City": "Z\xfcrich"}
    assert charset(latin) == "Latin"
    assert latin == {"IPTC:Keywords": ["Caf\xe9", "M\xfcller"], "IPTC:City": "Z\xfcrich"}  # already right
    utf8 = {"IPTC:Keywords": ["Caf\xc3\xa9", "plain"], "IPTC:City": "Z\xc3\xbcrich", "XMP-dc:Subject": "Caf\xc3\xa9"}
    assert charset(utf8) == "UTF8"
    assert utf8 == {"IPTC:Keywords": ["Café", "plain"], "IPTC:City": "Zürich", "XMP-dc:Subject": "Caf\xc3\xa9"}
    # A block edited by tools of both kinds: each value read in its own charset, and the block
    # said to be mixed (exiftool cannot re-encode it without garbling one kind).
    mixed = {"IPTC:Keywords": ["Caf\xc3\xa9", "na\xefve"], "IPTC:City": "Z\xfcrich"}
    assert charset(mixed) == IPTC_MIXED
    assert mixed == {"IPTC:Keywords": ["Café", "naïve"], "IPTC:City": "Zürich"}
    # cp1252's own characters (€ is byte 0x80) and the bytes it leaves undefined.
    assert charset({"IPTC:Keywords": "\u20ac \x81"}) == "Latin"
    assert charset({"IPTC:Keywords": "ascii only"}) == "ascii"
    assert charset({"IPTC:CodedCharacterSet": "UTF8", "IPTC:Keywords": "Caf\xe9"}) == "declared"
    state = IptcState.from_exiftool({"IPTC:Keywords": ["Caf\xe9", "x"], "IPTC:City": "Z\xfcrich", "IPTC:Byline": "ok",
                                     "Photoshop:IPTCDigest": "ab", "File:CurrentIPTCDigest": "ab"})
    assert state.latin_tags == ("IPTC:Keywords", "IPTC:City") and state.digest_matched and not state.envelope
    assert IptcState.parse(state.text()) == state
