"""The `tagd` command: parse, call one library function, turn TagdError into a message + exit code.

Heavy modules (onnxruntime, numpy, the model) are imported inside the commands that need
them, so `tagd search` and `tagd show` start in milliseconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from tagd import __version__
from tagd.errors import TagdError
from tagd.output import json_line, write

log = logging.getLogger("tagd")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(TagdError):
    """The command line asks for something inconsistent (exit 2)."""


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
        print(f"tagd {args.command}: {exc}", file=sys.stderr)  # as `python -m tagd.index` says it
        log.debug("details", exc_info=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
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
    parser.add_argument("--index", type=Path, metavar="PATH", help="index database (default: $XDG_DATA_HOME/tagd/index.sqlite3)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    # The same options are accepted after the command too (`tagd run --index x.db ~/Pictures`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--index", type=Path, metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_parser = sub.add_parser
    sub.add_parser = lambda *a, **kw: _add_parser(*a, parents=[common], **kw)  # type: ignore[method-assign]

    tag = sub.add_parser("tag", help="tag photos now, without the daemon", description="Tag files or folders now and print the tags. Without --write nothing is written; with --write the "
                                     "tags also go into the photos' keywords (or .xmp sidecars) and the index.")
    tag.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos or folders (searched recursively)")
    tag.add_argument("--json", action="store_true", help="one JSON object per photo per line")
    tag.add_argument("--suggestions", action="store_true", help="also show weaker tags below their threshold")
    tag.add_argument("--model", type=Path, metavar="DIR", help='model bundle directory, or "default" / "float" for a packaged one (default: config model.path, else the packaged default: detector + classifier)')
    tag.add_argument("--threads", type=int, metavar="N", help="inference threads (default: config model.threads)")
    tag.add_argument("--batch-size", type=int, metavar="N", help="photos per inference batch (default: config model.batch_size)")
    tag.add_argument("--write", action="store_true", help="write the tags into the photos' keywords (XMP, IPTC, EXIF) atomically")
    tag.add_argument("--sidecar", action="store_true", help="with --write: write .xmp sidecars only, never the photos themselves")
    tag.set_defaults(func=cmd_tag)

    revert = sub.add_parser("revert", help="restore the keywords photos had before tagd", description="Give photos back the keywords they had before tagd wrote, and remove tagd's provenance. Later keyword edits by the user are kept.")
    revert.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos or folders (searched recursively)")
    revert.set_defaults(func=cmd_revert)

    for verdict, verb, what in (("accept", "accepted", "make TAG the user's own: it stays, similar photos get it more readily"),
                                ("reject", "rejected", "take TAG off the photo for good: tagd never adds it there again, "
                                                       "and similar photos get it less readily")):
        feedback = sub.add_parser(verdict, help=f"{verdict} tags on a photo", description=f"{verdict.capitalize()} tags: {what}. "
                                  "The photo's keywords and the index are updated; `tagd revert` still restores the photo.")
        feedback.add_argument("path", type=Path, metavar="PATH", help="the photo")
        feedback.add_argument("tags", nargs="+", metavar="TAG", help="tags, as written on the photo (case does not matter)")
        feedback.set_defaults(func=cmd_feedback, verdict=verdict, verb=verb)

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

    from tagd.index.commands import register  # search, show, similar, stats: no numpy on import
    from tagd.web.server import add_parser as add_web  # the web app's modules load when it runs

    register(sub, embed=embed_photo)
    add_web(sub)
    return parser


def embed_photo(args: argparse.Namespace, path: Path):  # noqa: ANN201 - numpy array, imported lazily
    """`tagd similar` on a photo that is not in the index: embed it with the configured tagger."""
    from tagd.config import load_settings
    from tagd.errors import ReadError
    from tagd.model import Model
    from tagd.tagger import Tagger

    m = load_settings(getattr(args, "config", None)).model
    tagger = Tagger(Model(getattr(args, "model", None) or m.path, threads=m.threads, providers=m.providers),
                    batch_size=1, decode_workers=1, max_decode_pixels=m.max_decode_pixels)
    result = next(iter(tagger.tag_paths([path])))
    if not result.ok or result.embedding is None:
        raise ReadError(path, result.error or "no embedding")
    return result.embedding


def cmd_tag(args: argparse.Namespace) -> int:
    from tagd.config import load_settings
    from tagd.pipeline import make_tagger, make_writer

    settings = load_settings(args.config)
    if args.sidecar and not args.write:
        raise UsageError("--sidecar only makes sense with --write")
    writer = make_writer(settings, sidecar_only=args.sidecar) if args.write else None
    tagger = make_tagger(settings, model_path=args.model, threads=args.threads, batch_size=args.batch_size)
    if writer is not None:
        return _tag_and_write(args, settings, tagger, writer)
    from tagd.tagger import TagResult

    failed = done = 0
    started = time.monotonic()
    selection = _selection(args, settings)
    refused = (TagResult(r.path, [], error=r.reason) for r in selection.refused)
    for result in itertools.chain(refused, tagger.tag_paths(selection.photos)):
        done += 1
        failed += _counted_failure(result)
        if args.json:
            record = _json_record(result)
            if args.suggestions:
                record["suggestions"] = _tags_json(result.suggestions)
            write(json_line(record), json_lines=True)
        else:
            write(_table_row(result, args.suggestions) + "\n")
    elapsed = time.monotonic() - started
    if done:
        log.info("tagged %d photos in %.2f s (%.1f/s), %d failed", done - failed, elapsed, done / max(elapsed, 1e-9), failed)
    return _exit_status("tag", done, failed)


def _open_index(args: argparse.Namespace, settings):  # noqa: ANN001, ANN202
    from tagd.index.db import Index

    return Index(args.index or settings.index.path)


def _tag_and_write(args: argparse.Namespace, settings, tagger, writer) -> int:  # noqa: ANN001
    from tagd.pipeline import PhotoOutcome, make_pipeline

    failed = done = changed = 0
    index = _open_index(args, settings)
    index.set_vocabulary((t.name, t.parents, t.synonyms) for t in tagger.vocabulary.tags)
    try:
        selection = _selection(args, settings)
        refused = (PhotoOutcome(r.path, error=r.reason) for r in selection.refused)
        outcomes = itertools.chain(refused, make_pipeline(settings, tagger, writer, index).run(selection.photos))
        failed, done, changed = _print_outcomes(args, outcomes)
    finally:
        index.close()
        writer.exiftool.close()
    if done:
        log.info("%d photos, %d written, %d failed", done, changed, failed)
    return _exit_status("tag", done, failed)


def _selection(args: argparse.Namespace, settings):  # noqa: ANN001, ANN202 - Settings, photos.Selection
    """The photos the command line names, found as scan and the daemon find them (tagd.photos):
    the same formats and globs (watch.*), and no symlink followed out of the folders given.
    Paths stay absolute but unresolved: the index holds them so, and a symlinked folder keeps
    the name it was given."""
    from tagd.photos import select

    w = settings.watch
    return select(args.paths, w.extensions, w.include, w.exclude, w.follow_symlinks)


def _counted_failure(item) -> int:  # noqa: ANN001 - TagResult or PhotoOutcome
    """1 for a photo that failed, else 0. Its row on stdout says why; the same line goes to stderr
    too when stdout is not a terminal (redirected, the errors still show), else only with -v: in a
    terminal both streams land on one screen, and each error read twice."""
    if item.ok:
        return 0
    log.log(logging.INFO if _stdout_is_terminal() else logging.WARNING, "%s: %s", item.path, item.error)
    return 1


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _json_record(item) -> dict:  # noqa: ANN001 - TagResult or PhotoOutcome
    return {"path": str(item.path), "tags": _tags_json(item.tags), "error": item.error}


def _tags_json(tags) -> list[dict]:  # noqa: ANN001 - ScoredTag, imported lazily
    return [{"name": t.name, "score": t.score, "source": t.source} for t in tags]


def _print_outcomes(args: argparse.Namespace, outcomes) -> tuple[int, int, int]:  # noqa: ANN001
    failed = done = changed = 0
    for outcome in outcomes:
        done += 1
        changed += outcome.changed
        failed += _counted_failure(outcome)
        if args.json:
            record = {
                **_json_record(outcome),
                "written": str(outcome.target) if outcome.changed else None,
                "keywords": outcome.keywords,
                "added": outcome.added,
                "removed": outcome.removed,
                "suggested_removals": outcome.suggested_removals,
                "sidecar_reason": outcome.sidecar_reason,
            }
            write(json_line(record), json_lines=True)
        elif outcome.ok:
            state = f"wrote {outcome.target}" if outcome.changed else "unchanged"
            if outcome.changed and outcome.sidecar_reason:
                state += f"; the photo itself is untouched: {outcome.sidecar_reason}"
            write(f"{outcome.path}\t+{', '.join(outcome.added) or '-'}\t({state})\n")
        else:
            write(f"{outcome.path}\tERROR {outcome.error}\n")
    return failed, done, changed


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
    _roots(args.roots, settings, "watch")  # the daemon resolves them itself (and again on SIGHUP)
    if args.index:
        settings.index.path = args.index
    _daemon_logging(args.verbose)
    return Daemon(settings, args.roots or None, args.config).run()


def _roots(given: Sequence[Path], settings, verb: str) -> list[Path]:  # noqa: ANN001 - Settings
    """The folders `run` or `scan` work on (the command line's, else watch.roots), each one there:
    the same usage error from both, before the model or the index is touched."""
    roots = [Path(os.path.abspath(p)) for p in (given or settings.watch.roots)]
    if not roots:
        raise UsageError(f"nothing to {verb}: give folders (`tagd {'run' if verb == 'watch' else verb} ~/Pictures`) "
                         "or set watch.roots in the config")
    missing = [r for r in roots if not r.is_dir()]
    if missing:
        raise UsageError(f"not a folder: {missing[0]}")
    return roots


def cmd_scan(args: argparse.Namespace) -> int:
    from tagd.config import load_settings
    from tagd.pipeline import make_pipeline, make_tagger, make_writer
    from tagd.photos import PathFilter
    from tagd.scan import Progress, plan

    settings = load_settings(args.config)
    roots = _roots(args.paths, settings, "scan")
    s = settings
    writer = make_writer(settings)
    tagger = make_tagger(settings)
    model = tagger.model
    index = _open_index(args, settings)
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
        settings.index.path = args.index  # what every other command would use
    if args.action == "check":
        used = [str(args.config)] if args.config else [str(p) for p in config_search_path() if p.is_file()]
        print(f"configuration OK ({', '.join(used) or 'defaults only'})")
        return EXIT_OK
    for key, value, description in describe(settings):
        shown = json.dumps([str(v) for v in value] if isinstance(value, list) else (str(value) if isinstance(value, Path) else value))
        print(f"{key} = {shown}\n    {description}")
    return EXIT_OK


def cmd_revert(args: argparse.Namespace) -> int:
    from tagd.config import load_settings
    from tagd.metadata import WriteError
    from tagd.pipeline import make_writer

    settings = load_settings(args.config)
    writer = make_writer(settings)
    index = _existing_index(args, settings)
    failed = done = 0
    selection = _selection(args, settings)
    try:
        for refused in selection.refused:
            done += 1
            failed += 1
            write(f"{refused.path}\tERROR {refused.reason}\n")
        for path in selection.photos:
            done += 1
            try:
                outcome = writer.revert(path)
            except WriteError as exc:
                failed += 1
                write(f"{path}\tERROR {exc.reason}\n")
                continue
            if index is not None and outcome.changed:
                _record_revert(index, path, outcome.keywords)
            write(f"{path}\t{_reverted(outcome)}\n")
    finally:
        if index is not None:
            index.close()
        writer.exiftool.close()
    return _exit_status("revert", done, failed)


def cmd_feedback(args: argparse.Namespace) -> int:
    from tagd.config import load_settings
    from tagd.pipeline import make_writer
    from tagd.review import Review

    settings = load_settings(args.config)
    writer = make_writer(settings)
    index = _existing_index(args, settings)
    path = args.path.absolute()
    failed = 0
    try:
        review = Review(writer, index)
        for tag in args.tags:
            action = review.verdict([path], tag, args.verdict)
            for _, reason in action.failed:
                failed += 1
                write(f"{path}\tERROR {tag}: {reason}\n")
            for done in action.changed:
                write(f"{path}\t{args.verb} {tag}; keywords now: {', '.join(done.keywords_after) or 'none'}\n")
    finally:
        if index is not None:
            index.close()
        writer.exiftool.close()
    return EXIT_FAILED if failed else EXIT_OK


def _reverted(outcome) -> str:  # noqa: ANN001 - metadata.WriteOutcome
    """What a revert did, as a sentence. The writer says how it reverted ("reverted", "removed
    the sidecar tagd created"); unchanged only ever means tagd had not written there."""
    if not outcome.changed:
        return "nothing to revert: tagd has not written keywords to this photo"
    if outcome.keywords:
        return f"{outcome.message}; keywords now: {', '.join(outcome.keywords)}"
    return f"{outcome.message}; the photo has no keywords now"


def _existing_index(args: argparse.Namespace, settings):  # noqa: ANN001, ANN202
    """The index if there is one: reverting a photo never creates an index."""
    path = Path(args.index or settings.index.path)
    return _open_index(args, settings) if path.exists() else None


def _record_revert(index, path: Path, keywords: list[str]) -> None:  # noqa: ANN001 - tagd.index.db.Index
    """The index follows the file: the user's keywords only, and the photo marked reverted so
    that the daemon does not tag it straight back."""
    from tagd.index.db import IndexedTag
    from tagd.photos import file_sha256

    record = index.get(path)
    if record is None:
        return
    scores = {t.name.casefold(): t.score for t in record.tags}
    record.tags = [IndexedTag(k, scores.get(k.casefold(), 1.0), "user", "kept") for k in keywords]
    st = os.stat(path)
    record.size, record.mtime_ns, record.content_hash = st.st_size, st.st_mtime_ns, file_sha256(path)
    record.reverted = True
    index.upsert_photos([record])


def _exit_status(command: str, done: int, failed: int) -> int:
    """No photo at all is a failure with its own message; otherwise any failed photo is."""
    if done == 0:
        print(f"tagd {command}: no photos found", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if failed else EXIT_OK


def _table_row(result, with_suggestions: bool) -> str:  # noqa: ANN001 - TagResult, imported lazily
    if not result.ok:
        return f"{result.path}\tERROR {result.error}"
    tags = "  ".join(f"{t.name} {t.score:.2f}" for t in result.tags) or "-"
    if with_suggestions and result.suggestions:
        tags += "  |  " + "  ".join(f"{t.name} {t.score:.2f}" for t in result.suggestions)
    return f"{result.path}\t{tags}"
