"""The user's verdict on a tag: `tagd accept PATH TAG` and `tagd reject PATH TAG`.

Accepting makes a tag the user's own: it stays in the photo's keywords, leaves tagd's list of
additions (so neither `refine` nor `tagd revert` takes it away), and joins the library the
refinement learns from (the index records it as a user tag): similar photos' proposals follow.
Rejecting takes a tag off the photo (tagd's addition or the user's own keyword alike) and
records it as rejected in the photo's provenance and the index: tagd never adds it to that
photo again, and a photo that looks like this one gets it less readily (tagd.library reads the
rejections; tagd.refine weighs them by similarity).

Pure functions from what the writer read to what it writes, and to the index's record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from tagd.metadata import KeywordUpdate

if TYPE_CHECKING:
    from tagd.index.db import PhotoRecord
    from tagd.metadata import PhotoKeywords

Verdict = Literal["accept", "reject"]


class NotOnPhoto(ValueError):
    """Rejecting a tag the photo does not carry, and tagd never added there."""


def update_for(current: "PhotoKeywords", tag: str, verdict: Verdict) -> KeywordUpdate:
    """The keyword update that carries out `verdict` on `tag` (matched without regard to case)."""
    prov = current.provenance
    folded = tag.casefold()
    mine = [k for k in current.keywords if k.casefold() == folded]
    added = [k for k in (prov.added if prov else ()) if k.casefold() != folded]
    rejected = [k for k in (prov.rejected if prov else ()) if k.casefold() != folded]
    removed = [k for k in (prov.removed if prov else ()) if k.casefold() != folded]
    if verdict == "accept":
        keywords = list(current.keywords) if mine else [*current.keywords, tag]
    else:
        if not mine and not any(k.casefold() == folded for k in (prov.rejected if prov else ())):
            raise NotOnPhoto(f"{tag!r} is not among the photo's keywords")
        keywords = [k for k in current.keywords if k.casefold() != folded]
        rejected.append(mine[0] if mine else tag)
    return KeywordUpdate(
        keywords=keywords,
        machine_tags={k: v for k, v in (prov.machine_tags if prov else {}).items() if k.casefold() != folded},
        added=added,
        removed=removed,
        rejected=rejected,
        suggested_removals=[k for k in (prov.suggested_removals if prov else ()) if k.casefold() != folded],
        model_version=prov.model_version if prov else None,
        regions=None,
    )


def record_for(record: "PhotoRecord", tag: str, verdict: Verdict) -> "PhotoRecord":
    """The index's record of the photo after `verdict` (tags only; the caller refreshes the
    file's size, time and hash)."""
    from tagd.index.db import IndexedTag

    folded = tag.casefold()
    before = next((t for t in record.tags if t.name.casefold() == folded), None)
    others = [t for t in record.tags if t.name.casefold() != folded]
    if verdict == "accept":
        name = before.name if before is not None else tag
        score = before.score if before is not None and before.source != "user" else 1.0
        record.tags = [*others, IndexedTag(name, score, "user", "kept")]
    else:
        record.tags = [*others, IndexedTag(before.name if before is not None else tag, 0.0, "model", "rejected")]
    return record


def rename_update(current: "PhotoKeywords", old: str, new: str) -> KeywordUpdate:
    """The keyword update that calls `old` `new` on this photo (a rename, or a merge when the
    photo already has `new`). The new name is the user's: it leaves tagd's additions and scores,
    so refinement treats it as the user's word from now on. `old` is not recorded as rejected:
    the user renamed it, not refuted it."""
    prov = current.provenance
    old_f, new_f = old.casefold(), new.casefold()
    keywords: list[str] = []
    for k in current.keywords:
        name = new if k.casefold() == old_f else k
        if all(name.casefold() != seen.casefold() for seen in keywords):
            keywords.append(name)
    gone = {old_f, new_f}
    return KeywordUpdate(
        keywords=keywords,
        machine_tags={k: v for k, v in (prov.machine_tags if prov else {}).items() if k.casefold() not in gone},
        added=[k for k in (prov.added if prov else ()) if k.casefold() not in gone],
        removed=list(prov.removed if prov else ()),
        rejected=[k for k in (prov.rejected if prov else ()) if k.casefold() != new_f],
        suggested_removals=[k for k in (prov.suggested_removals if prov else ()) if k.casefold() not in gone],
        model_version=prov.model_version if prov else None,
        regions=None,
    )


def renamed_record(record: "PhotoRecord", old: str, new: str) -> "PhotoRecord":
    """The index's record after `rename_update`: `old` becomes the user's `new`."""
    from tagd.index.db import IndexedTag

    old_f, new_f = old.casefold(), new.casefold()
    had = [t for t in record.tags if t.name.casefold() in (old_f, new_f) and t.state in ("kept", "added")]
    others = [t for t in record.tags if t.name.casefold() not in (old_f, new_f)]
    if had:
        others.append(IndexedTag(new, max(t.score for t in had), "user", "kept"))
    record.tags = others
    return record


def restore_update(before: "PhotoKeywords") -> KeywordUpdate:
    """The keyword update that puts a photo's keywords and tagd's record of them back as they
    were in `before` (the undo of a verdict or a rename; the original fields tagd keeps for
    `tagd revert` are never touched by a write)."""
    prov = before.provenance
    return KeywordUpdate(
        keywords=list(before.keywords),
        machine_tags=dict(prov.machine_tags) if prov else {},
        added=list(prov.added) if prov else [],
        removed=list(prov.removed) if prov else [],
        rejected=list(prov.rejected) if prov else [],
        suggested_removals=list(prov.suggested_removals) if prov else [],
        model_version=prov.model_version if prov else None,
        regions=None,
    )
