"""The index's user-facing failures; each `str()` is one line fit to show a user."""

from __future__ import annotations

from pathlib import Path

from tagd.errors import TagdError


class QueryError(TagdError):
    """A search query that does not parse; `col` is 1-based, counted in characters."""

    def __init__(self, col: int, reason: str) -> None:
        self.col = col
        self.reason = reason
        super().__init__(f"col {col}: {reason}")


class IndexFileError(TagdError):
    """The index file is missing, unreadable, busy, or from another version of tagd."""


class IndexNotFoundError(IndexFileError):
    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"no index at {path} (photos get into it with the daemon, `tagd run`, or `tagd scan`)"
        )


class IndexVersionError(IndexFileError):
    """The schema is newer than this tagd, or older and the handle may not upgrade it."""


class IndexCorruptError(IndexFileError):
    """The file is not an SQLite database, or SQLite reports it damaged."""


class IndexBusyError(IndexFileError):
    """Another process held the database locked for longer than the busy timeout."""


class NotIndexedError(TagdError):
    """A path that the index does not hold."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: not in the index")
