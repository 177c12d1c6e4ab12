"""Photo-id bitmaps kept inside the index, so that boolean queries run at C speed.

A million-photo library cannot be searched row by row in 50 ms: "animal" alone matches most of
it, and SQLite has no merge join for `dog beach -cat`. So the writer keeps, in the same
transaction as the rows they summarise, one bitmap of photo ids per
  - tag, counting a photo that has the tag or any descendant (hierarchy precomputed),
    once for the states that count by default and once with suggestions;
  - month and year taken, status, tag source, tag state.
A query loads a few bitmaps into Python ints, combines them with & | ~ (C loops over 64-bit
words) and counts with int.bit_count(). Readers see bitmaps and rows from one snapshot.

Bitmaps are stored in chunks of 2**14 ids (2 KiB, one page), so a write rewrites only the chunks
its photos fall in, and new photos (ascending ids) touch the last chunk of each bitmap.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from typing import Iterable, Mapping

from tagd.index.query_tree import ACTIVE_STATES, STATE_CODE, STATUSES, SUGGESTION_STATES

CHUNK_BITS = 1 << 14
CHUNK_BYTES = CHUNK_BITS // 8
_ZERO_CHUNK = bytes(CHUNK_BYTES)

# Bitmap kinds (the `kind` column); keys are ints.
TAG = 1  # key: tag id (photo has the tag or a descendant, kept/added)
TAG_S = 2  # key: tag id, counting suggestions too
MONTH = 3  # key: year * 100 + month taken
YEAR = 4  # key: year taken
STATUS = 5  # key: STATUSES index
SOURCE = 6  # key: SOURCES index (some kept/added tag from that source)
SOURCE_S = 7  # key: SOURCES index, counting suggestions too
STATE = 8  # key: STATES index (some tag in that state)
EMBEDDING = 9  # key: 0 (the photo has an embedding)

STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}
_ACTIVE = frozenset(STATE_CODE[s] for s in ACTIVE_STATES)
_WITH_SUGGESTIONS = frozenset(STATE_CODE[s] for s in SUGGESTION_STATES)

Key = tuple[int, int]


def photo_keys(
    status: str,
    taken: str | None,
    tags: Iterable[tuple[int, int, int]],
    ancestors: Mapping[int, tuple[int, ...]],
) -> set[Key]:
    """The bitmaps a photo belongs to; `tags` are (tag id, state code, source code)."""
    keys: set[Key] = {(STATUS, STATUS_CODE[status])}
    if taken:
        year, month = int(taken[0:4]), int(taken[5:7])
        keys.add((YEAR, year))
        keys.add((MONTH, year * 100 + month))
    for tag_id, state, source in tags:
        keys.add((STATE, state))
        if state in _WITH_SUGGESTIONS:
            keys.add((SOURCE_S, source))
            keys.update((TAG_S, a) for a in ancestors[tag_id])
            if state in _ACTIVE:
                keys.add((SOURCE, source))
                keys.update((TAG, a) for a in ancestors[tag_id])
    return keys


class BitmapWriter:
    """Bit edits within one write transaction. `update` only notes them; `flush` reads every
    touched chunk in one statement per (kind, chunk), applies the edits in order and writes each
    chunk once. Reading in bulk matters on a server (tagd.index.postgres): a batch of 64 photos
    touches a few hundred chunks, and one round trip each was most of the write's time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # (kind, key, chunk), byte, mask, set (True) or clear (False): in the order made
        self.edits: list[tuple[tuple[int, int, int], int, int, bool]] = []

    def update(self, photo_id: int, old: set[Key], new: set[Key]) -> None:
        chunk, bit = divmod(photo_id, CHUNK_BITS)
        byte, mask = bit >> 3, 1 << (bit & 7)
        self.edits.extend(((kind, key, chunk), byte, mask, False) for kind, key in old - new)
        self.edits.extend(((kind, key, chunk), byte, mask, True) for kind, key in new - old)

    def _load(self) -> dict[tuple[int, int, int], bytearray]:
        wanted: dict[tuple[int, int], set[int]] = defaultdict(set)
        for (kind, key, chunk), *_ in self.edits:
            wanted[(kind, chunk)].add(key)
        chunks = {}
        for (kind, chunk), keys in sorted(wanted.items()):
            for key, bits in self.conn.execute(
                "SELECT key, bits FROM bitmap WHERE kind = ? AND chunk = ? AND key IN (SELECT value FROM json_each(?))",
                (kind, chunk, "[" + ",".join(map(str, sorted(keys))) + "]"),
            ):
                chunks[(kind, key, chunk)] = bytearray(bits)
            for key in keys:
                chunks.setdefault((kind, key, chunk), bytearray(CHUNK_BYTES))
        return chunks

    def flush(self) -> None:
        if not self.edits:
            return
        chunks = self._load()
        for k, byte, mask, on in self.edits:
            if on:
                chunks[k][byte] |= mask
            else:
                chunks[k][byte] &= ~mask & 0xFF
        upserts, deletes = [], []
        for (kind, key, chunk), bits in chunks.items():
            if bits == _ZERO_CHUNK:
                deletes.append((kind, key, chunk))
            else:
                upserts.append((kind, key, chunk, bytes(bits)))
        self.conn.executemany("DELETE FROM bitmap WHERE kind = ? AND key = ? AND chunk = ?", deletes)
        self.conn.executemany(
            "INSERT INTO bitmap (kind, key, chunk, bits) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, key, chunk) DO UPDATE SET bits = excluded.bits",
            upserts,
        )
        self.edits.clear()


def rebuild(conn: sqlite3.Connection, ancestors: Mapping[int, tuple[int, ...]]) -> None:
    """Recompute the bitmaps that depend on tags, dates and status (after the hierarchy changed).

    EMBEDDING bitmaps do not depend on them and stay (reading every vector to redo them is slow).
    """
    conn.execute("DELETE FROM bitmap WHERE kind != ?", (EMBEDDING,))
    photos = conn.execute("SELECT id, status, taken FROM photo ORDER BY id")
    tags = conn.execute("SELECT photo_id, tag_id, state, source FROM photo_tag ORDER BY photo_id")
    pending = next(tags, None)
    chunks: dict[tuple[int, int, int], bytearray] = defaultdict(lambda: bytearray(CHUNK_BYTES))
    for photo_id, status, taken in photos:
        own = []
        while pending is not None and pending[0] <= photo_id:
            if pending[0] == photo_id:
                own.append(pending[1:])
            pending = next(tags, None)
        chunk, bit = divmod(photo_id, CHUNK_BITS)
        byte, mask = bit >> 3, 1 << (bit & 7)
        for kind, key in photo_keys(status, taken, own, ancestors):
            chunks[(kind, key, chunk)][byte] |= mask
    conn.executemany(
        "INSERT INTO bitmap (kind, key, chunk, bits) VALUES (?, ?, ?, ?)",
        ((kind, key, chunk, bytes(bits)) for (kind, key, chunk), bits in sorted(chunks.items())),
    )


# ---------------------------------------------------------------------------------------------
# Reading


def load(conn: sqlite3.Connection, kind: int, keys: Iterable[int]) -> int:
    """The union of some bitmaps of one kind, as a Python int (bit i set = photo id i)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return 0
    if len(keys) == 1:
        rows = conn.execute("SELECT chunk, bits FROM bitmap WHERE kind = ? AND key = ?", (kind, keys[0])).fetchall()
    else:
        rows = conn.execute(
            "SELECT chunk, bits FROM bitmap WHERE kind = ? AND key IN (SELECT value FROM json_each(?))",
            (kind, "[" + ",".join(map(str, keys)) + "]"),
        ).fetchall()
    return _assemble(rows)


def load_range(conn: sqlite3.Connection, kind: int, lo: int, hi: int) -> int:
    """The union of the bitmaps of one kind with lo <= key < hi."""
    rows = conn.execute(
        "SELECT chunk, bits FROM bitmap WHERE kind = ? AND key >= ? AND key < ?", (kind, lo, hi)
    ).fetchall()
    return _assemble(rows)


def _assemble(rows: list[tuple[int, bytes]]) -> int:
    if not rows:
        return 0
    per_chunk: dict[int, int] = {}
    for chunk, bits in rows:
        value = int.from_bytes(bits, "little")
        per_chunk[chunk] = per_chunk.get(chunk, 0) | value
    top = max(per_chunk)
    buf = bytearray((top + 1) * CHUNK_BYTES)
    for chunk, value in per_chunk.items():
        buf[chunk * CHUNK_BYTES:(chunk + 1) * CHUNK_BYTES] = value.to_bytes(CHUNK_BYTES, "little")
    return int.from_bytes(buf, "little")


def from_ids(ids: Iterable[int]) -> int:
    buf = bytearray()
    for i in ids:
        byte = i >> 3
        if byte >= len(buf):
            buf.extend(bytes(byte - len(buf) + 1 + (len(buf) >> 1)))
        buf[byte] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


_BITS = [tuple(j for j in range(8) if b >> j & 1) for b in range(256)]
_NONZERO = re.compile(rb"[^\x00]+")


def to_ids(bits: int) -> list[int]:
    """Set bit positions, ascending. Skips zero bytes in C, so sparse bitmaps are cheap."""
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    out: list[int] = []
    for m in _NONZERO.finditer(data):
        base = m.start() * 8
        for offset, byte in enumerate(m.group()):
            at = base + offset * 8
            out.extend(at + j for j in _BITS[byte])
    return out


class Membership:
    """O(1) `photo_id in bitmap` for a fixed bitmap."""

    __slots__ = ("data",)

    def __init__(self, bits: int) -> None:
        self.data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")

    def __contains__(self, photo_id: int) -> bool:
        byte = photo_id >> 3
        return byte < len(self.data) and bool(self.data[byte] >> (photo_id & 7) & 1)
