"""K-fold cross-validation of the cached-embedding head: plain vs adversarial, and the packaged model.

    python -m training.crossval labels ../shared/data/coco128-dev --folds 5 --seeds 0 1 2 --out runs/coco128-cv
    python -m training.crossval mirflickr ~/data/mirflickr25k --folds 5 --seeds 0 --out runs/mirflickr-cv

The folds are training/evaluate.py's (`permutation(n) % K` with seed `--split-seed`, 0), so
on coco128-dev they are the photos its `--cv 5` uses. In each fold the head is trained on
the other folds minus a seeded validation share (early stopping, thresholds) and scores
the held-out fold; the held-out scores of all folds are pooled and measured once
(training/metrics.py). Plain and adversarial runs see the same folds, validation photos
and seeds.

With `--compare-default` (on when the tags map to the packaged vocabulary) the packaged
model is measured on the same photos and categories, in both AP conventions of
training/baseline.py, and the trained head is also measured in evaluate.py's convention
through the vocabulary it would be exported with.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.adversarial import AdversarialConfig  # noqa: E402
from training.cli_common import add_sources, common_options, embed_dataset, load_source, start  # noqa: E402
from training.dataset import DatasetError, LabelledSet, fold_assignment  # noqa: E402
from training.hierarchy import descendants, tag_scores, vocabulary_json  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    common.add_argument("--folds", type=int, default=5)
    common.add_argument("--split-seed", type=int, default=0, help="seed of the fold assignment (0: evaluate.py's)")
    common.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (0 1 2)")
    common.add_argument("--adversarial", choices=("off", "on", "both"), default="both")
    common.add_argument("--adversarial-weight", type=float, default=0.1)
    common.add_argument("--adversarial-conditional", action="store_true")
    common.add_argument("--loss", choices=("weighted", "asymmetric", "bce"), default="weighted")
    common.add_argument("--no-prior", action="store_true", help="head on the embedding alone, not started from the packaged model")
    common.add_argument("--val-fraction", type=float, default=0.2)
    common.add_argument("--min-positives", type=int, default=3, help="mean AP over tags with at least this many positives (3)")
    common.add_argument("--compare-default", choices=("auto", "yes", "no"), default="auto")
    common.add_argument("--out", type=Path, help="write crossval.md and crossval.json here")
    parser = argparse.ArgumentParser(prog="python -m training.crossval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sources(parser, common)
    return parser


def run_variant(data: LabelledSet, views: np.ndarray, labels: np.ndarray, folds: np.ndarray, args: argparse.Namespace,
                seed: int, adversarial: bool, prior) -> dict:
    from training.calibrate import choose_thresholds
    from training.fit import REFIT_BELOW, TrainConfig, predict_views, train_head

    columns = descendants(data.tags)
    oof = np.zeros(labels.shape, dtype=np.float32)
    thresholds = np.zeros((args.folds, labels.shape[1]), dtype=np.float32)
    d_acc = []
    config = TrainConfig(loss=args.loss, seed=seed, device=args.device, use_prior=not args.no_prior,
                         show_progress=False,
                         adversarial=AdversarialConfig(weight=args.adversarial_weight, conditional=args.adversarial_conditional)
                         if adversarial else None)
    for k in range(args.folds):
        train_all = np.nonzero(folds != k)[0]
        test = np.nonzero(folds == k)[0]
        rng = np.random.default_rng(1000 * seed + k)
        shuffled = rng.permutation(train_all)
        n_val = int(round(len(shuffled) * args.val_fraction))
        val, train = np.sort(shuffled[:n_val]), np.sort(shuffled[n_val:])
        fold_config = replace(config, seed=seed * 100 + k)
        fit = train_head(views[train], labels[train], fold_config, prior=prior,
                         val_views=views[val, 0], val_labels=labels[val])
        val_scores = tag_scores(predict_views(fit.head, views[val, 0]), columns)
        thresholds[k] = choose_thresholds(val_scores, labels[val]).values
        if len(train_all) < REFIT_BELOW:
            fit = train_head(views[train_all], labels[train_all], fold_config, prior=prior, epochs=fit.best_epoch)
        if fit.discriminator_accuracy is not None:
            d_acc.append(fit.discriminator_accuracy)
        oof[test] = tag_scores(predict_views(fit.head, views[test, 0]), columns)
    return {"oof": oof, "thresholds": thresholds, "d_accuracy": float(np.mean(d_acc)) if d_acc else None}


def measure(oof: np.ndarray, thresholds: np.ndarray, labels: np.ndarray, folds: np.ndarray, min_pos: int) -> dict:
    from training.metrics import f1_at_k, mean_ap, per_tag_ap, threshold_metrics

    ap = per_tag_ap(oof, labels)
    m, n = mean_ap(ap, labels, min_pos)
    p3, r3, f3 = f1_at_k(oof, labels, 3)
    # Each held-out photo is cut at its own fold's thresholds; counts pooled over folds.
    at = threshold_metrics(oof, labels, thresholds[folds])
    return {"ap": ap, "mean_ap": m, "mean_ap_tags": n, "p@3": p3, "r@3": r3, "f1@3": f3, **at}


def compare_default(data: LabelledSet, views: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                    plain: dict, prior, min_pos: int) -> dict | None:
    from tagd.model import Model, float_bundle_dir
    from tagd.tagger import load_vocabulary
    from tagd.vocab import TagInfo, Vocabulary
    from training.baseline import category_ap, emitted
    from training.measuring import average_precision as evaluate_ap, category_tags

    default_vocab = load_vocabulary(Model(float_bundle_dir(), threads=1))
    names = data.tag_names
    mapping = category_tags(names, default_vocab)
    if not any(mapping.values()):
        return None
    full = prior.tag_scores(views[:, 0]).max(axis=1)  # (N, S): each packaged tag at its best view
    out_default = emitted(full, default_vocab)
    # The trained head as tagd would run it: its own vocabulary, each fold's thresholds.
    head_emitted: list[dict[str, float]] = [{} for _ in range(len(labels))]
    for k in range(plain["thresholds"].shape[0]):
        vj = vocabulary_json(data.tags, plain["thresholds"][k], source="crossval")
        # The held-out scores are per tag already (parents at their best child), so each tag
        # selects just its own column; names, parents and thresholds are the exported ones.
        vocab = Vocabulary([TagInfo(t["name"], tuple(t["parents"]), tuple(t["synonyms"]), (j,), t["threshold"])
                            for j, t in enumerate(vj["tags"])], n_labels=len(names), aggregate="max")
        idx = np.nonzero(folds == k)[0]
        for i, e in zip(idx, emitted(plain["oof"][idx], vocab)):
            head_emitted[i] = e
    identity = {n: (n,) for n in names}
    eligible = labels.sum(0) >= min_pos
    mapped = np.array([bool(mapping[n]) for n in names])
    rows = {
        "default_tagd_evaluate_py": category_ap(names, mapping, labels, emitted_scores=out_default, ap_fn=evaluate_ap),
        "default_tagd": category_ap(names, mapping, labels, emitted_scores=out_default),
        "default_full": category_ap(names, mapping, labels, full_scores=full, names=default_vocab.names),
        "head_tagd": category_ap(names, identity, labels, emitted_scores=head_emitted),
        "head_full": plain["ap_plain"],
    }
    summary = {}
    for key, ap in rows.items():
        summary[key] = {
            "all": float(np.nanmean(ap[eligible])),
            "mapped": float(np.nanmean(ap[eligible & mapped])),
            "unmapped": float(np.nanmean(ap[eligible & ~mapped])) if (eligible & ~mapped).any() else float("nan"),
        }
    return {"summary": summary, "per_category": {k: [float(x) for x in v] for k, v in rows.items()},
            "categories": int(eligible.sum()), "mapped": int((eligible & mapped).sum()),
            "mapping": {n: list(mapping[n]) for n in names}}


def main(argv: list[str] | None = None) -> int:
    args, started = start(build_parser(), argv)
    try:
        data = load_source(args)
        data, views = embed_dataset(data, args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in data.report.lines():
        print(line, file=sys.stderr)
    labels = data.label_matrix()
    folds = fold_assignment(len(data), args.folds, args.split_seed)
    prior = None
    if not args.no_prior:
        from training.prior import load_prior

        prior = load_prior(data.tags)
    variants = {"off": [False], "on": [True], "both": [False, True]}[args.adversarial]
    results: dict[str, list[dict]] = {}
    for adversarial in variants:
        name = "adversarial" if adversarial else "plain"
        for seed in args.seeds:
            t0 = time.monotonic()
            run = run_variant(data, views, labels, folds, args, seed, adversarial, prior)
            figures = measure(run["oof"], run["thresholds"], labels, folds, args.min_positives)
            figures.update(seed=seed, seconds=time.monotonic() - t0, d_accuracy=run["d_accuracy"])
            results.setdefault(name, []).append({**figures, "_run": run})
            print(f"{name:<12} seed {seed}: mAP {figures['mean_ap']:.4f} ({figures['mean_ap_tags']} tags)  "
                  f"F1@3 {figures['f1@3']:.4f}  P/R/F1 {figures['precision']:.3f}/{figures['recall']:.3f}/{figures['f1']:.3f}",
                  file=sys.stderr)
    comparison = None
    want = args.compare_default
    if want != "no" and prior is not None:
        first = results.get("plain", results.get("adversarial"))[0]
        comparison = compare_default(data, views, labels, folds, {**first["_run"], "ap_plain": first["ap"]}, prior,
                                     args.min_positives)
        if comparison is None and want == "yes":
            print("error: no tag maps to the packaged vocabulary; nothing to compare", file=sys.stderr)
            return 2
    text = report_markdown(data, args, results, comparison, time.monotonic() - started)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "crossval.md").write_text(text + "\n")
        clean = {k: [{kk: (vv.tolist() if isinstance(vv, np.ndarray) else vv) for kk, vv in r.items() if kk != "_run"}
                     for r in v] for k, v in results.items()}
        (args.out / "crossval.json").write_text(json.dumps({"results": clean, "comparison": comparison,
                                                            "tags": data.tag_names}, indent=1, default=float) + "\n")
    return 0


def report_markdown(data: LabelledSet, args: argparse.Namespace, results: dict, comparison: dict | None, seconds: float) -> str:
    lines = [f"# Cross-validation: {data.name}", ""]
    lines += [f"- {l}" for l in data.report.lines()]
    lines += [
        f"- {args.folds}-fold split, seed {args.split_seed} (training/evaluate.py's folds); validation share {args.val_fraction} of each training part",
        f"- head: {'started from the packaged model (prior)' if not args.no_prior else 'embedding only'}, loss {args.loss}; "
        f"mean AP over the {next(iter(results.values()))[0]['mean_ap_tags']} tags with >= {args.min_positives} positives, "
        "tie-aware AP on the pooled held-out scores",
        f"- {seconds:.0f} s in all", "",
        "| variant | seed | mean AP | F1@3 | P@3 | R@3 | precision | recall | F1 | coverage | D accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        for r in runs:
            d = "" if r["d_accuracy"] is None else f"{r['d_accuracy']:.2f}"
            lines.append(f"| {name} | {r['seed']} | {r['mean_ap']:.4f} | {r['f1@3']:.4f} | {r['p@3']:.3f} | {r['r@3']:.3f} | "
                         f"{r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['coverage']:.3f} | {d} |")
    lines.append("")
    if len(results) == 2:
        a, b = (np.array([r[key] for r in results[n]]) for n in ("plain", "adversarial") for key in ["mean_ap"])
        lines.append(f"mean AP over seeds: plain {a.mean():.4f} ± {a.std():.4f}, adversarial {b.mean():.4f} ± {b.std():.4f} "
                     f"(difference {b.mean() - a.mean():+.4f})")
        for key in ("f1@3", "f1"):
            a, b = (np.array([r[key] for r in results[n]]) for n in ("plain", "adversarial"))
            lines.append(f"{key} over seeds: plain {a.mean():.4f} ± {a.std():.4f}, adversarial {b.mean():.4f} ± {b.std():.4f}")
        lines.append("")
    if comparison:
        s = comparison["summary"]
        lines += [
            f"## Against the packaged float model (the backbone heads are trained on) ({comparison['categories']} categories with >= {args.min_positives} positives, "
            f"{comparison['mapped']} of them map to a packaged tag)", "",
            "| model | AP convention | all categories | mapped only | unmapped only |",
            "|---|---|---|---|---|",
            f"| packaged float | tagd (evaluate.py's own AP) | {s['default_tagd_evaluate_py']['all']:.4f} | {s['default_tagd_evaluate_py']['mapped']:.4f} | {s['default_tagd_evaluate_py']['unmapped']:.4f} |",
            f"| packaged float | tagd (tie-aware AP) | {s['default_tagd']['all']:.4f} | {s['default_tagd']['mapped']:.4f} | {s['default_tagd']['unmapped']:.4f} |",
            f"| trained head, seed {args.seeds[0]} | tagd (tie-aware AP) | {s['head_tagd']['all']:.4f} | {s['head_tagd']['mapped']:.4f} | {s['head_tagd']['unmapped']:.4f} |",
            f"| packaged float | full (threshold-free) | {s['default_full']['all']:.4f} | {s['default_full']['mapped']:.4f} | {s['default_full']['unmapped']:.4f} |",
            f"| trained head, seed {args.seeds[0]} | full (threshold-free) | {s['head_full']['all']:.4f} | {s['head_full']['mapped']:.4f} | {s['head_full']['unmapped']:.4f} |",
            "",
            "tagd convention: a photo is ranked by the best score among the tags tagd emits for it (tags and suggestions >= 0.01); "
            "photos with none are never retrieved. full: every photo ranked by its full score. Unmapped categories have no "
            "packaged tag and score 0 for the packaged model.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
