"""Measure personal tags: does a word of the user's own reach new photos of its subject, and
only those, whatever the library's size?

    python training/evaluate_private.py ../shared/data/coco128-dev ~/.cache/tagd/unseen-set

Protocol (fixed seeds):
1. The photos of the given labels.json folders, tagged once by the packaged tagger.
2. For each COCO category with at least k + 2 photos, and each seed: k of its photos (k = 3
   and 5) get a made-up word; every other photo of the folders is a new photo, and the word
   is right on it when the photo has the category.
3. The library: the k photos, plus other photos up to its size (100, 1,000, 10,000), each
   with its labels as the user's tags. Below the size of the folders they are drawn from
   them; above it they are copies of them with their embeddings jittered (noise of sd 0.02
   per dimension, renormalised): "augmented copies" of evidence, not of pixels.
4. Each new photo is refined as tagd's pipeline does (tagd.refine.refine, add-only, with its
   model evidence, its k nearest library photos, the library's statistics and the words'
   subjects from tagd.subjects); the word is proposed when refine adds it.
Reported: precision and recall of the word's proposals, over "subject" categories (COCO's
person, vehicle, animal and food supercategories: what people photograph as the subject)
and over every category (at the middle size); "before" is the same without subjects (the neighbour vote alone,
tagd 0.2). The last line is `RESULT key=value ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagd.model import Model  # noqa: E402
from tagd.config import ModelSettings, RefineSettings  # noqa: E402
from tagd.evidence import model_evidence, refine_params  # noqa: E402
from tagd.refine import LibraryStats, Neighbour, refine  # noqa: E402
from tagd.subjects import subject_of, subject_relevance  # noqa: E402
from tagd.tagger import Tagger  # noqa: E402
from tagd.vocab import Vocabulary  # noqa: E402

SUBJECT_CATEGORIES = frozenset({
    "person",
    "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
})
SIZES = (100, 1_000, 10_000)
WORD = "w0rd"  # no vocabulary knows it
PARAMS = refine_params("tags", RefineSettings().neighbours, ModelSettings().max_tags)  # as tagd runs it


@dataclass
class Photo:
    labels: set[str]
    tags: set[str]  # the tagger's written tags
    scores: np.ndarray  # every tag's fused score
    embedding: np.ndarray


def load(folders: list[Path], tagger: Tagger) -> list[Photo]:
    photos = []
    for folder in folders:
        labels = json.loads((folder / "labels.json").read_text())
        names = sorted(labels["images"])
        for name, result in zip(names, tagger.tag_paths(folder / "images" / n for n in names)):
            if not result.ok:
                raise SystemExit(f"{result.path}: {result.error}")
            photos.append(Photo(set(labels["images"][name]["labels"]), {t.name for t in result.tags},
                                result.tag_scores, result.embedding))
    return photos


def library_of(photos: list[Photo], size: int, rng: np.random.Generator) -> tuple[list[set[str]], np.ndarray]:
    """The library's photos other than the word's: their user tags and embeddings."""
    order = rng.permutation(len(photos))
    take = [int(i) for i in order[:size]]
    tags = [photos[i].labels for i in take]
    emb = np.stack([photos[i].embedding for i in take])
    if size > len(photos):
        extra = rng.integers(0, len(photos), size - len(photos))
        jitter = np.stack([photos[int(i)].embedding for i in extra]) + rng.normal(0, 0.02, (len(extra), emb.shape[1]))
        jitter /= np.linalg.norm(jitter, axis=1, keepdims=True)
        tags += [photos[int(i)].labels for i in extra]
        emb = np.concatenate([emb, jitter.astype(np.float32)])
    return tags, emb


def proposes(photo: Photo, vocab: Vocabulary, positions: dict[str, int], neighbours: list[Neighbour],
             stats: LibraryStats, subjects: list, use_subjects: bool) -> bool:
    words = {*photo.tags, *(t for n in neighbours for t in n.tags), *(t for s in subjects for t in s.tags)}
    _, scores = model_evidence(vocab, positions, photo.scores, words)
    result = refine([], scores, mode="add-only", neighbours=neighbours, library=stats, candidates=sorted(photo.tags),
                    params=PARAMS,
                    subjects=subject_relevance(subjects, scores, vocab, photo.tags) if use_subjects and subjects else None)
    return WORD in result.added


def measure(photos: list[Photo], vocab: Vocabulary, k: int, size: int, seeds: range, use_subjects: bool,
            categories: list[str]) -> dict:
    positions = {n: i for i, n in enumerate(vocab.names)}
    per: dict[str, list[int]] = {}
    started = time.perf_counter()
    decisions = 0
    for seed in seeds:
        pad_tags, pad_emb = library_of(photos, size - k, np.random.default_rng([seed, size]))
        for c in categories:
            members = [i for i, p in enumerate(photos) if c in p.labels]
            # The same photos carry the word at every library size: only the size changes.
            chosen = np.random.default_rng([seed, k, sum(map(ord, c))]).choice(members, k, replace=False)
            carriers = [int(i) for i in chosen]
            carrier_set = set(carriers)
            tag_sets = [*(photos[i].labels | {WORD} for i in carriers), *pad_tags]
            stats = LibraryStats.from_tag_sets(tag_sets)
            emb = np.concatenate([np.stack([photos[i].embedding for i in carriers]), pad_emb])
            subject = subject_of(WORD, [photos[i].tags for i in carriers], vocab)
            subjects = [subject] if subject else []
            queries = [i for i in range(len(photos)) if i not in carrier_set]
            sims = np.stack([photos[i].embedding for i in queries]) @ emb.T
            counts = per.setdefault(c, [0, 0, 0])  # tp, fp, fn
            for row, i in enumerate(queries):
                near = np.argpartition(-sims[row], PARAMS.k)[: PARAMS.k]
                near = near[np.argsort(-sims[row, near])]
                neighbours = [Neighbour(float(sims[row, j]), frozenset(t.casefold() for t in tag_sets[j])) for j in near]
                said = proposes(photos[i], vocab, positions, neighbours, stats, subjects, use_subjects)
                right = c in photos[i].labels
                counts[0] += said and right
                counts[1] += said and not right
                counts[2] += right and not said
                decisions += 1
    tp, fp, fn = (sum(v[j] for v in per.values()) for j in range(3))
    return {"precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn), "proposals": tp + fp,
            "per_category": {c: {"precision": v[0] / max(1, v[0] + v[1]), "recall": v[0] / max(1, v[0] + v[2])}
                             for c, v in per.items()},
            "ms_per_decision": (time.perf_counter() - started) * 1000 / max(1, decisions)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="labels.json folders (coco128-dev's layout)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tagger = Tagger(Model())
    photos = load(args.folders, tagger)
    vocab = tagger.vocabulary
    report: dict = {"photos": len(photos), "rows": []}
    print(f"{len(photos)} photos; seeds 0-{args.seeds - 1}\n")
    print("| categories | k | library | rule | precision | recall | proposals |")
    print("|------------|---|---------|------|-----------|--------|-----------|")
    for k in (3, 5):
        counts: dict[str, int] = {}
        for p in photos:
            for c in p.labels:
                counts[c] = counts.get(c, 0) + 1
        eligible = sorted(c for c, n in counts.items() if n >= k + 2)
        for label, cats in (("subject", [c for c in eligible if c in SUBJECT_CATEGORIES]), ("all", eligible)):
            # Every category at the middle size only: the rule reads no photo but the word's.
            for size in args.sizes if label == "subject" else args.sizes[len(args.sizes) // 2:][:1]:
                for rule, use in (("vote (0.2)", False), ("subject", True)):
                    m = measure(photos, vocab, k, size, range(args.seeds), use, cats)
                    report["rows"].append({"categories": label, "n_categories": len(cats), "k": k, "size": size,
                                           "rule": rule, **m})
                    print(f"| {label} ({len(cats)}) | {k} | {size:,} | {rule} | {m['precision']:.3f} | {m['recall']:.3f} "
                          f"| {m['proposals']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    main_rows = [r for r in report["rows"] if r["categories"] == "subject" and r["rule"] == "subject" and r["k"] == 3]
    print("RESULT " + " ".join(f"precision_{r['size']}={r['precision']:.4f} recall_{r['size']}={r['recall']:.4f}"
                               for r in main_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
