"""Train a tagger on your photos or a dataset, calibrate it, evaluate it, export a tagd bundle.

    python -m training.train mirflickr ~/data/mirflickr25k --out runs/mirflickr
    python -m training.train library ~/Pictures --out runs/mine
    python -m training.train coco --annotations instances_train2017.json --images train2017/ --out runs/coco
    python -m training.train labels ../shared/data/coco128-dev --out runs/coco128
    tagd tag --model runs/mirflickr/bundle ~/Pictures

Steps: load and check the data (training/sources/) -> embed every photo once with the
EfficientNet-Lite0 backbone, as tagd sees it (training/embed.py, cached) -> split (the
dataset's standard split, else seeded random) -> train the sigmoid head on the cached
embeddings (training/fit.py; `--mode finetune` then also trains the top backbone blocks on
augmented photos, training/finetune.py) -> per-tag thresholds on the validation photos
(training/calibrate.py) -> evaluate on the test photos (training/metrics.py) -> export and
check the bundle (training/export.py) -> OUT/report.md with plots.

`--adversarial` adds a discriminator over tag sets (training/adversarial.py); compare the
two on the same folds with `python -m training.crossval`.

Run `python -m training.train SOURCE --help` for each source's options.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.cli_common import add_sources, common_options, embed_dataset, load_source, start  # noqa: E402
from training.dataset import DatasetError, Split, group_split, random_split  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    g = common.add_argument_group("output")
    g.add_argument("--out", type=Path, required=True, help="run folder: report.md, metrics.json, plots/, bundle/")
    g.add_argument("--bundle", type=Path, help="where to put the bundle (default OUT/bundle)")
    g.add_argument("--name", help="bundle name, recorded with every tag tagd writes (default tagd-DATASET)")
    g.add_argument("--no-export", action="store_true", help="train and evaluate only")

    g = common.add_argument_group("model and training")
    g.add_argument("--mode", choices=("head", "finetune"), default="head",
                   help="head: train on cached embeddings (minutes on a CPU); finetune: then also the top backbone blocks")
    g.add_argument("--loss", choices=("weighted", "asymmetric", "bce"), default="weighted",
                   help="weighted BCE (default), asymmetric (ASL) or plain BCE")
    g.add_argument("--epochs", type=int, help="head epochs (default: enough for 300 steps, at least 30)")
    g.add_argument("--batch-size", type=int, default=256)
    g.add_argument("--lr", type=float, default=0.01)
    g.add_argument("--l2", type=float, default=0.01, help="L2 penalty on the head's weights (0.01)")
    g.add_argument("--no-prior", action="store_true", help="do not start tags from the packaged model's matching tags")
    g.add_argument("--early-stopping", choices=("auto", "on", "off"), default="auto",
                   help="keep the epoch with the best validation mAP (auto: with >= 200 validation photos)")
    g.add_argument("--refit", choices=("auto", "on", "off"), default="auto",
                   help="after calibrating, train the head again on training + validation photos (auto: under 5000 photos)")
    g.add_argument("--finetune-blocks", type=int, default=2, help="backbone blocks trained in finetune mode (2)")
    g.add_argument("--finetune-epochs", type=int, default=3)
    g.add_argument("--finetune-batch-size", type=int, default=16)
    g.add_argument("--finetune-lr", type=float, default=1e-4)

    g = common.add_argument_group("adversarial learning")
    g.add_argument("--adversarial", action="store_true", help="train against a tag-set discriminator")
    g.add_argument("--adversarial-weight", type=float, default=0.1, help="weight of the adversarial term (0.1)")
    g.add_argument("--adversarial-conditional", action="store_true", help="the discriminator also sees the photo's embedding")

    g = common.add_argument_group("split, calibration, evaluation")
    g.add_argument("--split", choices=("auto", "standard", "random"), default="auto",
                   help="standard: the dataset's own (MIRFLICKR); random: seeded (auto: standard where there is one)")
    g.add_argument("--val-fraction", type=float, default=0.1, help="share of the photos for validation (0.1)")
    g.add_argument("--test-fraction", type=float, default=0.2, help="random split: share for testing (0.2)")
    g.add_argument("--thresholds", choices=("f1", "precision"), default="f1",
                   help="per-tag thresholds maximising F1 (default) or reaching --target-precision")
    g.add_argument("--target-precision", type=float, default=0.9)
    g.add_argument("--min-positives", type=int, default=1, help="mean AP over tags with at least this many test positives")

    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sources(parser, common)
    return parser


def choose_split(data, args: argparse.Namespace) -> tuple[Split, str]:
    has_standard = any(e.group for e in data.examples)
    kind = args.split
    if kind == "auto":
        kind = "standard" if has_standard else "random"
    if kind == "standard":
        if not has_standard:
            raise DatasetError(f"{data.name} has no standard split; use --split random")
        return group_split(data, args.seed, args.val_fraction), "standard (the dataset's own), validation seeded"
    return (random_split(len(data), args.seed, args.val_fraction, args.test_fraction),
            f"random, seed {args.seed}: {args.val_fraction:.0%} validation, {args.test_fraction:.0%} test")


def main(argv: list[str] | None = None) -> int:
    args, started = start(build_parser(), argv)
    try:
        return _run(args, started)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, started: float) -> int:
    import torch

    from training.adversarial import AdversarialConfig
    from training.calibrate import choose_thresholds
    from training.fit import REFIT_BELOW, TrainConfig, predict_views, train_head
    from training.head import TaggerNet, load_backbone
    from training.hierarchy import descendants, tag_scores
    from training.metrics import evaluate_scores
    from training.report import markdown, write_json, write_plots

    data = load_source(args)
    data, views = embed_dataset(data, args)
    for line in data.report.lines():
        print(line, file=sys.stderr)
    labels = data.label_matrix()
    split, split_text = choose_split(data, args)
    if len(split.train) == 0:
        raise DatasetError(f"{data.name}: no photos left to train on")
    columns = descendants(data.tags)
    prior = None
    if not args.no_prior:
        from training.prior import load_prior

        prior = load_prior(data.tags)
    adversarial = (AdversarialConfig(weight=args.adversarial_weight, conditional=args.adversarial_conditional)
                   if args.adversarial else None)
    config = TrainConfig(
        loss=args.loss, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, l2=args.l2,
        use_prior=prior is not None, adversarial=adversarial, seed=args.seed, device=args.device,
        early_stopping={"auto": None, "on": True, "off": False}[args.early_stopping],
        show_progress=not args.no_progress,
    )
    train, val, test = split.train, split.val, split.test
    fit = train_head(views[train], labels[train], config, prior=prior,
                     val_views=views[val, 0] if len(val) else None, val_labels=labels[val] if len(val) else None)
    history = list(fit.history)
    head = fit.head

    # Thresholds come from photos the head did not train on; without validation photos they
    # are fitted on the training photos, and the report says so.
    calib_idx, calib_note = (val, "validation photos") if len(val) else (train, "training photos (no validation split!)")
    refit = {"auto": len(train) + len(val) < REFIT_BELOW, "on": True, "off": False}[args.refit] and len(val) > 0

    net = TaggerNet(load_backbone(0), head)
    if args.mode == "finetune":
        from training.finetune import FinetuneConfig, embed_views, finetune

        net, ft_history = finetune(
            net, [data.examples[i].path for i in train], labels[train], config,
            FinetuneConfig(blocks=args.finetune_blocks, epochs=args.finetune_epochs,
                           batch_size=args.finetune_batch_size, lr=args.finetune_lr),
            val_paths=[data.examples[i].path for i in val], val_labels=labels[val] if len(val) else None,
        )
        history += [{**h, "epoch": len(fit.history) + h["epoch"], "stage": "finetune"} for h in ft_history]
        refit = False  # too slow to repeat; and the fine-tuned backbone changed the embeddings

        def score(idx: np.ndarray) -> np.ndarray:
            return tag_scores(embed_views(net, [data.examples[i].path for i in idx], args.device)[0], columns)
    else:
        def score(idx: np.ndarray) -> np.ndarray:
            return tag_scores(predict_views(net.head, views[idx, 0], args.device), columns)

    thresholds = choose_thresholds(score(calib_idx), labels[calib_idx], mode=args.thresholds, target=args.target_precision)
    if refit:
        both = np.sort(np.concatenate([train, val]))
        final = train_head(views[both], labels[both], replace(config, show_progress=False), prior=prior, epochs=fit.best_epoch)
        net = TaggerNet(load_backbone(0), final.head)

    eval_idx, evaluated_on = (test, "test") if len(test) else (calib_idx, calib_note)
    test_scores = score(eval_idx)
    ev = evaluate_scores(data.tag_names, test_scores, labels[eval_idx], thresholds.values, args.min_positives)

    args.out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(args.out, ev, test_scores, labels[eval_idx], thresholds.values, history, args.min_positives)
    settings = {
        "mode": args.mode + (f" (top {args.finetune_blocks} blocks, {args.finetune_epochs} epochs)" if args.mode == "finetune" else ""),
        "head": "linear on the standardised embedding" + (" + the packaged model's tag scores (prior)" if prior is not None else ""),
        "loss": args.loss, "seed": args.seed, "device": args.device,
        "adversarial": (f"on, weight {args.adversarial_weight}" + (", conditional" if args.adversarial_conditional else "")
                        + (f"; discriminator accuracy at the end {fit.discriminator_accuracy:.2f}" if fit.discriminator_accuracy is not None else ""))
                       if args.adversarial else "off",
        "head epochs": f"{fit.epochs_run} run, best {fit.best_epoch}" + ("; refitted on training + validation photos" if refit else ""),
        "split": split_text,
        "thresholds": f"{args.thresholds}" + (f" (target precision {args.target_precision})" if args.thresholds == "precision" else "")
                      + f", chosen on {calib_note}",
        "augmentation": "none" if args.no_mirror else "mirrored views (cached)" + ("; random crops, flips, light and colour (finetune)" if args.mode == "finetune" else ""),
    }
    if prior is not None:
        settings["started from packaged tags"] = ", ".join(f"{data.tag_names[t]}~{n}" for t, n in prior.matched.items()) or "none matched"

    bundle_dir = None
    version = None
    metrics = {"evaluation": ev.as_dict(), "thresholds": thresholds.as_dict(data.tag_names), "split": split.sizes(),
               "data": data.report.as_dict(), "history": history, "settings": settings}
    if not args.no_export:
        from training.export import write_bundle

        bundle_dir = args.bundle or args.out / "bundle"
        name = args.name or f"tagd-{data.name}"
        bundle = write_bundle(
            net.cpu(), data.tags, thresholds.values, bundle_dir, name=name,
            description=f"EfficientNet-Lite0 with a {len(data.tags)}-tag sigmoid head trained on {data.name} ({args.mode} mode)",
            probe_paths=[data.examples[i].path for i in eval_idx[:8]],
            training={
                "source": data.report.source, "dataset": data.name, "dataset_sha256": data.fingerprint(),
                "photos": split.sizes(), "mode": args.mode, "seed": args.seed, "loss": args.loss,
                "adversarial": args.adversarial, "prior": prior is not None,
                "mean_ap": ev.mean_ap, "f1_at_3": ev.f1_at_3, "evaluated_on": evaluated_on,
                "torch": torch.__version__, "python": platform.python_version(),
            },
        )
        version = f"{bundle['name']}@{bundle['model_sha256'][:12]}"
        metrics["bundle"] = {"path": str(bundle_dir), "version": version}
    text = markdown(title=f"Tagger trained on {data.name}", data_lines=data.report.lines(), settings=settings,
                    split=split.sizes(), ev=ev, thresholds=thresholds.values, train_positives=labels[train].sum(0),
                    plots=plots, bundle_dir=bundle_dir, version=version, min_positives=args.min_positives,
                    evaluated_on=evaluated_on)
    (args.out / "report.md").write_text(text)
    write_json(args.out / "metrics.json", metrics)
    torch.save(net.head.state_dict(), args.out / "head.pt")
    elapsed = time.monotonic() - started
    print(f"mean AP {ev.mean_ap:.4f} ({ev.mean_ap_tags} tags), F1@3 {ev.f1_at_3:.4f}, "
          f"P/R/F1 at thresholds {ev.at_thresholds['precision']:.3f}/{ev.at_thresholds['recall']:.3f}/{ev.at_thresholds['f1']:.3f} "
          f"on {len(eval_idx)} {evaluated_on} photos; report {args.out / 'report.md'}")
    if bundle_dir is not None:
        print(f"bundle {bundle_dir} ({version}): tagd tag --model {bundle_dir} PHOTOS")
    print(f"RESULT mean_ap={ev.mean_ap:.4f} f1_at_3={ev.f1_at_3:.4f} f1={ev.at_thresholds['f1']:.4f} seconds={elapsed:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
