"""The `tagd` command: one parser, one table of exit codes (tagd.cli.common), one way to report
an error (`tagd COMMAND: reason` on stderr).

The commands live by area, each module adding its parsers:
  photos.py   tag, revert, accept, reject      (photos named on the command line)
  service.py  run, scan, config                (the daemon and what it watches)
  queries.py  search, show, similar, stats     (the index; no model runtime at start-up)
  web.py      web                              (the browser app, tagd.web)
  backfill.py backfill                         (a large tree on a Ray cluster; Ray imported there only)
Heavy modules (onnxruntime, numpy, the model) are imported inside the commands that need them,
so `tagd search` and `tagd show` start in milliseconds.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from tagd import __version__
from tagd.cli import backfill, photos, queries, service, web
from tagd.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, index_target, log
from tagd.errors import TagdError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"tagd {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TagdError as exc:
        print(f"tagd {args.command}: {exc}", file=sys.stderr)
        log.debug("details", exc_info=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `tagd tag dir | head`: the reader left; that is not an error worth a traceback.
        sys.stderr.close()
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagd",
        description="Tag photos with a CNN, write the tags into the files, and search them.",
    )
    parser.add_argument("--version", action="version", version=f"tagd {__version__}")
    parser.add_argument("--config", type=Path, metavar="PATH", help="config file (default: /etc/tagd/config.toml, then $XDG_CONFIG_HOME/tagd/config.toml)")
    parser.add_argument("--index", type=index_target, metavar="PATH|URL",
                        help="index database: an SQLite file (default: $XDG_DATA_HOME/tagd/index.sqlite3) "
                             "or a postgresql:// URL")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    # The same options are accepted after the command too (`tagd run --index x.db ~/Pictures`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--index", type=index_target, metavar="PATH|URL", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_parser = sub.add_parser
    sub.add_parser = lambda *a, **kw: _add_parser(*a, parents=[common], **kw)  # type: ignore[method-assign]
    for area in (photos, service, queries, web, backfill):
        area.add_parsers(sub)
    return parser


__all__ = ["main", "build_parser"]
