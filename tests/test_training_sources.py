"""Training data loaders on small real data: a format-exact MIRFLICKR tree, COCO files, a library.

MIRFLICKR-25K itself is not available offline; the tree built here has its exact layout and
file formats (`mirflickr/im<N>.jpg`, `meta/tags/tags<N>.txt`, annotation files listing image
numbers) with real photos from scikit-image/scikit-learn as the images.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COCO128

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.dataset import DatasetError, fold_assignment, group_split, random_split  # noqa: E402
from training.sources import coco, mirflickr  # noqa: E402

# image number -> (photo, concepts); 1-6 fall in the standard training half, 15001+ in the test half.
MIR = {
    1: ("chelsea", {"animals"}),
    2: ("astronaut", {"people", "female", "portrait"}),
    3: ("flower", {"flower", "plant_life"}),
    4: ("motorcycle_left", {"transport", "structures"}),
    5: ("coffee", {"food", "indoor"}),
    6: ("china", set()),  # annotated, but none of the 24 concepts: an empty label set
    15001: ("rocket", {"sky", "structures"}),
    15002: ("chelsea", {"animals", "indoor"}),
    15003: ("astronaut", {"people", "male"}),
}
TAGS = {1: ["cat", "kitty", "2007"], 2: ["astronaut", "nasa", "portrait"], 3: ["flower", "macro"], 4: ["motorbike"],
        5: ["coffee", "cup"], 6: ["temple", "china"], 15001: ["rocket", "nasa"], 15002: ["cat"], 15003: ["nasa"]}


def make_mirflickr(root: Path, photos: Path, numbers: dict = MIR) -> Path:
    images = root / "mirflickr"
    (images / "meta" / "tags").mkdir(parents=True)
    ann = root / "mirflickr25k_annotations_v080"
    ann.mkdir()
    for n, (photo, _) in numbers.items():
        shutil.copy(photos / f"{photo}.jpg", images / f"im{n}.jpg")
        (images / "meta" / "tags" / f"tags{n}.txt").write_text("".join(f"{t}\n" for t in TAGS.get(n, [])))
    for concept in mirflickr.CONCEPTS:
        listed = [n for n, (_, c) in numbers.items() if concept in c]
        (ann / f"{concept}.txt").write_text("".join(f"{n}\n" for n in listed))
        if concept in mirflickr.RELEVANT:
            (ann / f"{concept}_r1.txt").write_text("".join(f"{n}\n" for n in listed[:1]))
    (ann / "README.txt").write_text("MIRFLICKR-25000 annotations\n")
    return root


def labels_of(data) -> dict[str, set[str]]:
    return {e.path.name: set(e.labels) for e in data.examples}


def test_mirflickr_potential_labels_hierarchy_and_split(tmp_path: Path, real_photo_dir: Path) -> None:
    data = mirflickr.load(make_mirflickr(tmp_path, real_photo_dir))
    assert len(data) == 9 and len(data.tags) == 24
    got = labels_of(data)
    assert got["im1.jpg"] == {"animals"}
    # female and portrait imply people; plant life is spelled as a tag, not a file name.
    assert got["im2.jpg"] == {"people", "female", "portrait"}
    assert got["im3.jpg"] == {"flower", "plant life"}
    assert got["im6.jpg"] == set()
    assert data.report.empty == 1 and "kept" in data.report.empty_policy
    tags = {t.name: t for t in data.tags}
    assert tags["dog"].parents == ("animals",) and tags["lake"].parents == ("water",)
    assert "person" in tags["people"].synonyms
    groups = {e.path.name: e.group for e in data.examples}
    assert groups["im6.jpg"] == "train" and groups["im15001.jpg"] == "test"
    split = group_split(data, seed=0, val_fraction=0.34)
    names = [data.examples[i].path.name for i in split.test]
    assert sorted(names) == ["im15001.jpg", "im15002.jpg", "im15003.jpg"]
    assert len(split.val) == 2 and len(split.train) == 4
    assert set(split.val) == set(group_split(data, seed=0, val_fraction=0.34).val)  # seeded


def test_mirflickr_relevant_and_user_tags(tmp_path: Path, real_photo_dir: Path) -> None:
    root = make_mirflickr(tmp_path, real_photo_dir)
    relevant = mirflickr.load(root, labels="relevant")
    assert len(relevant.tags) == 14 and "animals" not in relevant.tag_names
    tags = mirflickr.load(root, labels="tags", min_count=2)
    assert set(tags.tag_names) == {"cat", "nasa"}  # the only tags on two photos or more
    # Years are never tags; photos left with no tag are untagged, not negatives.
    assert "2007" not in tags.report.dropped_tags and "kitty" in tags.report.dropped_tags
    assert tags.report.unlabelled_skipped == 4
    assert all(e.labels for e in tags.examples)


def test_mirflickr_annotations_beside_or_explicit(tmp_path: Path, real_photo_dir: Path) -> None:
    root = make_mirflickr(tmp_path / "a", real_photo_dir)
    moved = tmp_path / "annotations-elsewhere"
    shutil.move(str(root / "mirflickr25k_annotations_v080"), moved)
    with pytest.raises(DatasetError, match="no annotation folder"):
        mirflickr.load(root)
    assert len(mirflickr.load(root / "mirflickr", annotations=moved)) == 9


def test_mirflickr_refuses_broken_input(tmp_path: Path, real_photo_dir: Path) -> None:
    root = make_mirflickr(tmp_path, real_photo_dir)
    (root / "mirflickr" / "im3.jpg").unlink()
    (root / "mirflickr" / "im4.jpg").unlink()
    with pytest.raises(DatasetError, match=r"2 of 9 photos .* missing: .*im3\.jpg, .*im4\.jpg"):
        mirflickr.load(root)
    data = mirflickr.load(root, allow_missing=True)
    assert len(data) == 7 and len(data.report.missing) == 2
    assert any("missing photos skipped: 2" in line for line in data.report.lines())

    (root / "mirflickr" / "im5.jpg").write_bytes(b"")
    (root / "mirflickr" / "im6.jpg").write_bytes(b"this is not a jpeg")
    data = mirflickr.load(root, allow_missing=True)
    assert len(data) == 5
    assert set(Path(p).name for p in data.report.corrupt) == {"im5.jpg", "im6.jpg"}
    assert any("corrupt photos skipped: 2" in line for line in data.report.lines())

    (root / "mirflickr25k_annotations_v080" / "dog.txt").write_text("12\nim13.jpg\n")
    with pytest.raises(DatasetError, match=r"dog\.txt:2: expected an image number"):
        mirflickr.load(root, allow_missing=True)
    (root / "mirflickr25k_annotations_v080" / "dog.txt").unlink()
    with pytest.raises(DatasetError, match=r"annotation files missing: dog\.txt"):
        mirflickr.load(root, allow_missing=True)


def test_coco_instances(tmp_path: Path, real_photo_dir: Path) -> None:
    images = tmp_path / "train"
    images.mkdir()
    for name in ("chelsea", "astronaut", "motorcycle_left", "china"):
        shutil.copy(real_photo_dir / f"{name}.jpg", images / f"{name}.jpg")
    ann = {
        "images": [{"id": i, "file_name": f"{n}.jpg"} for i, n in enumerate(["chelsea", "astronaut", "motorcycle_left", "china"], 1)],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 17, "name": "cat", "supercategory": "animal"},
            {"id": 18, "name": "dog", "supercategory": "animal"},
            {"id": 4, "name": "motorcycle", "supercategory": "vehicle"},
            {"id": 85, "name": "clock", "supercategory": "indoor"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 17, "bbox": [0, 0, 1, 1]},
            {"id": 11, "image_id": 2, "category_id": 1, "iscrowd": 1},
            {"id": 12, "image_id": 3, "category_id": 4},
            {"id": 13, "image_id": 3, "category_id": 1},
            {"id": 14, "image_id": 99, "category_id": 1},  # an image the file does not list
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(ann))
    data = coco.load_instances(path, images)
    got = labels_of(data)
    assert got["chelsea.jpg"] == {"cat", "animal"}
    assert got["motorcycle_left.jpg"] == {"motorcycle", "vehicle", "person"}
    assert got["china.jpg"] == set() and data.report.empty == 1
    tags = {t.name: t for t in data.tags}
    assert tags["cat"].parents == ("animal",) and tags["person"].parents == ()
    assert tags["clock"].parents == ()  # "indoor" is no tag for a photo of a clock
    assert any("not listed" in n for n in data.report.notes)
    assert set(coco.load_instances(path, images, hierarchy=False).tag_names) == {"person", "cat", "dog", "motorcycle", "clock"}

    (images / "china.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 of 4 photos .* missing: .*china\.jpg"):
        coco.load_instances(path, images)
    ann["annotations"].append({"id": 15, "image_id": 1, "category_id": 5})
    path.write_text(json.dumps(ann))
    with pytest.raises(DatasetError, match="unknown category_id 5"):
        coco.load_instances(path, images, allow_missing=True)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable JSON"):
        coco.load_instances(path, images)


@pytest.mark.skipif(not (COCO128 / "labels.json").is_file(), reason="../shared/data/coco128-dev not present")
def test_coco128_labels_file() -> None:
    data = coco.load_labels_file(COCO128)
    assert len(data) == 128 and len(data.tags) == 80
    assert data.report.empty == 2 and not data.report.missing and not data.report.corrupt
    assert labels_of(data)["000000000009.jpg"] == {"bowl", "broccoli", "orange"}


def test_labels_file_refusals(tmp_path: Path, real_photo_dir: Path) -> None:
    (tmp_path / "images").mkdir()
    shutil.copy(real_photo_dir / "chelsea.jpg", tmp_path / "images" / "a.jpg")
    (tmp_path / "images" / "b.jpg").write_bytes((real_photo_dir / "coffee.jpg").read_bytes()[:0])
    (tmp_path / "labels.json").write_text(json.dumps({"categories": ["cat", "cup"], "images": {
        "a.jpg": {"labels": ["cat"]}, "b.jpg": {"labels": ["cup"]}, "c.jpg": {"labels": []}}}))
    with pytest.raises(DatasetError, match=r"1 of 3 photos .* missing: .*c\.jpg"):
        coco.load_labels_file(tmp_path)
    data = coco.load_labels_file(tmp_path, allow_missing=True)
    assert [e.path.name for e in data.examples] == ["a.jpg"]
    assert list(data.report.corrupt) == [str(tmp_path / "images" / "b.jpg")]
    (tmp_path / "labels.json").write_text(json.dumps({"categories": ["cat"], "images": {"a.jpg": {"labels": ["dog"]}}}))
    with pytest.raises(DatasetError, match="not among 'categories'"):
        coco.load_labels_file(tmp_path)


def _exiftool(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_own_library(tmp_path: Path, real_photo_dir: Path, writer) -> None:
    from tagd.metadata import KeywordUpdate
    from training.sources import library

    lib = tmp_path / "Pictures"
    (lib / "2024").mkdir(parents=True)
    for i, name in enumerate(["chelsea", "chelsea", "astronaut", "coffee", "flower", "china"]):
        shutil.copy(real_photo_dir / f"{name}.jpg", lib / "2024" / f"{i}-{name}.jpg")
    d = lib / "2024"
    _exiftool("-XMP-dc:Subject=Cat", "-XMP-dc:Subject=Holiday", "-XMP-lr:HierarchicalSubject=Animals|Cat", str(d / "0-chelsea.jpg"))
    _exiftool("-IPTC:Keywords=cat", "-IPTC:Keywords=sofa", str(d / "1-chelsea.jpg"))  # IPTC only, other case
    _exiftool("-XMP-dc:Subject=Holiday", str(d / "2-astronaut.jpg"))
    # A sidecar beside the photo holds this one's keywords (darktable style).
    _exiftool("-XMP-dc:Subject=coffee", "-XMP-dc:Subject=Holiday", str(d / "3-coffee.jpg.xmp"))
    # tagd added "flower" here itself; the user added "garden": only the user's keyword teaches.
    current = writer.read(d / "4-flower.jpg")
    writer.write(current, KeywordUpdate(keywords=["garden", "flower"], added=["flower"], machine_tags={"flower": 0.9},
                                        model_version="test@0"))
    # 5-china.jpg: no keywords at all -> untagged, skipped.
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")

    data = library.load(lib, min_count=1, show_progress=False)
    got = labels_of(data)
    assert got["0-chelsea.jpg"] == {"Cat", "Animals", "Holiday"}
    assert got["1-chelsea.jpg"] == {"Cat", "Animals", "sofa"}  # "cat" is the same tag as "Cat"
    assert got["3-coffee.jpg"] == {"coffee", "Holiday"}
    assert got["4-flower.jpg"] == {"garden"}
    assert "5-china.jpg" not in got and data.report.unlabelled_skipped == 1
    assert [Path(p).name for p in data.report.corrupt] == ["broken.jpg"]
    assert any("tagd added itself" in n for n in data.report.notes)
    assert {t.name: t.parents for t in data.tags}["Cat"] == ("Animals",)

    with_tagd = library.load(lib, min_count=1, include_tagd_tags=True, show_progress=False)
    assert labels_of(with_tagd)["4-flower.jpg"] == {"garden", "flower"}
    frequent = library.load(lib, min_count=2, show_progress=False)
    assert set(frequent.tag_names) == {"Cat", "Animals", "Holiday"}
    assert frequent.report.dropped_tags == {"coffee": 1, "garden": 1, "sofa": 1}
    assert labels_of(frequent)["4-flower.jpg"] == set() and frequent.report.empty == 1
    with pytest.raises(DatasetError, match="no tag has at least 9 photos"):
        library.load(lib, min_count=9, show_progress=False)


def test_splits_are_seeded_and_match_evaluate_py() -> None:
    import numpy as np

    folds = fold_assignment(128, 5, 0)
    assert np.array_equal(folds, np.random.default_rng(0).permutation(128) % 5)  # evaluate.py's rule
    a, b = random_split(100, 3, 0.1, 0.2), random_split(100, 3, 0.1, 0.2)
    assert a.sizes() == {"train": 70, "val": 10, "test": 20}
    assert all(np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)))
    assert len(set(a.train) | set(a.val) | set(a.test)) == 100
