"""Measure `tagd similar`: do a photo's nearest photos show the same things?

    python training/evaluate_similar.py ../shared/data/coco128-dev
    python training/evaluate_similar.py ~/.cache/tagd/unseen-set --field all

For every category with at least --min-positives photos, each of its photos asks for its 10
nearest other photos; precision@10 is the share of those that have the category too, averaged
over the category's photos. Reported per category and as the mean over categories, for each
embedding a bundle can define (tagd.model.BundleSpec.embedding): "classifier", the classifier's
pooled features (tagd 0.2), and "tags", the photo's fused tag scores (tagd 0.3). The last line
is `RESULT key=value ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagd.model import Model  # noqa: E402
from tagd.tagger import Tagger  # noqa: E402

EMBEDDINGS = ("classifier", "tags")


def precision_at(embeddings: np.ndarray, truth: list[set[str]], k: int = 10, min_positives: int = 3
                 ) -> dict[str, tuple[float, int]]:
    """Category -> (mean precision@k over the category's photos, how many photos)."""
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)  # a photo is not its own neighbour
    k = min(k, len(truth) - 1)
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    out = {}
    for category in sorted({c for t in truth for c in t}):
        queries = [i for i, t in enumerate(truth) if category in t]
        if len(queries) >= min_positives:
            out[category] = (float(np.mean([np.mean([category in truth[j] for j in nearest[i]]) for i in queries])),
                             len(queries))
    return out


def embeddings_of(folder: Path, names: list[str], model: Model, embedding: str) -> np.ndarray:
    tagger = Tagger(model, embedding_kind=embedding)  # type: ignore[arg-type]
    rows = []
    for result in tagger.tag_paths(folder / "images" / n for n in names):
        if not result.ok or result.embedding is None:
            raise SystemExit(f"{result.path}: {result.error}")
        rows.append(result.embedding)
    return np.stack(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a labels.json folder (coco128-dev's layout)")
    parser.add_argument("--field", choices=("labels", "concepts", "all"), default="labels")
    parser.add_argument("--min-positives", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None, help="bundle (default: the packaged one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    labels = json.loads((args.folder / "labels.json").read_text())
    names = sorted(labels["images"])
    fields = ("labels", "concepts") if args.field == "all" else (args.field,)
    truth = [{c for f in fields for c in labels["images"][n].get(f) or ()} for n in names]
    model = Model(args.model) if args.model else Model()
    measured = {e: precision_at(embeddings_of(args.folder, names, model, e), truth, min_positives=args.min_positives)
                for e in EMBEDDINGS}
    categories = sorted(measured[EMBEDDINGS[0]], key=lambda c: (-measured[EMBEDDINGS[0]][c][1], c))
    print(f"{len(names)} photos; precision@10 by category ({args.field}, >= {args.min_positives} photos)\n")
    print(f"| {'category':<16} | photos | " + " | ".join(f"{e:>10}" for e in EMBEDDINGS) + " |")
    print(f"|{'-' * 18}|--------|" + "|".join("-" * 12 for _ in EMBEDDINGS) + "|")
    for c in categories:
        print(f"| {c:<16} | {measured[EMBEDDINGS[0]][c][1]:>6} | "
              + " | ".join(f"{measured[e][c][0]:>10.3f}" for e in EMBEDDINGS) + " |")
    means = {e: float(np.mean([v[0] for v in measured[e].values()])) for e in EMBEDDINGS}
    print(f"| {'mean':<16} | {len(categories):>6} | " + " | ".join(f"{means[e]:>10.3f}" for e in EMBEDDINGS) + " |")
    if args.json:
        args.json.write_text(json.dumps({e: {c: v[0] for c, v in m.items()} for e, m in measured.items()}, indent=1) + "\n")
    print("RESULT " + " ".join(f"p10_{e}={means[e]:.4f}" for e in EMBEDDINGS) + f" categories={len(categories)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
