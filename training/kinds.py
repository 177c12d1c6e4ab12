"""Tag quality by kind of tag (`training/evaluate.py --by-kind`): animals, scenes, buildings,
food and drink, breeds, objects, so that a change that helps one kind and hurts another shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tagd.vocab import Vocabulary
    from training.measuring import Evaluation

# Kinds of tag for --by-kind, by the root of the tag's hierarchy in the vocabulary (other roots
# are "objects"); a child of "dog" or "cat" is a breed.
KINDS = {"animal": "animals", "landscape": "scenes", "snow": "scenes", "street": "scenes", "harbour": "scenes",
         "bridge": "scenes", "building": "buildings", "monument": "buildings", "food": "food and drink",
         "drink": "food and drink"}
BREED_OF = ("dog", "cat")


def by_kind(ev: "Evaluation", vocab: "Vocabulary", min_positives: int) -> dict[str, dict]:
    """The categories grouped by kind (KINDS): how many, the mean AP (emitted and threshold-free)
    of those with at least `min_positives` photos, and the micro precision/recall of the written tags."""
    kinds: dict[str, list[str]] = {}
    for cat, v in ev.per_category.items():
        if not v["positives"] or not v["tags"]:
            continue
        name = v["tags"][0]
        breed = bool(vocab[name].parents) and vocab[name].parents[0] in BREED_OF
        while vocab[name].parents:
            name = vocab[name].parents[0]
        kinds.setdefault("breeds" if breed else KINDS.get(name, "objects"), []).append(cat)
    out = {}
    for kind, cats in sorted(kinds.items()):
        rows = [ev.per_category[c] for c in cats]
        right, wrong, missed = (sum(r[k] for r in rows) for k in ("written_right", "written_wrong", "missed"))
        ranked = [r for r in rows if r["positives"] >= min_positives]
        out[kind] = {
            "tags": len(cats), "photos": sum(r["positives"] for r in rows),
            "mean_ap": float(np.mean([r["ap"] for r in ranked])) if ranked else float("nan"),
            "full_mean_ap": float(np.mean([r["full_ap"] for r in ranked])) if ranked else float("nan"),
            "precision": right / (right + wrong) if right + wrong else float("nan"),
            "recall": right / (right + missed) if right + missed else float("nan"),
        }
    return out


def kind_report(kinds: dict[str, dict], min_positives: int) -> str:
    lines = [f"{'kind':<16} {'tags':>4} {'photos':>6} {'mean AP':>8} {'(free)':>7} {'precision':>9} {'recall':>7}"
             f"   (mean AP over tags with >= {min_positives} photos)"]
    for kind, k in kinds.items():
        lines.append(f"{kind:<16} {k['tags']:>4} {k['photos']:>6} {k['mean_ap']:>8.3f} {k['full_mean_ap']:>7.3f} "
                     f"{k['precision']:>9.3f} {k['recall']:>7.3f}")
    return "\n".join(lines)
