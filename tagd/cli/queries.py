"""`tagd search`, `tagd show`, `tagd similar`, `tagd stats`: parse, call the index, print.

Each command returns an exit status (tagd.cli.common) and raises TagdError for a failure a user
can act on. Start-up stays light: no numpy, onnxruntime, PIL or tagd.model at import; only
`tagd similar` on a photo that is not in the index loads the tagger (embed_photo).

Over 400 lines: the four index commands share the reading of query words among options, the
index they open and the way they print; each command itself is short.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from tagd.cli.common import EXIT_NO_MATCH, EXIT_OK, EXIT_USAGE, positive
from tagd.errors import ReadError
from tagd.index.errors import NotIndexedError, QueryError
from tagd.index.query_tree import SORTS
from tagd.output import json_line, write as _write

QUERY_HELP = """\
query language (details: README, "Searching the index"):
  dog beach                 both tags (AND is implicit)
  dog OR cat, NOT dog, -dog, (dog OR cat) -indoor
  animal                    hierarchy: also photos tagged cat, dog, ...
  couch                     synonyms: finds sofa
  "hot air balloon"         a tag with spaces;  tag:ca*  a prefix
  dog:>0.8  dog:0.5..0.9    the tag's score;  dog:user  its source;  dog:suggested  its state
  taken:2024-06..2024-08  taken:>2023  taken:2024-06-15
  path:Pictures/2024/*  camera:pixel  status:failed  source:user  state:removed
a photo has a tag when its state is kept or added; --suggestions also counts suggested ones.
exit status: 0 found, 1 nothing found (stderr names words no tag is called), 2 bad query."""


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """search, show, similar and stats."""
    _add(subparsers, "search", _search_parser, cmd_search,
         help="find photos in the index with a query",
         description="Find photos in the index. Prints one path per line, best match first.")
    _add(subparsers, "show", _show_parser, cmd_show,
         help="show one photo's tags from the index",
         description="Show what the index holds for photos: tags with score, source and state, model, dates.")
    _add(subparsers, "similar", _similar_parser, cmd_similar,
         help="find photos of the same subject",
         description="Find the photos nearest to PATH by embedding (what is in them). "
                     "A photo that is not in the index is embedded on the fly.")
    _add(subparsers, "stats", _stats_parser, cmd_stats,
         help="index statistics",
         description="Photos by status, most common tags, failed files with reasons, index size.")


def _add(
    subparsers: argparse._SubParsersAction,
    name: str,
    build: Callable[[argparse.ArgumentParser], None],
    func: Callable[[argparse.Namespace], int],
    **kwargs: Any,
) -> None:
    parser = subparsers.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    build(parser)
    parser.set_defaults(func=func)


def embed_photo(args: argparse.Namespace, path: Path):  # noqa: ANN201 - numpy array, imported lazily
    """`tagd similar` on a photo that is not in the index: embed it with the configured tagger."""
    from tagd.config import load_settings
    from tagd.model import Model
    from tagd.tagger import Tagger

    m = load_settings(getattr(args, "config", None)).model
    tagger = Tagger(Model(getattr(args, "model", None) or m.path, threads=m.threads, providers=m.providers),
                    batch_size=1, decode_workers=1, max_decode_pixels=m.max_decode_pixels)
    result = next(iter(tagger.tag_paths([path])))
    if not result.ok or result.embedding is None:
        raise ReadError(path, result.error or "no embedding")
    return result.embedding


class _QueryWords(argparse.Action):
    """The query: every word after the options, with the options written among them applied.

    REMAINDER, so that `tagd search dog -cat` reads -cat as part of the query rather than as an
    unknown option. A word that is an option of the command (its own, and the global --index,
    --config and -v that tagd adds to every command) is applied as that option wherever it
    stands, so `tagd search dog --index x.db` searches x.db; everything after `--` is query.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        words, options = _split_query(parser, list(values or []))
        if options:
            before = (getattr(namespace, "json", False), getattr(namespace, "count", False))
            # Parsed by the same parser, into the same namespace: types, choices and errors as
            # anywhere else on the line. (This action runs again for the empty query there.)
            parser.parse_args(options, namespace)
            if (namespace.json or before[0]) and (namespace.count or before[1]):
                parser.error("argument --count: not allowed with argument --json")
        setattr(namespace, self.dest, words)


def _split_query(parser: argparse.ArgumentParser, tokens: list[str]) -> tuple[list[str], list[str]]:
    """(query words, option tokens) from the words after the command's leading options."""
    known = parser._option_string_actions
    words: list[str] = []
    options: list[str] = []
    rest = iter(tokens)
    for token in rest:
        if token == "--":
            words.extend(rest)
            break
        name = token.partition("=")[0] if token.startswith("--") else token
        action = known.get(name)
        if action is None and len(token) > 2 and token.strip("v") == "-" and "-v" in known:
            action = known["-v"]  # -vv: a count flag repeated
        if action is None:
            words.append(token)
            continue
        options.append(token)
        if action.nargs != 0 and name == token:  # an option with a value, given as the next word
            value = next(rest, None)
            if value is not None:
                options.append(value)
    return words, options


def _search_parser(p: argparse.ArgumentParser) -> None:
    p.epilog = QUERY_HELP
    p.add_argument(
        "query", nargs=argparse.REMAINDER, action=_QueryWords, metavar="QUERY",
        help="query words, joined with spaces (none: every photo); quote phrases for the shell: "
             "'\"hot air balloon\"'; options may come before or after them; a query that starts with - "
             "needs -- first: tagd search -- -cat",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per photo per line: path, score, taken")
    out.add_argument("--count", action="store_true", help="print only the number of matching photos")
    p.add_argument("-0", "--null", action="store_true", help="end paths with NUL instead of newline (for xargs -0)")
    p.add_argument("--sort", choices=SORTS, default="score", help="score: best tag score first (default); taken: newest first; path")
    p.add_argument("--limit", type=_non_negative, metavar="N", help="at most N photos")
    p.add_argument("--suggestions", action="store_true", help="count suggested tags as present")


def _show_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos")
    p.add_argument("--json", action="store_true", help="one JSON object per photo per line")


def _similar_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, metavar="PATH", help="a photo, in the index or not")
    p.add_argument("-k", "--limit", dest="k", type=positive, default=10, metavar="N", help="how many photos (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON object per photo per line: path, score")
    p.add_argument("-0", "--null", action="store_true", help="end paths with NUL instead of newline")
    p.add_argument("--model", type=Path, metavar="DIR", help="model bundle for a photo not in the index (default: config model.path)")


def _stats_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--top", type=_non_negative, default=20, metavar="N", help="how many of the most common tags (default 20)")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def index_path(args: argparse.Namespace) -> Path | str:
    """The SQLite file or the postgresql:// URL the query commands read."""
    if getattr(args, "index", None):
        return args.index
    from tagd.config import load_settings  # pydantic: only when no --index was given

    return load_settings(getattr(args, "config", None)).index.target()


def _open(args: argparse.Namespace):  # noqa: ANN202 - tagd.index.db.Index
    from tagd.index.db import Index

    return Index(index_path(args), readonly=True)


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


# -- search ------------------------------------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    query = " ".join(args.query or [])
    try:
        from tagd.index.query import parse

        parse(query)  # a syntax error is reported before the index is even opened
    except QueryError as exc:
        _query_error(query, exc)
        return EXIT_USAGE
    with _open(args) as index:
        if args.count:
            n = index.count(query, suggestions=args.suggestions)
            _write(f"{n}\n")
            if not n:
                _unknown_words_hint(index, query)
            return EXIT_OK if n else EXIT_NO_MATCH
        hits = index.search(query, sort=args.sort, limit=args.limit, suggestions=args.suggestions)
        if not hits:
            _unknown_words_hint(index, query)
    end = "\0" if args.null else "\n"
    for start in range(0, len(hits), 1024):
        out = []
        for hit in hits[start:start + 1024]:
            if args.json:
                out.append(json_line({
                    "path": str(hit.path),
                    "score": round(hit.score, 4),
                    "taken": hit.taken.isoformat() if hit.taken else None,
                }))
            else:
                out.append(str(hit.path) + end)
        _write("".join(out), json_lines=args.json)
    sys.stdout.flush()
    return EXIT_OK if hits else EXIT_NO_MATCH


def _unknown_words_hint(index: Any, query: str) -> None:
    """Nothing found: name the words no tag is called (a typo, a lowercase `or`), on stderr, so
    that stdout stays what a script expects of an empty result."""
    for unknown in index.unknown_words(query):
        print(f"tagd search: {unknown}", file=sys.stderr)


def _query_error(query: str, exc: QueryError) -> None:
    print(f"tagd search: {exc}", file=sys.stderr)
    if sys.stderr.isatty():
        print(f"  {query}\n  {' ' * (exc.col - 1)}^", file=sys.stderr)


# -- show --------------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    status = EXIT_OK
    with _open(args) as index:
        for given in args.paths:
            record = index.get(_absolute(given), embedding=False)
            if record is None and _absolute(given) != given.resolve():
                record = index.get(given.resolve(), embedding=False)
            if record is None:
                print(f"tagd show: {NotIndexedError(given)}", file=sys.stderr)
                status = EXIT_NO_MATCH
                continue
            _write(_show_json(record) if args.json else _show_text(record), json_lines=args.json)
    return status


_STATE_ORDER = {s: i for i, s in enumerate(("kept", "added", "suggested-removal", "suggested", "removed", "rejected"))}


def _show_json(record: Any) -> str:
    return json_line({
        "path": str(record.path),
        "status": record.status,
        "reverted": record.reverted,
        "error": record.error,
        "model_version": record.model_version,
        "tagged_at": _iso(record.tagged_at),
        "taken": _iso(record.taken),
        "camera": record.camera,
        "width": record.width,
        "height": record.height,
        "size": record.size,
        "mtime_ns": record.mtime_ns,
        "content_hash": record.content_hash,
        "tags": [
            {"name": t.name, "score": t.score, "source": t.source, "state": t.state}
            for t in sorted(record.tags, key=_tag_order)
        ],
        "regions": [{"label": r.label, "score": r.score, "x": r.x, "y": r.y, "w": r.w, "h": r.h} for r in record.regions],
    })


def _show_text(record: Any) -> str:
    lines = [str(record.path)]
    status = record.status + (f": {record.error}" if record.error else "")
    lines.append(f"  status   {status}")
    if record.reverted:
        lines.append("  reverted tagd's tags taken back (tagd revert); left alone until `tagd tag --write` on it")
    if record.model_version or record.tagged_at:
        when = f", tagged {_human_time(record.tagged_at)}" if record.tagged_at else ""
        lines.append(f"  model    {record.model_version or '-'}{when}")
    if record.taken:
        lines.append(f"  taken    {_human_time(record.taken)}")
    if record.camera:
        lines.append(f"  camera   {record.camera}")
    size = f"{record.size / 1e6:.1f} MB"
    if record.width and record.height:
        size = f"{record.width}x{record.height}, {size}"
    lines.append(f"  file     {size}" + (f", sha256 {record.content_hash[:16]}…" if record.content_hash else ""))
    if record.tags:
        width = max(len(t.name) for t in record.tags)
        lines.append("  tags")
        for t in sorted(record.tags, key=_tag_order):
            lines.append(f"    {t.name:<{width}}  {t.score:.2f}  {t.source:<10}  {t.state}")
    else:
        lines.append("  tags     -")
    if record.regions:
        width = max(len(r.label) for r in record.regions)
        lines.append("  regions  (centre x, y and size w x h, as fractions of the photo)")
        for r in record.regions:
            lines.append(f"    {r.label:<{width}}  {r.score:.2f}  at {r.x:.2f}, {r.y:.2f}  size {r.w:.2f} x {r.h:.2f}")
    return "\n".join(lines) + "\n"


def _tag_order(t: Any) -> tuple[int, float, str]:
    return (_STATE_ORDER.get(t.state, 9), -t.score, t.name)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _human_time(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds")


# -- similar -----------------------------------------------------------------------------------


def cmd_similar(args: argparse.Namespace) -> int:
    path = _absolute(args.path)
    with _open(args) as index:
        embedding = index.embedding(path)
        if embedding is None and path != args.path.resolve():
            embedding = index.embedding(args.path.resolve())
            path = args.path.resolve() if embedding is not None else path
        if embedding is None:
            # Not in the index, so it must be a photo to embed: say what it is instead.
            if not os.path.lexists(path):
                raise ReadError(args.path, "no such file")
            if not path.is_file():
                raise ReadError(args.path, "not a file (tagd similar takes one photo)")
            embedding = embed_photo(args, path)
        hits = index.similar(embedding, k=args.k, exclude=path)
    end = "\0" if args.null else "\n"
    for hit_path, score in hits:
        if args.json:
            _write(json_line({"path": str(hit_path), "score": round(score, 4)}), json_lines=True)
        else:
            _write(str(hit_path) + end)
    return EXIT_OK if hits else EXIT_NO_MATCH


# -- stats -------------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as index:
        stats = index.stats(top=args.top)
    if args.json:
        _write(json_line(stats), json_lines=True)
        return EXIT_OK
    p, ix = stats["photos"], stats["index"]
    lines = [
        f"index       {ix['path']} ({_size(ix['bytes'])}, schema {ix['schema_version']})",
        f"photos      {p['total']:,}: {p['tagged']:,} tagged, {p['failed']:,} failed, {p['pending']:,} pending"
        + (f" ({p['gone']:,} gone, not counted)" if p["gone"] else ""),
        f"embeddings  {stats['embeddings']:,}",
        f"tags        {stats['tags']['in_use']:,} in use, {stats['tags']['vocabulary']:,} in the vocabulary",
    ]
    for m in stats["models"]:
        lines.append(f"model       {m['version'] or '(none)'}: {m['photos']:,} photos")
    top = stats["tags"]["top"]
    if top:
        width = max(len(t["name"]) for t in top)
        lines.append("most common tags")
        lines.extend(f"  {t['name']:<{width}}  {t['photos']:,}" for t in top)
    failed = stats["failed"]
    if failed["total"]:
        shown = len(failed["files"])
        lines.append(f"failed      {failed['total']:,}" + (f" (first {shown})" if shown < failed["total"] else ""))
        lines.extend(f"  {f['path']}: {f['error'] or 'unknown reason'}" for f in failed["files"])
    _write("\n".join(lines) + "\n")
    return EXIT_OK


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("KB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


__all__ = ["add_parsers", "cmd_search", "cmd_show", "cmd_similar", "cmd_stats", "QUERY_HELP"]
