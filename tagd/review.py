"""The user's decisions on tags, carried out on photos and undone: `tagd accept/reject` and the
web app's review (accept, reject, add, rename or merge a tag across the library, undo).

Every change goes through the metadata writer (written to the file or its sidecar, verified,
revertable with `tagd revert`) and then into the index, so refinement learns from it. A change
remembers each photo's keywords as they were before it, which is what undo writes back; undo
leaves alone a photo whose keywords changed again since (the daemon, another tool, the user),
and says so, rather than overwrite that newer change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from tagd.feedback import NotOnPhoto, Verdict, record_for, rename_update, renamed_record, restore_update, update_for
from tagd.metadata import KeywordUpdate, WriteError
from tagd.photos import file_sha256

if TYPE_CHECKING:
    from tagd.index.db import Index, PhotoRecord
    from tagd.metadata import MetadataWriter, PhotoKeywords


@dataclass
class Changed:
    """One photo an action changed: enough to put it back."""

    path: Path
    before: "PhotoKeywords"
    record_before: "PhotoRecord | None"
    keywords_after: list[str]


@dataclass
class Action:
    """What one decision did: the photos it changed, and those it could not change, with why."""

    description: str  # "rejected dog", "renamed dog to rufus": for messages and the undo button
    changed: list[Changed] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


class Review:
    """Carries out decisions with one writer and (when there is one) the index."""

    def __init__(self, writer: "MetadataWriter", index: "Index | None") -> None:
        self.writer = writer
        self.index = index

    def verdict(self, paths: Sequence[Path], tag: str, verdict: Verdict) -> Action:
        """Accept (or add: accepting a tag a photo lacks adds it as the user's) or reject `tag`."""
        verb = {"accept": "accepted", "reject": "rejected"}[verdict]
        return self._each(
            f"{verb} {tag}", paths,
            lambda current: update_for(current, tag, verdict),
            lambda record: record_for(record, tag, verdict),
        )

    def rename(self, old: str, new: str, paths: Sequence[Path] | None = None) -> Action:
        """Call `old` `new` on `paths`, or on every indexed photo that has `old` (kept or added).
        A merge when `new` is already a tag: the photos end up with `new` once."""
        if not new.strip():
            raise ValueError("the new name is empty")
        targets = list(paths) if paths is not None else self.photos_with(old)
        return self._each(
            f"renamed {old} to {new}", targets,
            lambda current: _require(current, old, rename_update(current, old, new)),
            lambda record: renamed_record(record, old, new),
        )

    def undo(self, action: Action) -> Action:
        """Put back every photo `action` changed, unless it changed again since."""
        result = Action(f"undid: {action.description}")
        for done in action.changed:
            try:
                current = self.writer.read(done.path)
                if [k.casefold() for k in current.keywords] != [k.casefold() for k in done.keywords_after]:
                    result.failed.append((done.path, "its keywords changed since; left as they are"))
                    continue
                if done.before.provenance is None:
                    outcome = self.writer.revert(done.path)  # tagd had never written there: the originals
                else:
                    outcome = self.writer.write(current, restore_update(done.before))
            except WriteError as exc:
                result.failed.append((done.path, exc.reason))
                continue
            if done.record_before is not None and self.index is not None:
                self._store(done.path, done.record_before)
            result.changed.append(Changed(done.path, current, None, outcome.keywords))
        return result

    def photos_with(self, tag: str) -> list[Path]:
        """Indexed photos that have `tag` itself (kept or added; not its narrower tags)."""
        if self.index is None:
            return []
        from tagd.index.query_tree import STATE_CODE, tag_key

        key = tag_key(tag)
        states = (STATE_CODE["kept"], STATE_CODE["added"])
        rows = self.index.read(lambda conn: conn.execute(
            "SELECT p.path FROM photo_tag pt JOIN tag t ON t.id = pt.tag_id JOIN photo p ON p.id = pt.photo_id "
            "WHERE t.key = ? AND pt.state IN (?, ?) AND p.status = 'tagged' ORDER BY p.path", (key, *states)).fetchall())
        return [Path(p) for (p,) in rows]

    def _each(self, description: str, paths: Sequence[Path],
              update: Callable[["PhotoKeywords"], KeywordUpdate],
              record: Callable[["PhotoRecord"], "PhotoRecord"]) -> Action:
        action = Action(description)
        for path in paths:
            path = Path(os.path.abspath(path))
            try:
                current = self.writer.read(path)
                outcome = self.writer.write(current, update(current))
            except WriteError as exc:
                action.failed.append((path, exc.reason))
                continue
            except NotOnPhoto as exc:
                action.failed.append((path, str(exc)))
                continue
            before = self.index.get(path) if self.index is not None else None
            if before is not None:
                self._store(path, record(_copy(before)))
            action.changed.append(Changed(path, current, before, outcome.keywords))
        return action

    def _store(self, path: Path, record: "PhotoRecord") -> None:
        """Write `record` to the index with the file as it is now, so the daemon and the next
        scan see a photo the index is up to date with, not a changed one to re-tag."""
        assert self.index is not None
        st = os.stat(path)
        record.size, record.mtime_ns, record.content_hash = st.st_size, st.st_mtime_ns, file_sha256(path)
        self.index.upsert_photos([record])


def _require(current: "PhotoKeywords", tag: str, update: KeywordUpdate) -> KeywordUpdate:
    if all(k.casefold() != tag.casefold() for k in current.keywords):
        raise NotOnPhoto(f"{tag!r} is not among the photo's keywords")
    return update


def _copy(record: "PhotoRecord") -> "PhotoRecord":
    from dataclasses import replace

    return replace(record, tags=list(record.tags), regions=list(record.regions))
