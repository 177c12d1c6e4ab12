"""COCO: an instances JSON with its image folder, or the simple `labels.json` of coco128-dev.

Instances JSON (`instances_train2017.json`): every listed image is a photo, labelled with
the categories of its object annotations (crowd annotations included: the thing is in
the photo). Each category's `supercategory` becomes its parent tag (`animal|cat`), except
where it names no photo subject people would tag by (`indoor`, `outdoor`, `accessory`) or
repeats the category (`person`). An image with no annotation has an empty label set: COCO
says none of its 80 categories is in it, so it is kept as a negative.

`labels.json`: `{"categories": [...], "images": {"file.jpg": {"labels": [...]}}}`, photos
under `images/` beside it. Flat tags, no hierarchy.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.dataset import (
    DatasetError, Example, LabelledSet, LoadReport, TagDef, check_decodable, check_missing,
    close_under_parents,
)

NOT_A_TAG = frozenset({"indoor", "outdoor", "accessory"})


def _read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable JSON ({exc})") from None


def load_instances(
    annotations: Path,
    images: Path,
    *,
    hierarchy: bool = True,
    allow_missing: bool = False,
    check_images: bool = True,
) -> LabelledSet:
    raw = _read_json(annotations)
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), list) for k in ("images", "categories")):
        raise DatasetError(f"{annotations}: not a COCO instances file (needs 'images' and 'categories' lists)")
    report = LoadReport(source=f"COCO instances {annotations}")
    try:
        categories = {int(c["id"]): (str(c["name"]), str(c.get("supercategory") or "")) for c in raw["categories"]}
        files = {int(im["id"]): str(im["file_name"]) for im in raw["images"]}
        labels: dict[int, set[str]] = {i: set() for i in files}
        unknown_images = 0
        for ann in raw.get("annotations", []):
            image_id, cat_id = int(ann["image_id"]), int(ann["category_id"])
            if cat_id not in categories:
                raise DatasetError(f"{annotations}: annotation {ann.get('id')} has unknown category_id {cat_id}")
            if image_id not in labels:
                unknown_images += 1
                continue
            labels[image_id].add(categories[cat_id][0])
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{annotations}: malformed entry ({exc!r})") from None
    if unknown_images:
        report.notes.append(f"annotations for images not listed in 'images' ignored: {unknown_images}")

    names = list(dict.fromkeys(n for _, (n, _) in sorted(categories.items())))
    parents: dict[str, str] = {}
    if hierarchy:
        for name, sup in categories.values():
            if sup and sup != name and sup not in NOT_A_TAG and sup not in names:
                parents[name] = sup
    supers = sorted(set(parents.values()))
    tags = [TagDef(s) for s in supers] + [TagDef(n, (parents[n],) if n in parents else ()) for n in names]
    return _finish("coco", tags, [(Path(images) / files[i], labels[i]) for i in sorted(files)],
                   report, allow_missing, check_images, str(annotations))


def load_labels_file(
    folder: Path,
    *,
    allow_missing: bool = False,
    check_images: bool = True,
) -> LabelledSet:
    folder = Path(folder)
    raw = _read_json(folder / "labels.json")
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), dict):
        raise DatasetError(f"{folder}/labels.json: expected {{'categories': [...], 'images': {{file: {{'labels': [...]}}}}}}")
    report = LoadReport(source=f"labels file {folder}/labels.json")
    images = raw["images"]
    try:
        per_file = {str(name): {str(l) for l in entry.get("labels", [])} for name, entry in images.items()}
    except (AttributeError, TypeError) as exc:
        raise DatasetError(f"{folder}/labels.json: malformed image entry ({exc!r})") from None
    categories = [str(c) for c in raw.get("categories") or sorted({l for s in per_file.values() for l in s})]
    unknown = sorted({l for s in per_file.values() for l in s} - set(categories))
    if unknown:
        raise DatasetError(f"{folder}/labels.json: labels not among 'categories': {unknown[:10]}")
    tags = [TagDef(c) for c in categories]
    return _finish(folder.name, tags, [(folder / "images" / n, per_file[n]) for n in sorted(per_file)],
                   report, allow_missing, check_images, f"{folder}/labels.json")


def _finish(name: str, tags: list[TagDef], items: list[tuple[Path, set[str]]], report: LoadReport,
            allow_missing: bool, check_images: bool, where: str) -> LabelledSet:
    if not items:
        raise DatasetError(f"{where}: lists no images")
    gone = check_missing([p for p, _ in items], report, allow_missing, where)
    if check_images:
        gone |= check_decodable([p for p, _ in items if p not in gone], report)
    examples = [Example(p, close_under_parents(l, tags)) for p, l in items if p not in gone]
    if not examples:
        raise DatasetError(f"{where}: no usable photos")
    report.found = len(examples)
    report.empty = sum(1 for e in examples if not e.labels)
    report.empty_policy = "kept as negatives: the annotation says none of the categories is present"
    return LabelledSet(name, tags, examples, report)
