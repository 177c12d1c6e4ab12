"""`tagd run` (the daemon), `tagd scan` and `tagd config`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from tagd.cli.common import EXIT_FAILED, EXIT_OK, folders, open_index, log


def add_parsers(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="watch folders and tag new photos (the daemon)",
                         description="Watch folders (recursively) and tag, write and index every new or changed photo. "
                                     "Folders given here replace watch.roots from the config.")
    run.add_argument("roots", nargs="*", type=Path, metavar="ROOT", help="folders to watch (default: watch.roots)")
    run.set_defaults(func=cmd_run)

    scan = sub.add_parser("scan", help="tag what changed under folders once, in the foreground",
                          description="Reconcile folders with the index once: tag new and changed photos, record moves "
                                      "(without re-tagging) and deletions, with a progress line.")
    scan.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="folders (default: watch.roots)")
    scan.set_defaults(func=cmd_scan)

    config = sub.add_parser("config", help="show or check the configuration",
                            description="`tagd config show`: every key, its value and what it means; "
                                        "`tagd config check`: validate and exit 0, or name the bad key and exit 1.")
    config.add_argument("action", choices=["show", "check"])
    config.set_defaults(func=cmd_config)


def _daemon_logging(verbose: int) -> None:
    # journald timestamps every line itself; info level is the one-line-per-photo log.
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def cmd_run(args: argparse.Namespace) -> int:
    from tagd.config import load_settings
    from tagd.daemon import Daemon

    settings = load_settings(args.config)  # an invalid config fails here, before anything is touched
    folders(args.roots, settings, "watch")  # the daemon resolves them itself (and again on SIGHUP)
    if args.index:
        settings.index.use(args.index)
    _daemon_logging(args.verbose)
    return Daemon(settings, args.roots or None, args.config).run()


def cmd_scan(args: argparse.Namespace) -> int:
    from tagd.config import load_settings
    from tagd.pipeline import make_pipeline, make_tagger, make_writer
    from tagd.photos import PathFilter
    from tagd.scan import Progress, plan

    settings = load_settings(args.config)
    roots = folders(args.paths, settings, "scan")
    s = settings
    writer = make_writer(settings)
    tagger = make_tagger(settings)
    model = tagger.model
    index = open_index(args, settings)
    try:
        index.set_vocabulary((t.name, t.parents, t.synonyms) for t in tagger.vocabulary.tags)
        filter_ = PathFilter(roots, s.watch.extensions, s.watch.include, s.watch.exclude)
        found = plan(index, roots, filter_, model.version, s.watch.follow_symlinks)
        for old, new in found.moves:
            index.move(old, new)
        for path in found.gone:
            index.mark_gone(path)
        progress = Progress(len(found.work))
        failed = 0
        for outcome in make_pipeline(settings, tagger, writer, index).run(found.work, skip_unchanged=True):
            progress.step(outcome.ok)
            if not outcome.ok:
                failed += 1
                log.warning("%s: %s", outcome.path, outcome.error)
        progress.close()
    finally:
        index.close()
        writer.exiftool.close()
    elapsed = time.monotonic() - progress.started
    print(f"scanned {', '.join(map(str, roots))}: {len(found.work)} tagged or retried ({failed} failed), "
          f"{len(found.moves)} moved, {len(found.gone)} gone, {found.unchanged} unchanged "
          f"in {elapsed:.1f} s ({len(found.work) / max(elapsed, 1e-9):.1f} photos/s)", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    from tagd.config import config_search_path, describe, load_settings

    settings = load_settings(args.config)
    if args.index:
        settings.index.use(args.index)  # what every other command would use
    if args.action == "check":
        used = [str(args.config)] if args.config else [str(p) for p in config_search_path() if p.is_file()]
        print(f"configuration OK ({', '.join(used) or 'defaults only'})")
        return EXIT_OK
    for key, value, description in describe(settings):
        shown = json.dumps([str(v) for v in value] if isinstance(value, list) else (str(value) if isinstance(value, Path) else value))
        print(f"{key} = {shown}\n    {description}")
    return EXIT_OK
