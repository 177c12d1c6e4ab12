"""What every command shares: the exit codes, the usage error, the photos a command line names,
the index it opens, the one-line summary of a run. One table of exit codes for all of tagd:

  0  done (search: something found)
  1  a photo failed, nothing was found, or tagd could not do what was asked (the line says why)
  2  the command line or the query is wrong
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from tagd.errors import TagdError

log = logging.getLogger("tagd")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_NO_MATCH = EXIT_FAILED  # search, show, similar: nothing found


class UsageError(TagdError):
    """The command line asks for something inconsistent (exit 2)."""


def index_target(text: str) -> Path | str:
    """`--index`: an SQLite file, or a postgresql:// URL (which a Path would mangle)."""
    from tagd.index.postgres import is_url

    return text if is_url(text) else Path(text)


def open_index(args: argparse.Namespace, settings):  # noqa: ANN001, ANN202
    from tagd.index.db import Index

    return Index(args.index or settings.index.target())


def existing_index(args: argparse.Namespace, settings):  # noqa: ANN001, ANN202
    """The index if there is one: reverting a photo never creates an index (a server's always is)."""
    target = args.index or settings.index.target()
    return open_index(args, settings) if isinstance(target, str) or Path(target).exists() else None


def select_photos(args: argparse.Namespace, settings):  # noqa: ANN001, ANN202 - Settings, photos.Selection
    """The photos the command line names, found as scan and the daemon find them (tagd.photos):
    the same formats and globs (watch.*), and no symlink followed out of the folders given.
    Paths stay absolute but unresolved: the index holds them so, and a symlinked folder keeps
    the name it was given."""
    from tagd.photos import select

    w = settings.watch
    return select(args.paths, w.extensions, w.include, w.exclude, w.follow_symlinks)


def exit_status(command: str, done: int, failed: int) -> int:
    """No photo at all is a failure with its own message; otherwise any failed photo is."""
    if done == 0:
        print(f"tagd {command}: no photos found", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if failed else EXIT_OK


def counted_failure(item) -> int:  # noqa: ANN001 - TagResult or PhotoOutcome
    """1 for a photo that failed, else 0. Its row on stdout says why; the same line goes to stderr
    too when stdout is not a terminal (redirected, the errors still show), else only with -v: in a
    terminal both streams land on one screen, and each error read twice."""
    if item.ok:
        return 0
    log.log(logging.INFO if stdout_is_terminal() else logging.WARNING, "%s: %s", item.path, item.error)
    return 1


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def positive(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def folders(given: Sequence[Path], settings, verb: str) -> list[Path]:  # noqa: ANN001 - Settings
    """The folders `run`, `scan` or `backfill` work on (the command line's, else watch.roots), each one there:
    the same usage error from each, before the model or the index is touched."""
    roots = [Path(os.path.abspath(p)) for p in (given or settings.watch.roots)]
    if not roots:
        raise UsageError(f"nothing to {verb}: give folders (`tagd {'run' if verb == 'watch' else verb} ~/Pictures`) "
                         "or set watch.roots in the config")
    missing = [r for r in roots if not r.is_dir()]
    if missing:
        raise UsageError(f"not a folder: {missing[0]}")
    return roots
