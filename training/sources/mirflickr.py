"""MIRFLICKR-25K as distributed by LIACS (https://press.liacs.nl/mirflickr/).

Layout after unzipping `mirflickr25k.zip` and `mirflickr25k_annotations_v080.zip` side by side:

    ROOT/mirflickr/im1.jpg ... im25000.jpg
    ROOT/mirflickr/meta/tags/tags1.txt ...       the owner's Flickr tags, cleaned, one per line
    ROOT/mirflickr25k_annotations_v080/animals.txt, animals_r1.txt, ...  image numbers, one per line

Labels (`labels=`):
- `potential` (default, what most papers use): the 24 concepts of `<concept>.txt` — the
  concept is visible in the photo at all;
- `relevant`: the 14 concepts that have a `<concept>_r1.txt` — the concept is salient;
- `tags`: the photos' own Flickr tags (`meta/tags`), every tag used on at least `min_count`
  photos; photos without any such tag are skipped, since no tag there means "not tagged",
  not "none of these".

Standard split, by image number: images 1-15000 train (a seeded share held out for
validation: early stopping and thresholds), images 15001-25000 test. A fixed split by
number keeps figures comparable between runs and with other work on the collection;
random splits are not comparable with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.dataset import (
    DatasetError, Example, LabelledSet, LoadReport, TagDef, check_decodable, check_missing,
    close_under_parents, drop_rare_tags,
)

CONCEPTS = (
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
    "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
    "structures", "sunset", "transport", "tree", "water",
)
RELEVANT = ("baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people",
            "portrait", "river", "sea", "tree")
TRAIN_LAST = 15000  # images 1..15000 train, 15001..25000 test

# The annotators' guidelines nest some concepts (a dog is an animal, a lake is water); tagd
# writes them as `animals|dog`, and a parent's label includes its children's.
PARENT = {
    "bird": "animals", "dog": "animals",
    "baby": "people", "female": "people", "male": "people", "portrait": "people",
    "flower": "plant life", "tree": "plant life",
    "lake": "water", "river": "water", "sea": "water",
    "clouds": "sky",
    "car": "transport",
}
# Words people search by; they also let training start each concept from the packaged
# model's matching tag (see training/prior.py).
SYNONYMS = {
    "animals": ("animal",), "people": ("person",), "female": ("woman",), "male": ("man",),
    "baby": ("child",), "plant life": ("plant",), "structures": ("building",),
    "transport": ("vehicle",), "clouds": ("cloud",),
}
_NUMBER = re.compile(r"^im(\d+)\.jpg$")


def tag_name(concept: str) -> str:
    return concept.replace("_", " ")


def find_layout(root: Path, annotations: Path | None = None) -> tuple[Path, Path | None]:
    """(image folder, annotation folder or None) under `root`."""
    root = Path(root)
    images = root / "mirflickr" if (root / "mirflickr").is_dir() else root
    if not any(images.glob("im*.jpg")) and not (images / "meta").is_dir():
        raise DatasetError(f"{root}: no MIRFLICKR images (expected {root}/mirflickr/im1.jpg ...)")
    if annotations is not None:
        if not (Path(annotations) / "animals.txt").is_file():
            raise DatasetError(f"{annotations}: not a MIRFLICKR annotation folder (no animals.txt)")
        return images, Path(annotations)
    for candidate in (root / "mirflickr25k_annotations_v080", root / "annotations", root, images / "annotations"):
        if (candidate / "animals.txt").is_file():
            return images, candidate
    return images, None


def read_numbers(path: Path) -> set[int]:
    out: set[int] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.isdigit() or int(text) < 1:
            raise DatasetError(f"{path}:{lineno}: expected an image number, found {text[:40]!r}")
        out.add(int(text))
    return out


def load(
    root: Path,
    *,
    labels: str = "potential",
    annotations: Path | None = None,
    min_count: int = 50,
    allow_missing: bool = False,
    check_images: bool = True,
) -> LabelledSet:
    images, ann_dir = find_layout(Path(root), annotations)
    report = LoadReport(source=f"MIRFLICKR-25K ({labels} labels) at {root}")
    numbers = {int(m.group(1)) for p in images.glob("im*.jpg") if (m := _NUMBER.match(p.name))}
    tags_dir = images / "meta" / "tags"
    if tags_dir.is_dir():
        # Every photo of the collection has a tags file, even an empty one: the universe.
        numbers |= {int(p.stem[4:]) for p in tags_dir.glob("tags*.txt") if p.stem[4:].isdigit()}

    per_photo: dict[int, set[str]] = {}
    if labels in ("potential", "relevant"):
        if ann_dir is None:
            raise DatasetError(f"{root}: no annotation folder (unzip mirflickr25k_annotations_v080.zip beside mirflickr/, or pass --annotations)")
        concepts = CONCEPTS if labels == "potential" else RELEVANT
        suffix = "" if labels == "potential" else "_r1"
        absent = [c for c in concepts if not (ann_dir / f"{c}{suffix}.txt").is_file()]
        if absent:
            raise DatasetError(f"{ann_dir}: annotation files missing: {', '.join(f'{c}{suffix}.txt' for c in absent)}")
        for concept in concepts:
            for n in read_numbers(ann_dir / f"{concept}{suffix}.txt"):
                per_photo.setdefault(n, set()).add(tag_name(concept))
        numbers |= set(per_photo)
        names = [tag_name(c) for c in concepts]
        tags = [TagDef(n, (PARENT[n],) if PARENT.get(n) in names else (), SYNONYMS.get(n, ())) for n in names]
    elif labels == "tags":
        if not tags_dir.is_dir():
            raise DatasetError(f"{images}: no meta/tags folder (it comes in mirflickr25k.zip)")
        for n in sorted(numbers):
            path = tags_dir / f"tags{n}.txt"
            if path.is_file():
                words = {w.strip() for w in path.read_text(encoding="utf-8", errors="replace").splitlines()}
                # Years and camera counters are not things in the photo.
                per_photo[n] = {w for w in words if w and not w.isdigit()}
        tags = [TagDef(n) for n in sorted({w for s in per_photo.values() for w in s})]
    else:
        raise DatasetError(f"unknown MIRFLICKR label kind {labels!r} (potential, relevant or tags)")

    if not numbers:
        raise DatasetError(f"{root}: no MIRFLICKR photos found")
    paths = {n: images / f"im{n}.jpg" for n in sorted(numbers)}
    gone = check_missing(list(paths.values()), report, allow_missing, str(root))
    if check_images:
        gone |= check_decodable([p for p in paths.values() if p not in gone], report)

    examples = []
    for n, path in paths.items():
        if path in gone:
            continue
        if labels == "tags" and not per_photo.get(n):
            report.unlabelled_skipped += 1
            continue
        examples.append(Example(path, close_under_parents(per_photo.get(n, ()), tags),
                                "train" if n <= TRAIN_LAST else "test"))
    data = LabelledSet("mirflickr25k", tags, examples, report)
    if labels == "tags":
        data = drop_rare_tags(data, min_count)
        # A photo whose every tag was rare is as unlabelled as one with no tags at all.
        kept = [e for e in data.examples if e.labels]
        report.unlabelled_skipped += len(data.examples) - len(kept)
        data.examples = kept
    report.found = len(data.examples)
    report.empty = sum(1 for e in data.examples if not e.labels)
    report.empty_policy = "kept as negatives: the annotators saw every photo"
    if not data.examples:
        raise DatasetError(f"{root}: no usable photos")
    return data
