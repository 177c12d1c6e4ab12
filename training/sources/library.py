"""Your own library: a folder of photos whose keywords are the labels.

Keywords are read exactly as tagd reads them before writing (`tagd.metadata`: the MWG rule,
from the photo or its `.xmp` sidecar), so training sees what every other photo tool sees.

- Hierarchical keywords (`lr:hierarchicalSubject`, `Animals|Cat`) give the tags parents;
  a photo tagged `Animals|Cat` is labelled both `Cat` and `Animals`.
- Spelling variants that differ only in case are one tag, named by the most used spelling.
- Keywords tagd itself added (recorded in its `tagd:` namespace) are not labels by
  default: training on the model's own guesses would teach it nothing. Keywords you added
  or kept after tagd count (`include_tagd_tags=True` counts tagd's too).
- A photo without keywords is *untagged*, not a negative for every tag: it is skipped and
  counted. A photo with keywords is a negative for every kept tag it lacks.
- Tags on fewer than `min_count` photos are dropped and listed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

from training.dataset import (
    DatasetError, Example, LabelledSet, LoadReport, TagDef, check_decodable, close_under_parents,
    drop_rare_tags,
)
from training.progress import progress


def load(
    folder: Path,
    *,
    min_count: int = 10,
    include_tagd_tags: bool = False,
    check_images: bool = True,
    show_progress: bool = True,
    reader: Callable | None = None,
) -> LabelledSet:
    from tagd.metadata import ExifToolMissing, MetadataWriter, WriteError, check_available
    from tagd.photos import PHOTO_SUFFIXES, RAW_SUFFIXES, select

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    try:
        check_available()
    except ExifToolMissing as exc:
        raise DatasetError(str(exc)) from None
    report = LoadReport(source=f"library {folder}")
    # Training needs pixels, and Pillow decodes few camera RAW files.
    paths = list(select([folder], PHOTO_SUFFIXES - RAW_SUFFIXES).photos)
    if not paths:
        raise DatasetError(f"{folder}: no photos found")
    bad = check_decodable(paths, report) if check_images else set()

    writer = MetadataWriter()
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    parent_of: dict[str, Counter[str]] = defaultdict(Counter)  # folded child -> folded parents
    per_photo: list[tuple[Path, set[str]]] = []
    excluded_machine = 0
    try:
        for path in progress(paths, desc="reading keywords", unit="photo", enable=show_progress):
            if path in bad:
                continue
            try:
                found = (reader or writer.read)(path)
            except WriteError as exc:
                report.corrupt[str(path)] = f"cannot read keywords: {exc.reason}"
                continue
            machine = set()
            if found.provenance is not None and not include_tagd_tags:
                machine = {k.casefold() for k in found.provenance.added}
            labels: set[str] = set()
            for keyword in found.keywords:
                folded = keyword.casefold()
                if folded in machine:
                    excluded_machine += 1
                    continue
                spellings[folded][keyword] += 1
                labels.add(folded)
            for chain in found.fields.present.get("hierarchical", []):
                parts = [p.strip() for p in chain.split("|") if p.strip()]
                if parts and parts[-1].casefold() in machine:
                    continue
                for parent, child in zip(parts, parts[1:]):
                    spellings[parent.casefold()][parent] += 0  # a name, even if never a keyword alone
                    parent_of[child.casefold()][parent.casefold()] += 1
                    labels.add(parent.casefold())
                    labels.add(child.casefold())
            per_photo.append((path, labels))
    finally:
        writer.exiftool.close()
    if excluded_machine:
        report.notes.append(f"keywords tagd added itself, not used as labels: {excluded_machine}")

    # One parent per tag (the one used most), and never a cycle.
    parent: dict[str, str] = {}
    for child, counts in parent_of.items():
        best = counts.most_common(1)[0][0]
        walk, seen = best, {child}
        while walk in parent and walk not in seen:
            seen.add(walk)
            walk = parent[walk]
        if walk not in seen:
            parent[child] = best
    name = {folded: (c.most_common(1)[0][0] if sum(c.values()) else next(iter(c))) for folded, c in spellings.items()}
    tags = [TagDef(name[f], (name[parent[f]],) if f in parent else ()) for f in sorted(spellings)]

    examples = []
    for path, labels in per_photo:
        if not labels:
            report.unlabelled_skipped += 1
            continue
        examples.append(Example(path, close_under_parents((name[l] for l in labels), tags)))
    if not examples:
        raise DatasetError(f"{folder}: none of {len(paths)} photos has keywords to learn from")
    data = drop_rare_tags(LabelledSet(folder.name or "library", tags, examples, report), min_count)
    report.found = len(data.examples)
    report.empty = sum(1 for e in data.examples if not e.labels)
    report.empty_policy = "kept as negatives: their keywords are all rare tags"
    return data
