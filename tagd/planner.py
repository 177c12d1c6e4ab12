"""What to do with a file, given what the index knows of it: the one rule scan, the daemon and
the pipeline follow. Pure: the callers read the file's stat and the index, and pass a way to
hash the file, which is called only when the answer depends on the bytes.

- `decide(known, size, mtime_ns, model_version)`: tag it, leave it, or look closer;
- `same_content(known, size, digest)`: whether a file is the photo the index knows (a move, a
  `touch`, a copy that kept the bytes), by size first and the content hash only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

from tagd.metadata.files import refused_for_permissions

if TYPE_CHECKING:
    from tagd.index.records import PhotoRecord

Decision = Literal[
    "new",  # not in the index: identify (it may be a moved photo) and tag it
    "tag",  # changed, pending, or tagged by another model: tag it
    "unchanged",  # done at this model version, or failed and unchanged: leave it
    "reverted",  # the user ran `tagd revert` on it: only `tagd tag --write` tags it again
    "if-writable",  # refused as read-only and unchanged: tag it only if a chmod lifted that
    "if-content-changed",  # tagged, same size, new mtime: tag it only if its bytes changed
]


@dataclass(frozen=True)
class Known:
    """What the index holds about a path."""

    size: int
    mtime_ns: int
    content_hash: str | None
    status: str  # "tagged" | "failed" | "pending" | "gone"
    model_version: str | None
    error: str | None = None
    reverted: bool = False


def known_from(record: "PhotoRecord | None") -> Known | None:
    """The planner's view of an index record."""
    if record is None:
        return None
    return Known(record.size, record.mtime_ns, record.content_hash, record.status, record.model_version, record.error,
                 record.reverted)


def decide(known: Known | None, size: int, mtime_ns: int, model_version: str) -> Decision:
    if known is None:
        return "new"
    if known.reverted:
        return "reverted"
    if known.status == "tagged" and known.model_version != model_version:
        return "tag"
    if known.status not in ("tagged", "failed"):
        return "tag"
    if (known.size, known.mtime_ns) == (size, mtime_ns):
        # A refusal for permissions is worth a new try once a chmod has lifted it; any other
        # failure is not retried until the file changes (no retry loop on a broken file).
        return "if-writable" if known.status == "failed" and refused_for_permissions(known.error) else "unchanged"
    if known.status == "tagged" and known.content_hash and known.size == size:
        return "if-content-changed"
    return "tag"


def same_content(known: Known | None, size: int, digest: Callable[[], str]) -> bool:
    """Whether the file (of `size` bytes, hashed by `digest` if need be) holds what the index
    recorded for `known`. A different size never reads the file."""
    return known is not None and known.content_hash is not None and known.size == size and digest() == known.content_hash
