"""A labelled photo set as every loader returns it, its load report, and its splits.

Loaders (`training/sources/`) turn a dataset on disk into a `LabelledSet`: photo paths, the
tag vocabulary (names, parents, synonyms) and one label set per photo. What is wrong with
the input is never silently dropped: missing photos stop the load with a list (unless the
caller allows them), corrupt photos are skipped and listed, empty label sets are counted.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


class DatasetError(Exception):
    """The input cannot be used as it is; the message says what is wrong and where."""


@dataclass(frozen=True)
class TagDef:
    name: str
    parents: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Example:
    path: Path
    labels: frozenset[str]
    # Where the example sits in a split the dataset defines itself (MIRFLICKR's fixed
    # split); None lets the trainer split at random.
    group: str | None = None


@dataclass
class LoadReport:
    source: str
    found: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)  # path -> reason
    empty: int = 0  # photos whose label set is empty (kept or skipped: see `empty_policy`)
    empty_policy: str = "kept as negatives"
    unlabelled_skipped: int = 0
    dropped_tags: dict[str, int] = field(default_factory=dict)  # rare tag -> photos
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.source}: {self.found} photos"]
        if self.missing:
            out.append(f"missing photos skipped: {len(self.missing)} ({', '.join(self.missing[:5])}{' ...' if len(self.missing) > 5 else ''})")
        if self.corrupt:
            shown = list(self.corrupt.items())[:5]
            out.append(f"corrupt photos skipped: {len(self.corrupt)} (" + "; ".join(f"{p}: {r}" for p, r in shown)
                       + (" ..." if len(self.corrupt) > 5 else "") + ")")
        if self.empty:
            out.append(f"photos with an empty label set: {self.empty} ({self.empty_policy})")
        if self.unlabelled_skipped:
            out.append(f"photos without keywords skipped: {self.unlabelled_skipped}")
        if self.dropped_tags:
            rare = sorted(self.dropped_tags.items(), key=lambda kv: (-kv[1], kv[0]))
            out.append(f"rare tags dropped: {len(rare)} ({', '.join(f'{t} ({n})' for t, n in rare[:8])}{' ...' if len(rare) > 8 else ''})")
        out.extend(self.notes)
        return out

    def as_dict(self) -> dict:
        return {
            "source": self.source, "found": self.found, "missing": self.missing, "corrupt": self.corrupt,
            "empty": self.empty, "empty_policy": self.empty_policy, "unlabelled_skipped": self.unlabelled_skipped,
            "dropped_tags": self.dropped_tags, "notes": self.notes,
        }


@dataclass
class LabelledSet:
    name: str
    tags: list[TagDef]
    examples: list[Example]
    report: LoadReport

    def __post_init__(self) -> None:
        names = [t.name for t in self.tags]
        if len(set(names)) != len(names):
            dupes = sorted(n for n, c in Counter(names).items() if c > 1)
            raise DatasetError(f"{self.name}: tag names repeat: {dupes}")
        known = set(names)
        for tag in self.tags:
            bad = [p for p in tag.parents if p not in known]
            if bad:
                raise DatasetError(f"{self.name}: tag {tag.name!r} has unknown parent {bad[0]!r}")

    @property
    def tag_names(self) -> list[str]:
        return [t.name for t in self.tags]

    def __len__(self) -> int:
        return len(self.examples)

    def label_matrix(self) -> np.ndarray:
        """(photos, tags) float32 0/1 matrix in `tags` order."""
        column = {n: j for j, n in enumerate(self.tag_names)}
        out = np.zeros((len(self.examples), len(self.tags)), dtype=np.float32)
        for i, ex in enumerate(self.examples):
            for label in ex.labels:
                if label in column:
                    out[i, column[label]] = 1.0
        return out

    def subset(self, keep: Sequence[int] | np.ndarray) -> "LabelledSet":
        return replace(self, examples=[self.examples[int(i)] for i in np.asarray(keep).reshape(-1)])

    def without(self, paths: Iterable[Path]) -> "LabelledSet":
        drop = {Path(p) for p in paths}
        return replace(self, examples=[e for e in self.examples if e.path not in drop])

    def fingerprint(self) -> str:
        """SHA-256 over the photo names and their labels: which data a model was trained on."""
        h = hashlib.sha256()
        h.update(json.dumps(self.tag_names).encode())
        for ex in sorted(self.examples, key=lambda e: str(e.path)):
            h.update(json.dumps([ex.path.name, sorted(ex.labels), ex.group]).encode())
        return h.hexdigest()


def close_under_parents(labels: Iterable[str], tags: Sequence[TagDef]) -> frozenset[str]:
    """A photo labelled `dog` is also an `animal`: add every ancestor of every label."""
    parents = {t.name: t.parents for t in tags}
    out: set[str] = set()
    frontier = [l for l in labels if l in parents]
    while frontier:
        name = frontier.pop()
        if name not in out:
            out.add(name)
            frontier.extend(parents.get(name, ()))
    return frozenset(out)


def check_missing(paths: Sequence[Path], report: LoadReport, allow_missing: bool, where: str) -> set[Path]:
    """The paths that do not exist; an error listing them unless the caller allows gaps."""
    missing = [p for p in paths if not p.is_file()]
    if missing and not allow_missing:
        shown = ", ".join(str(p) for p in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DatasetError(
            f"{where}: {len(missing)} of {len(paths)} photos listed in the annotations are missing: {shown}{more} "
            "(--allow-missing trains without them)"
        )
    report.missing.extend(str(p) for p in missing)
    return set(missing)


def check_decodable(paths: Sequence[Path], report: LoadReport) -> set[Path]:
    """Photos Pillow cannot even identify (zero bytes, not an image, broken header): listed, skipped.

    This is the cheap check; a photo truncated mid-scan is caught when it is decoded for
    embedding, and lands in the same report.
    """
    from PIL import Image, UnidentifiedImageError

    bad: set[Path] = set()
    for path in paths:
        try:
            with Image.open(path) as im:
                im.verify()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            report.corrupt[str(path)] = (str(exc).splitlines() or [type(exc).__name__])[0]
            bad.add(path)
    return bad


def drop_rare_tags(data: LabelledSet, min_count: int) -> LabelledSet:
    """Tags on fewer than `min_count` photos cannot be learned or measured; drop and report them.

    A parent stays if any child stays (its children's photos count for it).
    """
    counts = Counter(l for ex in data.examples for l in ex.labels)
    keep = {t.name for t in data.tags if counts[t.name] >= min_count}
    for tag in data.tags:
        if tag.name not in keep:
            data.report.dropped_tags[tag.name] = counts[tag.name]
    tags = [replace(t, parents=tuple(p for p in t.parents if p in keep)) for t in data.tags if t.name in keep]
    examples = [replace(ex, labels=frozenset(l for l in ex.labels if l in keep)) for ex in data.examples]
    if not tags:
        raise DatasetError(f"{data.name}: no tag has at least {min_count} photos (lower --min-count?)")
    return replace(data, tags=tags, examples=examples)


# ---- splits ----------------------------------------------------------------------------------

def fold_assignment(n: int, folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each photo; the same rule as training/evaluate.py's cross-validation, so the
    folds of both scripts are the very same photos."""
    return np.random.default_rng(seed).permutation(n) % folds


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def random_split(n: int, seed: int, val_fraction: float, test_fraction: float) -> Split:
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return Split(np.sort(order[n_test + n_val:]), np.sort(order[n_test:n_test + n_val]), np.sort(order[:n_test]))


def group_split(data: LabelledSet, seed: int, val_fraction: float) -> Split:
    """The dataset's own split: `train` photos (a seeded share of them kept for validation)
    and `test` photos."""
    groups = np.array([ex.group for ex in data.examples], dtype=object)
    trainval = np.nonzero(groups == "train")[0]
    test = np.nonzero(groups == "test")[0]
    if len(trainval) == 0 or len(test) == 0:
        raise DatasetError(f"{data.name}: its standard split needs photos in both halves (have {len(trainval)} train, {len(test)} test)")
    order = np.random.default_rng(seed).permutation(trainval)
    n_val = int(round(len(order) * val_fraction))
    return Split(np.sort(order[n_val:]), np.sort(order[:n_val]), np.sort(test))
