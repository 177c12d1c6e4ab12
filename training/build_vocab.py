"""Build the default model's tag vocabulary (`tagd/models/float/vocab.json`).

    apt-get install wordnet-base          # WordNet 3.0, the version ImageNet's ids refer to
    python training/build_vocab.py

Input: the 1000 ImageNet classes named in `bundle.json` (their WordNet ids), WordNet 3.0's
noun hierarchy, and the curated table in `training/curation.py`. Output: one JSON file in
the package, sorted and stable, so running this twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.curation import TAGS, T  # noqa: E402
from training.wordnet import DEFAULT_WORDNET_DIR, WordNet  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BUNDLE_DIR = REPO / "tagd" / "models" / "float"

# A tag's score is a sum of softmax probabilities, and a tag that gathers many classes also
# gathers more stray mass from photos it does not describe, so the threshold grows slowly
# with the number of classes. The two numbers were chosen on coco128-dev; the README gives
# the cross-validated figures (`training/evaluate.py --cv`), not only the in-sample ones.
BASE_THRESHOLD = 0.06
PER_LOG2_CLASSES = 0.01
MAX_THRESHOLD = 0.45
# Tags below their threshold but above this floor are kept as suggestions (index, search).
SUGGESTION_FLOOR = 0.01


def threshold_for(n_classes: int) -> float:
    import math

    return round(min(MAX_THRESHOLD, BASE_THRESHOLD + PER_LOG2_CLASSES * math.log2(max(n_classes, 1))), 3)


def resolve(tags: tuple[T, ...], wordnet: WordNet, class_ids: list[str], detector_only: frozenset[str] = frozenset()
            ) -> list[dict]:
    """Each tag with its classes (its own and its children's), synonyms and threshold.
    `detector_only`: tags that may have no ImageNet class (format 2: the detector sees them)."""
    by_name: dict[str, T] = {}
    for tag in tags:
        if tag.name in by_name:
            raise SystemExit(f"curation: tag {tag.name!r} defined twice")
        by_name[tag.name] = tag
    for tag in tags:
        if tag.parent is not None and tag.parent not in by_name:
            raise SystemExit(f"curation: tag {tag.name!r} has unknown parent {tag.parent!r}")

    own: dict[str, set[int]] = {}
    for tag in tags:
        members: set[int] = set(tag.add)
        for synset in tag.wn:
            if synset not in wordnet.synsets:
                raise SystemExit(f"curation: tag {tag.name!r}: {synset} is not a WordNet 3.0 noun")
            for index, wnid in enumerate(class_ids):
                if wnid == synset or synset in wordnet.ancestors(wnid):
                    members.add(index)
        bad = [i for i in members | set(tag.drop) if not 0 <= i < len(class_ids)]
        if bad:
            raise SystemExit(f"curation: tag {tag.name!r}: class indices out of range {bad}")
        own[tag.name] = members - set(tag.drop)

    children: dict[str, list[str]] = {name: [] for name in by_name}
    for tag in tags:
        if tag.parent:
            children[tag.parent].append(tag.name)

    def closure(name: str, seen: tuple[str, ...] = ()) -> set[int]:
        if name in seen:
            raise SystemExit(f"curation: parent cycle {' -> '.join(seen + (name,))}")
        result = set(own[name])
        for child in children[name]:
            result |= closure(child, seen + (name,))
        return result

    out = []
    for tag in tags:
        members = closure(tag.name)
        if not members and tag.name not in detector_only:
            raise SystemExit(f"curation: tag {tag.name!r} has no ImageNet class: no evidence for it")
        synonyms = set(tag.syn)
        for synset in tag.wn:
            for lemma in wordnet[synset].lemmas:
                word = lemma.replace("_", " ")
                if word.islower() and word != tag.name:  # skip Latin binomials and proper names
                    synonyms.add(word)
        out.append({
            "name": tag.name,
            "parents": [tag.parent] if tag.parent else [],
            "synonyms": sorted(synonyms - {tag.name}),
            "labels": sorted(members),
            "weight": tag.weight,
            "threshold": tag.threshold if tag.threshold is not None else threshold_for(len(members)),
            "wordnet": list(tag.wn),
        })
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wordnet", type=Path, default=DEFAULT_WORDNET_DIR, help="WordNet 3.0 dict directory")
    parser.add_argument("--bundle", type=Path, default=BUNDLE_DIR)
    parser.add_argument("--out", type=Path, default=None, help="default: BUNDLE/vocab.json")
    args = parser.parse_args(argv)

    bundle = json.loads((args.bundle / "bundle.json").read_text())
    class_ids = [label["id"] for label in bundle["labels"]]
    wordnet = WordNet.load(args.wordnet)
    tags = resolve(TAGS, wordnet, class_ids)
    covered = set().union(*(set(t["labels"]) for t in tags))
    vocab = {
        "format": "tagd-vocab/1",
        "source": "WordNet 3.0 noun hierarchy + training/curation.py",
        "n_labels": len(class_ids),
        "suggestion_floor": SUGGESTION_FLOOR,
        "max_suggestions": 20,
        "tags": tags,
    }
    out = args.out or args.bundle / "vocab.json"
    # One tag per line: diffs of the data file stay readable in review.
    lines = ",\n".join("  " + json.dumps(t, ensure_ascii=False, sort_keys=True) for t in tags)
    header = {k: v for k, v in vocab.items() if k != "tags"}
    text = json.dumps(header, ensure_ascii=False, sort_keys=True)[:-1] + ', "tags": [\n' + lines + "\n]}\n"
    json.loads(text)  # the hand-assembled layout must still be valid JSON
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: {len(tags)} tags covering {len(covered)}/{len(class_ids)} ImageNet classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
