"""`python -m tagd.index search|show|similar|stats ...`: the index commands on their own.

The same commands as `tagd search` etc. (tagd.cli registers them); this entry point lets them be
run and benchmarked without the rest of the CLI.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from tagd.errors import TagdError
from tagd.index.commands import register


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tagd.index", description="The tagd index commands.")
    parser.add_argument("--config", type=Path, metavar="PATH", help="config file")
    parser.add_argument("--index", type=Path, metavar="PATH", help="index database")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except TagdError as exc:
        print(f"tagd {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
