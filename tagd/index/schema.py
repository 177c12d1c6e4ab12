"""The index schema and its migrations, one definition for both backends.

The steps are written in SQLite's dialect; on PostgreSQL each statement is rendered by
tagd.index.postgres.render_ddl (types, identity keys, collation). The version lives in
`PRAGMA user_version` (SQLite) or the one-row table `tagd_schema` (PostgreSQL). `migrate` applies
every missing step inside one transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: under an
advisory lock, DDL being transactional there), so a crash or a second process or machine
opening the index at the same moment leaves either the old schema or the new one, never half
of each.

Tables:
  photo        one row per file path; `taken` is ISO 8601 local time (text sorts as time)
  tag          every tag name seen, vocabulary or not; `key` is query.tag_key(name)
  tag_parent   the vocabulary's hierarchy;  tag_synonym: the vocabulary's other words for a tag
  tag_alias    derived: a typed word -> the tags it names (name first, else synonyms)
  tag_closure  derived: (ancestor, descendant) for every tag, including (t, t)
  photo_tag    a photo's tags: score, source and state (as small integers, see query.py)
  embedding    a photo's embedding: float16 vector, plus int8 codes and a scale for fast scans
  bitmap       derived: photo-id bitmaps per tag/month/year/status/source/state (tagd.index.bitmaps)
  photo_reverted  (v2) photos the user ran `tagd revert` on: left alone until tagged again on request
  photo_region (v3) the detector's objects on a photo: label, score, normalised centre and size
  meta         key/value: vocabulary hash, generation counters
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

from tagd.index import postgres

_V1 = [
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID""",
    """CREATE TABLE photo (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT NOT NULL UNIQUE,
        content_hash TEXT,
        hash_key INTEGER,  -- the hash's first 60 bits: a small index to find moved files by
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        width INTEGER,
        height INTEGER,
        taken TEXT,
        camera TEXT,
        camera_key TEXT,
        status TEXT NOT NULL CHECK (status IN ('tagged', 'failed', 'pending', 'gone')),
        error TEXT,
        model_version TEXT,
        tagged_at TEXT
    )""",
    "CREATE INDEX photo_taken ON photo (taken)",
    "CREATE INDEX photo_hash ON photo (hash_key) WHERE hash_key IS NOT NULL",
    # stats lists failed files without reading a million tagged ones
    "CREATE INDEX photo_not_tagged ON photo (status) WHERE status != 'tagged'",
    # stats counts photos per model version from this index alone; new rows append to it
    "CREATE INDEX photo_model ON photo (model_version, status)",
    """CREATE TABLE tag (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        in_vocab INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE tag_parent (
        tag_id INTEGER NOT NULL REFERENCES tag (id) ON DELETE CASCADE,
        parent_id INTEGER NOT NULL REFERENCES tag (id) ON DELETE CASCADE,
        PRIMARY KEY (tag_id, parent_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE tag_synonym (
        tag_id INTEGER NOT NULL REFERENCES tag (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        PRIMARY KEY (tag_id, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE tag_alias (
        key TEXT NOT NULL,
        tag_id INTEGER NOT NULL REFERENCES tag (id) ON DELETE CASCADE,
        PRIMARY KEY (key, tag_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE tag_closure (
        ancestor INTEGER NOT NULL REFERENCES tag (id) ON DELETE CASCADE,
        descendant INTEGER NOT NULL REFERENCES tag (id) ON DELETE CASCADE,
        PRIMARY KEY (ancestor, descendant)
    ) WITHOUT ROWID""",
    "CREATE INDEX tag_closure_up ON tag_closure (descendant, ancestor)",
    """CREATE TABLE photo_tag (
        photo_id INTEGER NOT NULL REFERENCES photo (id) ON DELETE CASCADE,
        tag_id INTEGER NOT NULL REFERENCES tag (id),
        score REAL NOT NULL CHECK (score >= 0 AND score <= 1),
        -- query.SOURCE_CODE: 0 user, 1 model, 2 neighbours
        source INTEGER NOT NULL CHECK (source BETWEEN 0 AND 2),
        -- query.STATE_CODE: 0 kept, 1 added, 2 suggested, 3 suggested-removal, 4 removed, 5 rejected
        state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 5),
        PRIMARY KEY (photo_id, tag_id)
    ) WITHOUT ROWID""",
    # Walked backwards it yields one tag's photos best score first (ranking), and answers
    # score/source/state conditions without touching the table.
    "CREATE INDEX photo_tag_by_tag ON photo_tag (tag_id, score, photo_id, state, source)",
    """CREATE TABLE embedding (
        photo_id INTEGER PRIMARY KEY REFERENCES photo (id) ON DELETE CASCADE,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        code BLOB NOT NULL,
        scale REAL NOT NULL
    )""",
    """CREATE TABLE bitmap (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        key INTEGER NOT NULL,
        chunk INTEGER NOT NULL,
        bits BLOB NOT NULL,
        UNIQUE (kind, key, chunk)
    )""",
]



def _ddl(conn: Any, sql: str) -> None:
    conn.execute(postgres.render_ddl(sql) if _dialect(conn) == postgres.DIALECT else sql)


def _dialect(conn: Any) -> str:
    return getattr(conn, "dialect", "sqlite")


def _create_v1(conn: sqlite3.Connection) -> None:
    for sql in _V1:  # not executescript: it would COMMIT the migration's transaction
        _ddl(conn, sql)


def _add_reverted(conn: sqlite3.Connection) -> None:
    # A table of its own, not a status: photo.status has a CHECK constraint, and changing one
    # means rebuilding the table, whose foreign keys cascade into every tag and embedding.
    _ddl(conn, """CREATE TABLE photo_reverted (
        photo_id INTEGER PRIMARY KEY REFERENCES photo (id) ON DELETE CASCADE,
        reverted_at TEXT NOT NULL
    )""")


def _add_regions(conn: sqlite3.Connection) -> None:
    _ddl(conn, """CREATE TABLE photo_region (
        photo_id INTEGER NOT NULL REFERENCES photo (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,  -- best first
        label TEXT NOT NULL,
        score REAL NOT NULL CHECK (score >= 0 AND score <= 1),
        x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,  -- centre and size, 0..1
        PRIMARY KEY (photo_id, position)
    ) WITHOUT ROWID""")


# MIGRATIONS[i] takes the schema from version i to i + 1. Append; never edit a released step.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_create_v1, _add_reverted, _add_regions]


def latest_version() -> int:
    return len(MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    if _dialect(conn) == postgres.DIALECT:
        return postgres.schema_version(conn)
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date in one transaction; return the version found before."""
    pg = _dialect(conn) == postgres.DIALECT
    if pg:
        postgres.begin_migration(conn)
    else:
        conn.execute("BEGIN IMMEDIATE")
    try:
        found = version(conn)  # read inside the lock: another process may just have migrated
        for step in range(found, latest_version()):
            MIGRATIONS[step](conn)
        if found < latest_version():
            if pg:
                postgres.set_schema_version(conn, latest_version())
            else:
                # PRAGMA does not take parameters; the value is an int from this module.
                conn.execute(f"PRAGMA user_version = {latest_version():d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
