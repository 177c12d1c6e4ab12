"""`tagd tag`, `tagd revert`, `tagd accept` and `tagd reject`: commands on photos named on the
command line."""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

from tagd.cli.common import (
    EXIT_FAILED, EXIT_OK, UsageError, counted_failure, existing_index, exit_status, open_index, select_photos, log,
)
from tagd.output import json_line, write


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    selection = select_photos(args, settings)
    refused = (TagResult(r.path, [], error=r.reason) for r in selection.refused)
    for result in itertools.chain(refused, tagger.tag_paths(selection.photos)):
        done += 1
        failed += counted_failure(result)
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
    return exit_status("tag", done, failed)


def _tag_and_write(args: argparse.Namespace, settings, tagger, writer) -> int:  # noqa: ANN001
    from tagd.pipeline import PhotoOutcome, make_pipeline

    failed = done = changed = 0
    index = open_index(args, settings)
    index.set_vocabulary((t.name, t.parents, t.synonyms) for t in tagger.vocabulary.tags)
    try:
        selection = select_photos(args, settings)
        refused = (PhotoOutcome(r.path, error=r.reason) for r in selection.refused)
        outcomes = itertools.chain(refused, make_pipeline(settings, tagger, writer, index).run(selection.photos))
        failed, done, changed = _print_outcomes(args, outcomes)
    finally:
        index.close()
        writer.exiftool.close()
    if done:
        log.info("%d photos, %d written, %d failed", done, changed, failed)
    return exit_status("tag", done, failed)


def _json_record(item) -> dict:  # noqa: ANN001 - TagResult or PhotoOutcome
    return {"path": str(item.path), "tags": _tags_json(item.tags), "error": item.error}


def _tags_json(tags) -> list[dict]:  # noqa: ANN001 - ScoredTag, imported lazily
    return [{"name": t.name, "score": t.score, "source": t.source} for t in tags]


def _print_outcomes(args: argparse.Namespace, outcomes) -> tuple[int, int, int]:  # noqa: ANN001
    failed = done = changed = 0
    for outcome in outcomes:
        done += 1
        changed += outcome.changed
        failed += counted_failure(outcome)
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


def _table_row(result, with_suggestions: bool) -> str:  # noqa: ANN001 - TagResult, imported lazily
    if not result.ok:
        return f"{result.path}\tERROR {result.error}"
    tags = "  ".join(f"{t.name} {t.score:.2f}" for t in result.tags) or "-"
    if with_suggestions and result.suggestions:
        tags += "  |  " + "  ".join(f"{t.name} {t.score:.2f}" for t in result.suggestions)
    return f"{result.path}\t{tags}"


def cmd_revert(args: argparse.Namespace) -> int:
    from tagd.config import load_settings
    from tagd.metadata import WriteError
    from tagd.pipeline import make_writer

    settings = load_settings(args.config)
    writer = make_writer(settings)
    index = existing_index(args, settings)
    failed = done = 0
    selection = select_photos(args, settings)
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
    return exit_status("revert", done, failed)


def _reverted(outcome) -> str:  # noqa: ANN001 - metadata.WriteOutcome
    """What a revert did, as a sentence. The writer says how it reverted ("reverted", "removed
    the sidecar tagd created"); unchanged only ever means tagd had not written there."""
    if not outcome.changed:
        return "nothing to revert: tagd has not written keywords to this photo"
    if outcome.keywords:
        return f"{outcome.message}; keywords now: {', '.join(outcome.keywords)}"
    return f"{outcome.message}; the photo has no keywords now"


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


def cmd_feedback(args: argparse.Namespace) -> int:
    from tagd.config import load_settings
    from tagd.pipeline import make_writer
    from tagd.review import Review

    settings = load_settings(args.config)
    writer = make_writer(settings)
    index = existing_index(args, settings)
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
