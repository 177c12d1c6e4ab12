"""`tagd backfill --ray ADDRESS ROOT...`: a large tree tagged on a Ray cluster (tagd.backfill).

Ray is an extra (`pip install 'tagd[ray]'`): it is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tagd.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, positive


def add_parsers(sub: argparse._SubParsersAction) -> None:
    backfill = sub.add_parser(
        "backfill", help="tag a large tree on a Ray cluster (resumable)",
        description="Plan on this machine as `tagd scan` does (new, changed, moved, gone), then tag and write the "
                    "photos in batches on a Ray cluster (each worker loads the model once, onnxruntime on one thread); "
                    "this machine records each batch in the index as it arrives. Killed or interrupted, a rerun does only what "
                    "is left. Every machine of the cluster must see the photos at the same paths. "
                    "Needs Ray: pip install 'tagd[ray]'.")
    backfill.add_argument("roots", nargs="*", type=Path, metavar="ROOT", help="folders (default: watch.roots)")
    backfill.add_argument("--ray", required=True, metavar="ADDRESS", dest="ray_address",
                          help="`local` for a cluster on this machine alone, else the address of a running cluster "
                               "(as ray.init takes it: auto, HOST:6379, ray://HOST:10001)")
    backfill.add_argument("--workers", type=positive, metavar="N",
                          help="workers, one CPU each in Ray's accounting (default: every CPU of the cluster)")
    backfill.add_argument("--batch", type=positive, metavar="N",
                          help="photos a worker tags per task (default 64, tagd.backfill.BATCH)")
    backfill.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> int:
    from tagd.backfill import BATCH, backfill, require_ray
    from tagd.cli.common import folders, open_index
    from tagd.config import load_settings

    settings = load_settings(args.config)
    roots = folders(args.roots, settings, "backfill")
    require_ray()  # before the index is touched
    index = open_index(args, settings)
    try:
        report = backfill(index, settings, roots, address=args.ray_address, workers=args.workers,
                          batch_size=args.batch or BATCH, verbose=args.verbose > 0)
    finally:
        index.close()
    r = report
    on = f" on {r.workers} Ray worker{'s' if r.workers != 1 else ''}" if r.workers else ""
    cost = f", {r.cpu_s * 1000 / max(r.tagged, 1):.0f} ms CPU a photo, workers up in {r.start_s:.1f} s" if r.workers else ""
    print(f"backfilled {', '.join(map(str, roots))}{on}: {r.tagged} tagged ({r.failed} failed), "
          f"{r.moved} moved, {r.gone} gone, {r.unchanged + r.skipped} unchanged "
          f"in {r.elapsed_s:.1f} s ({(r.tagged + r.skipped) / max(r.elapsed_s, 1e-9):.1f} photos/s{cost})",
          file=sys.stderr)
    if r.interrupted:
        print(f"tagd backfill: interrupted: {r.planned - r.tagged - r.skipped} photos left for the next run",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if r.failed else EXIT_OK
