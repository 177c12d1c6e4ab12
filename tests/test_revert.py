"""`tagd revert`: the user's keywords come back in every field, tagd's additions go."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metadata_oracles import as_list, exiftool_json, exiftool_keywords, exiftool_write
from tagd.metadata import KeywordUpdate
from tagd.refine import MachineTag, refine_add_only

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")

FIELDS = ["XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList",
          "XMP-microsoft:LastKeywordXMP", "IPTC:Keywords", "IFD0:XPKeywords"]


def tag_round(writer, path: Path, model: list[tuple[str, float]], version: str) -> None:
    current = writer.read(path)
    prov = current.provenance
    refined = refine_add_only(
        current.keywords, [MachineTag(n, s) for n, s in model],
        previously_added=prov.added if prov else (), previously_written=prov.written if prov else (),
        previously_rejected=prov.rejected if prov else (),
    )
    writer.write(current, KeywordUpdate(keywords=refined.keywords, machine_tags=refined.machine_tags,
                                        added=refined.added, rejected=refined.rejected, model_version=version,
                                        hierarchy={"cat": "animal|cat"}))


def snapshot(path: Path) -> dict:
    got = exiftool_keywords(path)
    return {f: got.get(f) for f in FIELDS}


def test_revert_after_two_writes_restores_every_field(writer, jpeg: Path) -> None:
    exiftool_write(jpeg, "-XMP-dc:Subject=Grandma", "-XMP-dc:Subject=Lisbon 2023", "-XMP-lr:HierarchicalSubject=People|Grandma",
                   "-IPTC:Keywords=Grandma", "-IPTC:Keywords=Lisbon 2023", "-IFD0:XPKeywords=Grandma;Lisbon 2023")
    original = snapshot(jpeg)
    tag_round(writer, jpeg, [("cat", 0.9), ("animal", 0.95)], "m@1")
    tag_round(writer, jpeg, [("cat", 0.8), ("sofa", 0.4)], "m@2")  # a newer model, other tags
    written = as_list(exiftool_keywords(jpeg)["XMP-dc:Subject"])
    assert written[:2] == ["Grandma", "Lisbon 2023"] and "sofa" in written and "animal" not in written
    outcome = writer.revert(jpeg)
    assert outcome.changed
    assert snapshot(jpeg) == original
    assert not any(k.startswith("XMP-tagd:") for k in exiftool_json(jpeg, "-XMP-tagd:all"))
    assert writer.read(jpeg).provenance is None


def test_revert_file_that_had_no_keywords(writer, jpeg: Path) -> None:
    tag_round(writer, jpeg, [("cat", 0.9)], "m@1")
    writer.revert(jpeg)
    assert snapshot(jpeg) == {f: None for f in FIELDS}


def test_revert_keeps_the_users_later_edits(writer, jpeg: Path) -> None:
    exiftool_write(jpeg, "-XMP-dc:Subject=holiday")
    tag_round(writer, jpeg, [("cat", 0.9), ("animal", 0.95)], "m@1")
    # The user, in another tool, adds "Mittens" and deletes tagd's "animal" (keeping fields in sync).
    exiftool_write(jpeg, "-XMP-dc:Subject=holiday", "-XMP-dc:Subject=cat", "-XMP-dc:Subject=Mittens",
                   "-XMP-lr:HierarchicalSubject=holiday", "-XMP-lr:HierarchicalSubject=animal|cat", "-XMP-lr:HierarchicalSubject=Mittens")
    writer.revert(jpeg)
    assert writer.read(jpeg).keywords == ["holiday", "Mittens"]


def test_revert_keeps_a_keyword_added_between_two_tagd_writes(writer, jpeg: Path) -> None:
    """The originals are from before tagd's first write; restoring them exactly would drop a
    keyword the user added after it, once tagd has written again (it is then in `written`)."""
    exiftool_write(jpeg, "-XMP-dc:Subject=holiday")
    tag_round(writer, jpeg, [("cat", 0.9)], "m@1")
    exiftool_write(jpeg, "-XMP-dc:Subject=holiday", "-XMP-dc:Subject=cat", "-XMP-dc:Subject=Mittens",
                   "-XMP-lr:HierarchicalSubject=holiday", "-XMP-lr:HierarchicalSubject=animal|cat", "-XMP-lr:HierarchicalSubject=Mittens")
    tag_round(writer, jpeg, [("cat", 0.9), ("sofa", 0.5)], "m@2")
    assert set(writer.read(jpeg).keywords) == {"holiday", "cat", "Mittens", "sofa"}
    writer.revert(jpeg)
    assert writer.read(jpeg).keywords == ["holiday", "Mittens"]


def test_user_deleted_tag_is_never_added_again(writer, jpeg: Path) -> None:
    tag_round(writer, jpeg, [("cat", 0.9), ("animal", 0.95)], "m@1")
    exiftool_write(jpeg, "-XMP-dc:Subject=cat", "-XMP-lr:HierarchicalSubject=animal|cat")  # user removes "animal"
    tag_round(writer, jpeg, [("cat", 0.9), ("animal", 0.95)], "m@1")
    current = writer.read(jpeg)
    assert current.keywords == ["cat"]
    assert current.provenance is not None and current.provenance.rejected == ["animal"]


def test_addition_deleted_from_the_flat_list_only_stays_deleted(writer, jpeg: Path) -> None:
    """A tool that edits only dc:subject leaves "animal|cat" in the hierarchy when the user deletes
    "cat". By the MWG union that leaf would still count as a keyword and tagd would put "cat"
    straight back; for tagd's own additions the flat list decides."""
    tag_round(writer, jpeg, [("cat", 0.9)], "m@1")
    assert "animal|cat" in as_list(exiftool_keywords(jpeg)["XMP-lr:HierarchicalSubject"])
    exiftool_write(jpeg, "-XMP-dc:Subject-=cat", "-IPTC:Keywords-=cat")
    tag_round(writer, jpeg, [("cat", 0.9)], "m@1")
    current = writer.read(jpeg)
    assert "cat" not in current.keywords
    assert current.provenance is not None and current.provenance.rejected == ["cat"]
    got = exiftool_keywords(jpeg)
    assert "cat" not in as_list(got.get("XMP-dc:Subject"))
    assert not any(h.endswith("cat") for h in as_list(got.get("XMP-lr:HierarchicalSubject")))


def test_revert_of_untouched_file_is_a_no_op(writer, jpeg: Path) -> None:
    before = jpeg.read_bytes()
    outcome = writer.revert(jpeg)
    assert not outcome.changed and "never wrote" in outcome.message
    assert jpeg.read_bytes() == before


def test_revert_removes_a_sidecar_tagd_created(writer, real_photo_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    raw = tmp_path / "IMG_9.ORF"
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        im.save(raw, format="TIFF")
    tag_round(writer, raw, [("cat", 0.9)], "m@1")
    assert (tmp_path / "IMG_9.ORF.xmp").is_file()
    writer.revert(raw)
    assert not (tmp_path / "IMG_9.ORF.xmp").exists()


def test_revert_undoes_both_a_sidecar_and_an_in_file_write(jpeg: Path) -> None:
    """Tagged in the file, then with --sidecar: one revert takes tagd's tags out of both."""
    from tagd.metadata import MetadataWriter, WriteOptions

    exiftool_write(jpeg, "-XMP-dc:Subject=Mittens")
    in_file, sidecar_only = MetadataWriter(), MetadataWriter(options=WriteOptions(sidecar="always"))
    try:
        tag_round(in_file, jpeg, [("cat", 0.9)], "m@1")
        tag_round(sidecar_only, jpeg, [("cat", 0.9), ("sofa", 0.8)], "m@1")
        sidecar = jpeg.with_name(jpeg.name + ".xmp")
        assert sidecar.is_file() and "cat" in as_list(exiftool_keywords(jpeg)["XMP-dc:Subject"])
        outcome = in_file.revert(jpeg)
        assert outcome.changed and outcome.keywords == ["Mittens"]
        assert not sidecar.exists()
        assert as_list(exiftool_keywords(jpeg)["XMP-dc:Subject"]) == ["Mittens"]
        assert in_file.read(jpeg).provenance is None
    finally:
        in_file.exiftool.close()
        sidecar_only.exiftool.close()
