"""Command-line pieces shared by train.py and crossval.py: the data source and its options."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from training.dataset import DatasetError, LabelledSet, drop_rare_tags

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path.home() / ".cache" / "tagd" / "embeddings"


def add_sources(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """One sub-command per data source, each taking the `common` options too."""
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    p = sub.add_parser("mirflickr", parents=[common], help="MIRFLICKR-25K as distributed",
                       description="MIRFLICKR-25K: ROOT holds mirflickr/ and mirflickr25k_annotations_v080/.")
    p.add_argument("root", type=Path, help="folder holding mirflickr/ (and the annotation folder)")
    p.add_argument("--labels", choices=("potential", "relevant", "tags"), default="potential",
                   help="the 24 concepts (potential, default), the 14 strict ones (relevant), or the owners' Flickr tags")
    p.add_argument("--annotations", type=Path, help="annotation folder, if not beside mirflickr/")
    p.add_argument("--min-count", type=int, default=50, help="with --labels tags: keep tags on at least this many photos (50)")

    p = sub.add_parser("library", parents=[common], help="your own photos, their keywords as labels",
                       description="Train on a folder of your photos; their keywords (in the file or an .xmp sidecar) are the labels.")
    p.add_argument("folder", type=Path)
    p.add_argument("--min-count", type=int, default=10, help="keep keywords used on at least this many photos (10)")
    p.add_argument("--include-tagd-tags", action="store_true", help="also learn from keywords tagd added itself")

    p = sub.add_parser("coco", parents=[common], help="a COCO instances JSON and its images",
                       description="COCO object annotations as image-level tags, supercategories as parents.")
    p.add_argument("--annotations", type=Path, required=True, help="instances_*.json")
    p.add_argument("--images", type=Path, required=True, help="the folder its file_names are in")
    p.add_argument("--flat", action="store_true", help="no supercategory parents")
    p.add_argument("--min-count", type=int, default=1, help="keep categories on at least this many photos (1)")

    p = sub.add_parser("labels", parents=[common], help="a folder with labels.json and images/",
                       description="The simple labels file of coco128-dev: {categories, images: {file: {labels}}}.")
    p.add_argument("folder", type=Path)
    p.add_argument("--min-count", type=int, default=1, help="keep categories on at least this many photos (1)")


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--allow-missing", action="store_true", help="train without photos the annotations list but the disk lacks")
    common.add_argument("--seed", type=int, default=0, help="seed for splits, initialisation and batches (0)")
    common.add_argument("--device", default="cpu", help="cpu (default) or cuda when a GPU is present")
    common.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"embedding cache folder ({DEFAULT_CACHE})")
    common.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    common.add_argument("--no-mirror", action="store_true", help="do not embed mirrored photos (halves embedding time; no augmentation in fast mode)")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    common.add_argument("-v", "--verbose", action="store_true")
    return common


def load_source(args: argparse.Namespace) -> LabelledSet:
    if args.source == "mirflickr":
        from training.sources import mirflickr

        data = mirflickr.load(args.root, labels=args.labels, annotations=args.annotations,
                              min_count=args.min_count, allow_missing=args.allow_missing)
    elif args.source == "library":
        from training.sources import library

        data = library.load(args.folder, min_count=args.min_count, include_tagd_tags=args.include_tagd_tags,
                            show_progress=not args.no_progress)
    elif args.source == "coco":
        from training.sources import coco

        data = coco.load_instances(args.annotations, args.images, hierarchy=not args.flat, allow_missing=args.allow_missing)
    elif args.source == "labels":
        from training.sources import coco

        data = coco.load_labels_file(args.folder, allow_missing=args.allow_missing)
    else:  # argparse keeps this unreachable
        raise DatasetError(f"unknown source {args.source}")
    if args.source in ("coco", "labels"):
        # Also drops categories with no photo at all: nothing to learn or measure there.
        data = drop_rare_tags(data, max(1, args.min_count))
    return data


def embed_dataset(data: LabelledSet, args: argparse.Namespace) -> tuple[LabelledSet, np.ndarray]:
    """Embeddings of every photo, aligned with the returned set; undecodable photos are
    dropped from it and listed in its report."""
    from training.embed import Embedder

    embedder = Embedder(device=args.device, cache_dir=None if args.no_cache else args.cache,
                        mirrored=not args.no_mirror, show_progress=not args.no_progress)
    emb = embedder.embed([e.path for e in data.examples])
    if emb.failed:
        data.report.corrupt.update(emb.failed)
        data = data.without(Path(p) for p in emb.failed)
        data.report.found = len(data.examples)
    if not data.examples:
        raise DatasetError(f"{data.name}: no photo could be decoded")
    return data, emb.views


def check_device(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(f"--device {device}: no CUDA device visible to torch (torch {torch.__version__})")
    elif device != "cpu":
        raise SystemExit(f"--device {device}: use cpu or cuda")
    return device


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def start(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, float]:
    """What every training command does first: parse, set up logging, check the device."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    check_device(args.device)
    return args, time.monotonic()
