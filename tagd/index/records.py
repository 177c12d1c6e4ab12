"""What the index stores about a photo, as Python values (PhotoRecord, IndexedTag), and their
checked conversion to the rows tagd.index.db writes (`prepare`: outside the write transaction,
so a bad record fails before anything is locked)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagd.boxes import Box
from tagd.index.query_tree import SOURCE_CODE, SOURCES, STATE_CODE, STATES, STATUSES, tag_key

if TYPE_CHECKING:
    import numpy as np


@dataclass
class IndexedTag:
    name: str
    score: float  # 0..1
    source: str  # "user" | "model" | "neighbours"
    state: str  # "kept" | "added" | "suggested" | "suggested-removal" | "removed" | "rejected"


@dataclass
class PhotoRecord:
    path: Path  # absolute
    content_hash: str | None  # hex sha256 of the file's bytes
    size: int
    mtime_ns: int
    width: int | None = None
    height: int | None = None
    taken: datetime | None = None  # EXIF DateTimeOriginal, naive local time
    camera: str | None = None  # "Make Model"
    status: str = "tagged"  # "tagged" | "failed" | "pending" | "gone"
    error: str | None = None  # the reason when failed
    model_version: str | None = None
    tagged_at: datetime | None = None
    tags: list[IndexedTag] = field(default_factory=list)
    embedding: np.ndarray | None = None  # float32 (dim,), L2-normalised
    # The user ran `tagd revert`: the daemon and scans leave the photo alone until
    # `tagd tag --write` tags it again (which records it with this False).
    reverted: bool = False
    regions: list[Box] = field(default_factory=list)  # the detector's objects, best first


def decode_text(raw: bytes) -> str:
    # Paths are bytes on Linux; an undecodable name comes back as Python's surrogate escapes.
    return raw.decode("utf-8", "surrogateescape")


def clean_text(text: str | None) -> str | None:
    """Text other than paths: lone surrogates become U+FFFD (SQLite TEXT must be UTF-8)."""
    if text is None:
        return None
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def fs_bytes(path: Path | str) -> bytes:
    """A path as the bytes the index stores (bound as CAST(? AS TEXT))."""
    return os.fsencode(Path(path))


def iso_text(value: datetime | None, *, naive: bool) -> str | None:
    if value is None:
        return None
    if naive and value.tzinfo is not None:
        value = value.replace(tzinfo=None)  # EXIF time is wall-clock time where it was taken
    return value.isoformat()


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class Prepared:
    path: Path
    path_bytes: bytes
    row: tuple[Any, ...]  # the photo columns after path, in PHOTO_COLUMNS order
    status: str
    taken: str | None
    tags: list[tuple[str, str, float, int, int]]  # key, name, score, source code, state code
    embedding: tuple[int, float, bytes, bytes] | None  # dim, scale, int8 code, float16 vector
    reverted: bool
    regions: list[Box]


PHOTO_COLUMNS = (
    "content_hash", "hash_key", "size", "mtime_ns", "width", "height", "taken", "camera", "camera_key",
    "status", "error", "model_version", "tagged_at",
)


def hash_key(content_hash: str | None) -> int | None:
    try:
        return int(content_hash[:15], 16) if content_hash and len(content_hash) >= 15 else None
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def tag_name(name: str) -> tuple[str, str]:
    """(display name, key) of a tag name as given: whitespace collapsed, valid UTF-8."""
    display = clean_text(" ".join(name.split())) or ""
    return display, tag_key(display)


def prepare(record: PhotoRecord) -> Prepared:
    """Validate and convert one record outside the write transaction (cheap: runs per photo)."""
    path = record.path if isinstance(record.path, Path) else Path(record.path)
    if not path.is_absolute():
        raise ValueError(f"{path}: index paths must be absolute")
    if record.status not in _STATUSES:
        raise ValueError(f"{path}: status {record.status!r} is not one of {STATUSES}")
    taken = iso_text(record.taken, naive=True)
    camera = clean_text(record.camera)
    content_hash = clean_text(record.content_hash)
    row = (
        content_hash,
        hash_key(content_hash),
        int(record.size),
        int(record.mtime_ns),
        None if record.width is None else int(record.width),
        None if record.height is None else int(record.height),
        taken,
        camera,
        tag_key(camera) if camera else None,
        record.status,
        clean_text(record.error),
        clean_text(record.model_version),
        iso_text(record.tagged_at, naive=False),
    )
    tag_list = []
    for t in record.tags:
        source, state = SOURCE_CODE.get(t.source), STATE_CODE.get(t.state)
        if source is None:
            raise ValueError(f"{path}: tag {t.name!r} has source {t.source!r}, not one of {SOURCES}")
        if state is None:
            raise ValueError(f"{path}: tag {t.name!r} has state {t.state!r}, not one of {STATES}")
        score = float(t.score)
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"{path}: tag {t.name!r} has score {score}, outside 0..1")
        name, key = tag_name(str(t.name))
        if not key:
            raise ValueError(f"{path}: empty tag name")
        tag_list.append((key, name, score, source, state))
    embedding = None
    if record.embedding is not None:
        from tagd.index.similar import encode_vector

        embedding = encode_vector(record.embedding)
    return Prepared(path, os.fsencode(path), row, record.status, taken, tag_list, embedding, bool(record.reverted),
                     list(record.regions))


_STATUSES = frozenset(STATUSES)
