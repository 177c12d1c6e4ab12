"""Measure tag refinement: simulate noisy, incomplete user tags, refine them, compare with truth.

    python training/evaluate_refine.py ../shared/data/coco128-dev          # figures + ablation
    python training/evaluate_refine.py DIR --drop 0.4 --inject 0.3 --seed 0

Protocol (fixed seeds, so figures reproduce):
1. Truth: each photo's labels (`labels.json`), in the user's own words (COCO names here).
2. Noise: each true tag is dropped with probability `--drop`; for each true tag, a wrong one
   is injected with probability `--inject`, drawn with the labels' own frequencies (common
   tags are the common mistakes), never one of the photo's true tags.
3. Refinement with leave-one-out: the photo's neighbours and the library statistics come
   from all the *other* photos' noisy tags; the model's scores from the packaged model,
   mapped to the user's words through the vocabulary's synonyms (training/evaluate.py).
4. Report micro precision/recall/F1 of the tag lists before and after, the precision of
   removals (removed tags that were indeed wrong), the recall of additions (dropped true tags
   that came back), and an ablation over the evidence sources. Mode `full` (removals applied).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagd.model import Model  # noqa: E402
from tagd.refine import LibraryStats, Neighbour, RefineParams, refine  # noqa: E402
from tagd.tagger import Tagger  # noqa: E402
from training.evaluate import category_tags  # noqa: E402

ABLATION = {
    "model only (raw)": ((True, False, False), False),
    "model only": ((True, False, False), True),
    "neighbours only": ((False, True, False), True),
    "model + neighbours": ((True, True, False), True),
    "+ co-occurrence": ((True, True, True), True),
}


@dataclass
class Scores:
    precision: float
    recall: float
    f1: float

    @classmethod
    def of(cls, predicted: list[set[str]], truth: list[set[str]]) -> "Scores":
        tp = sum(len(p & t) for p, t in zip(predicted, truth))
        fp = sum(len(p - t) for p, t in zip(predicted, truth))
        fn = sum(len(t - p) for p, t in zip(predicted, truth))
        p = tp / max(1, tp + fp)
        r = tp / max(1, tp + fn)
        return cls(p, r, 2 * p * r / max(1e-12, p + r))


def simulate_noise(truth: list[set[str]], drop: float, inject: float, seed: int) -> list[set[str]]:
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for tags in truth:
        for t in tags:
            counts[t] = counts.get(t, 0) + 1
    names = sorted(counts)
    freq = np.array([counts[n] for n in names], dtype=np.float64)
    noisy = []
    for tags in truth:
        kept = {t for t in sorted(tags) if rng.random() >= drop}
        for _ in sorted(tags):
            if rng.random() < inject:
                allowed = np.array([n not in tags and n not in kept for n in names])
                if allowed.any():
                    p = freq * allowed
                    kept.add(names[int(rng.choice(len(names), p=p / p.sum()))])
        noisy.append(kept)
    return noisy


def photo_evidence(folder: Path, tagger: Tagger) -> tuple[list[str], list[set[str]], np.ndarray, list[dict[str, float]], list[set[str]], set[str]]:
    labels = json.loads((folder / "labels.json").read_text())
    names = sorted(labels["images"])
    truth = [set(labels["images"][n]["labels"]) for n in names]
    mapping = category_tags(labels["categories"], tagger.vocabulary)
    index = {t: i for i, t in enumerate(tagger.vocabulary.names)}
    results = list(tagger.tag_paths(folder / "images" / n for n in names))
    embeddings = np.stack([r.embedding for r in results])
    model_scores, confident = [], []
    for r in results:
        scores = {c: max(float(r.tag_scores[index[t]]) for t in tags) for c, tags in mapping.items() if tags}
        model_scores.append(scores)
        emitted = {t.name for t in r.tags}
        confident.append({c for c, tags in mapping.items() if any(t in emitted for t in tags)})
    known = {c for c, tags in mapping.items() if tags}
    return names, truth, embeddings, model_scores, confident, known


def run(folder: Path, tagger: Tagger, drop: float, inject: float, seed: int, k: int) -> dict:
    names, truth, emb, model_scores, confident, known = photo_evidence(folder, tagger)
    noisy = simulate_noise(truth, drop, inject, seed)
    sims = emb @ emb.T
    report: dict = {"photos": len(names), "drop": drop, "inject": inject, "seed": seed,
                    "before": Scores.of(noisy, truth).__dict__, "ablation": {}}
    for label, (weights, calibrate) in ABLATION.items():
        params = RefineParams(k=k, sources=weights, calibrate=calibrate)
        refined, removed_right, removed_all, added_back, dropped = [], 0, 0, 0, 0
        for i in range(len(names)):
            others = [j for j in range(len(names)) if j != i]
            library = LibraryStats.from_tag_sets(noisy[j] for j in others)
            if calibrate:
                library.add_scores((model_scores[j], noisy[j]) for j in others)
            order = sorted(others, key=lambda j: -sims[i, j])[: k + 5]
            neighbours = [Neighbour(float(sims[i, j]), frozenset(t.casefold() for t in noisy[j])) for j in order]
            result = refine(sorted(noisy[i]), model_scores[i], mode="full", neighbours=neighbours, library=library,
                            model_known=known, candidates=sorted(confident[i]), params=params)
            final = set(result.keywords)
            refined.append(final)
            removed = set(result.removed)
            removed_all += len(removed)
            removed_right += len(removed - truth[i])
            lost = truth[i] - noisy[i]
            dropped += len(lost)
            added_back += len(lost & set(result.added))
        after = Scores.of(refined, truth)
        report["ablation"][label] = {
            **after.__dict__,
            "removal_precision": removed_right / removed_all if removed_all else float("nan"),
            "removals": removed_all,
            "addition_recall": added_back / dropped if dropped else float("nan"),
        }
    return report


def table(report: dict) -> str:
    b = report["before"]
    lines = [
        f"{report['photos']} photos; {report['drop']:.0%} of true tags dropped, {report['inject']:.0%} wrong tags injected, seed {report['seed']}",
        "",
        f"| {'evidence':<20} | precision | recall |   F1  | ΔF1   | removal precision (n) | addition recall |",
        f"|{'-' * 22}|-----------|--------|-------|-------|-----------------------|-----------------|",
        f"| {'before (noisy tags)':<20} | {b['precision']:9.3f} | {b['recall']:6.3f} | {b['f1']:.3f} |       |                       |                 |",
    ]
    for label, a in report["ablation"].items():
        lines.append(
            f"| {label:<20} | {a['precision']:9.3f} | {a['recall']:6.3f} | {a['f1']:.3f} | {a['f1'] - b['f1']:+.3f} |"
            f" {a['removal_precision']:13.3f} ({a['removals']:4d}) | {a['addition_recall']:15.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--drop", type=float, default=0.4)
    parser.add_argument("--inject", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-k", type=int, default=RefineParams().k)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(args.folder, Tagger(Model()), args.drop, args.inject, args.seed, args.k)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    best = report["ablation"]["+ co-occurrence"]
    print(f"RESULT f1_before={report['before']['f1']:.4f} f1_after={best['f1']:.4f} "
          f"removal_precision={best['removal_precision']:.4f} addition_recall={best['addition_recall']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
