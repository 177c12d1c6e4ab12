"""The tag index: an SQLite file with one writer and any number of readers, or a PostgreSQL
database several machines write to (tagd.index.postgres; `Index("postgresql://...")`).

WAL mode lets readers in other processes work while the writer commits; each read runs in one
transaction, so it sees one consistent snapshot (bitmaps and rows together). Writes use
`BEGIN IMMEDIATE`, which takes the write lock up front: a second writer waits (busy timeout)
instead of failing on a lock upgrade. Busy errors that SQLite's own handler does not wait out
are retried here, so "database is locked" does not reach a user.

An `Index` is one connection: use it from one thread (or, with any_thread=True, from several
one at a time). numpy is imported only for embeddings, so `tagd search` and `tagd show` start
without it. What a photo's record holds, and its conversion to rows, is tagd.index.records'; the
query language is tagd.index.query's; search and statistics run in tagd.index.search.

Over 400 lines: on purpose. The Index class is the one owner of the connection and its
transactions (retries, busy handling, the write lock), and each public method is a short
transaction over it; spreading the class over mixins would hide which lock a method holds.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TypeVar

from tagd.boxes import Box
from tagd.errors import first_line
from tagd.index import bitmaps, postgres, schema, tags
from tagd.index.records import (  # PhotoRecord and IndexedTag: what callers hand the index
    PHOTO_COLUMNS, IndexedTag, PhotoRecord, Prepared, decode_text, fs_bytes, hash_key, iso_text, parse_time, prepare,
)
from tagd.index.errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexFileError,
    IndexNotFoundError,
    IndexVersionError,
    NotIndexedError,
)
from tagd.index.query import parse
from tagd.index.query_tree import SOURCE_CODE, SOURCES, STATE_CODE, STATES

if TYPE_CHECKING:
    import numpy as np

    from tagd.index.hints import Unknown
    from tagd.index.search import SearchHit
    from tagd.index.similar import EmbeddingCache

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)




















class _SqliteConnection(sqlite3.Connection):
    dialect = "sqlite"


class Index:
    """The tag index at `path` (an SQLite file) or a `postgresql://` URL. `readonly=True` never
    writes and never creates the file (or the schema)."""

    def __init__(self, path: Path | str, *, readonly: bool = False, busy_timeout: float = BUSY_TIMEOUT_S,
                 any_thread: bool = False) -> None:
        """`any_thread`: the connection may be used from several threads, one at a time (the
        caller serialises: the web app holds a lock around each use)."""
        self.readonly = readonly
        self.busy_timeout = busy_timeout
        self._tags = tags.TagCache()
        self._embeddings: EmbeddingCache | None = None
        self._conn: Any
        if postgres.is_url(path):
            assert isinstance(path, str)
            self.location = postgres.redact(path)  # what messages name
            self.path: Path | str = path  # what another handle opens the same index with
            self._conn = postgres.PgConnection(path, connect_timeout=busy_timeout)
            self.dialect = postgres.DIALECT
            try:
                self._setup_postgres()
            except BaseException:
                self._conn.close()
                raise
            return
        self.path = Path(path)
        self.location = str(self.path)
        self.dialect = "sqlite"
        if readonly:
            if not self.path.is_file():
                raise IndexNotFoundError(self.path)
            target = "file:" + _uri_path(os.fsencode(self.path.absolute())) + "?mode=ro"
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise IndexFileError(f"cannot create the index folder {self.path.parent}: {exc.strerror}") from None
            target = os.fsdecode(self.path)
        try:
            self._conn = sqlite3.connect(
                target, uri=readonly, timeout=busy_timeout, isolation_level=None, cached_statements=512,
                check_same_thread=not any_thread, factory=_SqliteConnection,
            )
        except sqlite3.Error as exc:
            raise IndexFileError(f"cannot open index {self.path}: {exc}") from None
        self._conn.text_factory = decode_text
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        conn = self._conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000):d}")
            conn.execute("PRAGMA foreign_keys = ON")
            found = schema.version(conn)
            if self.readonly:
                conn.execute("PRAGMA query_only = ON")
                conn.execute("PRAGMA mmap_size = 1073741824")
                if found == 0:
                    raise IndexCorruptError(f"{self.path} is not a tagd index (no schema)")
                self._check_version(found)
            else:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
                conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: index pages of a 1M-photo library
                conn.execute("PRAGMA temp_store = MEMORY")
                # Checkpoint every ~100 MB of WAL, not the default 4 MB: index pages that a bulk load
                # dirties again and again are written back once (+15-20% inserts/s at 1M photos).
                conn.execute("PRAGMA wal_autocheckpoint = 25000")
                conn.execute("PRAGMA journal_size_limit = 67108864")
                self._upgrade(found)
            self._check_version(found)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise IndexBusyError(f"index {self.path} is locked by another process ({exc})") from None
            raise IndexFileError(f"cannot open index {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path} is not a usable tagd index ({exc})") from None

    def _upgrade(self, found: int) -> None:
        if found < schema.latest_version():
            before = self._retry(lambda: schema.migrate(self._conn))
            if before < schema.latest_version():
                log.info("index %s: schema %d -> %d", self.location, before, schema.latest_version())

    def _check_version(self, found: int) -> None:
        """After an upgrade (writers) or instead of one (readers): is this schema ours?"""
        if found > schema.latest_version():
            raise IndexVersionError(
                f"index {self.location} has schema version {found}, newer than this tagd understands "
                f"({schema.latest_version()}): upgrade tagd"
            )
        if self.readonly and found < schema.latest_version():
            raise IndexVersionError(
                f"index {self.location} has schema version {found}, this tagd uses {schema.latest_version()}: "
                "start the daemon (or any command that writes) once to upgrade it"
            )

    def _setup_postgres(self) -> None:
        conn = self._conn
        try:
            found = schema.version(conn)
            if self.readonly and found == 0:
                raise IndexNotFoundError(self.location)  # type: ignore[arg-type]
            if not self.readonly:
                self._upgrade(found)
            self._check_version(found)
        except Exception as exc:
            if postgres.classify(exc) is None:
                raise
            raise IndexFileError(f"cannot open index {self.location}: {first_line(exc)}") from None

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        self._embeddings = None
        self._conn.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except Exception as exc:
                if not self._is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise IndexBusyError(f"index {self.location} stayed locked for {self.busy_timeout:.0f} s ({exc})") from None
                log.debug("index busy, retrying: %s", exc)
                # Jittered: writers that lost the same race do not meet again at the same instant.
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.25)

    def _is_busy(self, exc: BaseException) -> bool:
        if self.dialect == postgres.DIALECT:
            return postgres.classify(exc) == "retry"
        return isinstance(exc, sqlite3.OperationalError) and _is_busy(exc)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one read transaction (one snapshot), retrying on SQLITE_BUSY."""

        begin = postgres.BEGIN_READ if self.dialect == postgres.DIALECT else "BEGIN"

        def attempt() -> T:
            self._conn.execute(begin)
            try:
                return fn(self._conn)
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")

        return self._mapped(attempt)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one write transaction (BEGIN IMMEDIATE ... COMMIT)."""
        if self.readonly:
            raise IndexFileError(f"index {self.location} is open read-only")
        begin = postgres.BEGIN_WRITE if self.dialect == postgres.DIALECT else "BEGIN IMMEDIATE"

        def attempt() -> T:
            self._conn.execute(begin)
            try:
                result = fn(self._conn)
                self._conn.execute("COMMIT")
                return result
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self._tags.gen = -1  # it may hold tags the rollback took back
                raise

        return self._mapped(attempt)

    def _mapped(self, attempt: Callable[[], T]) -> T:
        if self.dialect == postgres.DIALECT:
            try:
                return self._retry(attempt)
            except Exception as exc:
                if postgres.classify(exc) != "io":
                    raise  # not psycopg's, or a bug in tagd
                raise IndexFileError(f"index {self.location}: {first_line(exc)}") from None
        try:
            return self._retry(attempt)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug in tagd, not a condition a user can act on
        except sqlite3.OperationalError as exc:  # disk full, read-only file system, I/O error
            raise IndexFileError(f"index {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"index {self.path} is damaged: {exc}") from None

    # -- writing -------------------------------------------------------------------------------

    def set_vocabulary(self, entries: Iterable[tuple[str, Sequence[str], Sequence[str]]]) -> bool:
        """Store the tag vocabulary as (name, parents, synonyms); True when it changed.

        Storing the same vocabulary again is a cheap no-op (compared by hash). A new hierarchy
        recomputes the derived tables and bitmaps, which takes a while on a large library.
        """
        entries = list(entries)

        def tx(conn: sqlite3.Connection) -> bool:
            if not tags.store_vocabulary(conn, entries):
                return False
            self._tags.gen = -1
            tags.load_cache(conn, self._tags)
            started = time.monotonic()
            bitmaps.rebuild(conn, self._tags.ancestors)
            log.info("index %s: vocabulary of %d tags stored, bitmaps rebuilt in %.1f s",
                     self.location, len(entries), time.monotonic() - started)
            return True

        return self.write(tx)

    def upsert_photos(self, records: Iterable[PhotoRecord]) -> None:
        """Insert or replace photos by path, with their tags and embeddings, in one transaction."""
        by_path: dict[bytes, Prepared] = {}
        for record in records:
            prepared = prepare(record)
            by_path[prepared.path_bytes] = prepared  # the last record for a path wins
        if not by_path:
            return
        change = self.write(lambda conn: self._upsert(conn, list(by_path.values())))
        if self._embeddings is not None:
            # New photos are appended to this handle's similar() cache; other changes reload it.
            self._embeddings.after_write(*change)

    def _upsert(self, conn: sqlite3.Connection, records: list[Prepared]) -> tuple[int, int, list[tuple[int, int, float, bytes]], bool]:
        """Write the records; return (embedding generation before, after, new photos' embeddings
        as (id, dim, scale, code), whether other embeddings changed)."""
        tags.load_cache(conn, self._tags)
        gen_before = _counter(conn, "embedding_gen")
        appended: list[tuple[int, int, float, bytes]] = []
        other_change = False
        cache = self._tags
        writer = bitmaps.BitmapWriter(conn)
        tag_rows: list[tuple[int, int, float, int, int]] = []
        embedding_rows: list[tuple[int, int, float, bytes, bytes]] = []
        touched_embeddings = False
        set_columns = ", ".join(f"{c} = ?" for c in PHOTO_COLUMNS)
        insert_sql = (
            f"INSERT INTO photo (path, {', '.join(PHOTO_COLUMNS)}) "
            f"VALUES (CAST(? AS TEXT), {', '.join('?' * len(PHOTO_COLUMNS))}) RETURNING id"
        )
        for rec in records:
            found = conn.execute("SELECT id, status, taken FROM photo WHERE path = CAST(? AS TEXT)", (rec.path_bytes,)).fetchone()
            if found:
                photo_id = found[0]
                old_tags = conn.execute("SELECT tag_id, state, source FROM photo_tag WHERE photo_id = ?", (photo_id,)).fetchall()
                had_embedding = conn.execute("DELETE FROM embedding WHERE photo_id = ?", (photo_id,)).rowcount > 0
                touched_embeddings |= had_embedding
                other_change |= had_embedding or rec.embedding is not None
                old_keys = bitmaps.photo_keys(found[1], found[2], old_tags, cache.ancestors)
                if had_embedding:
                    old_keys.add((bitmaps.EMBEDDING, 0))
                conn.execute(f"UPDATE photo SET {set_columns} WHERE id = ?", (*rec.row, photo_id))
                conn.execute("DELETE FROM photo_tag WHERE photo_id = ?", (photo_id,))
            else:
                photo_id, old_keys = conn.execute(insert_sql, (rec.path_bytes, *rec.row)).fetchone()[0], set()
            if rec.reverted:
                conn.execute("INSERT INTO photo_reverted (photo_id, reverted_at) VALUES (?, ?) "
                             "ON CONFLICT (photo_id) DO UPDATE SET reverted_at = excluded.reverted_at",
                             (photo_id, iso_text(datetime.now(timezone.utc).replace(microsecond=0), naive=False)))
            elif found:
                conn.execute("DELETE FROM photo_reverted WHERE photo_id = ?", (photo_id,))
            if found:
                conn.execute("DELETE FROM photo_region WHERE photo_id = ?", (photo_id,))
            if rec.regions:
                conn.executemany("INSERT INTO photo_region (photo_id, position, label, score, x, y, w, h) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 [(photo_id, i, r.label, r.score, r.x, r.y, r.w, r.h) for i, r in enumerate(rec.regions)])
            own = []
            seen: set[int] = set()
            for key, name, score, source, state in rec.tags:
                tid = tags.ensure_tag(conn, cache, key, name)
                if tid in seen:
                    continue
                seen.add(tid)
                own.append((tid, state, source))
                tag_rows.append((photo_id, tid, score, source, state))
            new_keys = bitmaps.photo_keys(rec.status, rec.taken, own, cache.ancestors)
            if rec.embedding is not None:
                new_keys.add((bitmaps.EMBEDDING, 0))
                embedding_rows.append((photo_id, *rec.embedding))
                touched_embeddings = True
                if not found and rec.status != "gone":
                    appended.append((photo_id, *rec.embedding[:3]))
            writer.update(photo_id, old_keys, new_keys)
        conn.executemany("INSERT INTO photo_tag (photo_id, tag_id, score, source, state) VALUES (?, ?, ?, ?, ?)", tag_rows)
        conn.executemany("INSERT INTO embedding (photo_id, dim, scale, code, vector) VALUES (?, ?, ?, ?, ?)", embedding_rows)
        writer.flush()
        if touched_embeddings:
            tags.bump(conn, "embedding_gen")
        return gen_before, _counter(conn, "embedding_gen"), appended, other_change

    def move(self, old: Path, new: Path) -> None:
        """The file at `old` is now at `new` (same content): keep its tags and embedding.

        A photo already indexed at `new` is replaced, as the file there was.
        """
        old_b, new_b = fs_bytes(old), fs_bytes(new)
        if old_b == new_b:
            return

        def tx(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT id FROM photo WHERE path = CAST(? AS TEXT)", (old_b,)).fetchone()
            if row is None:
                raise NotIndexedError(old)
            self._delete(conn, new_b)
            conn.execute("UPDATE photo SET path = CAST(? AS TEXT) WHERE id = ?", (new_b, row[0]))

        self.write(tx)

    def mark_gone(self, path: Path) -> None:
        """The file was deleted: keep its row and tags (for revert, or if it comes back), but leave
        it out of searches unless a query asks for `status:gone`. No-op for an unknown path."""
        self._set_status(path, "gone")

    def _set_status(self, path: Path, status: str) -> None:
        path_b = fs_bytes(path)

        def tx(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT id, status FROM photo WHERE path = CAST(? AS TEXT)", (path_b,)).fetchone()
            if row is None or row[1] == status:
                return
            writer = bitmaps.BitmapWriter(conn)
            writer.update(row[0], {(bitmaps.STATUS, bitmaps.STATUS_CODE[row[1]])}, {(bitmaps.STATUS, bitmaps.STATUS_CODE[status])})
            conn.execute("UPDATE photo SET status = ? WHERE id = ?", (status, row[0]))
            writer.flush()
            tags.bump(conn, "embedding_gen")

        self.write(tx)
        if self._embeddings is not None:
            self._embeddings.invalidate()

    def remove(self, path: Path) -> bool:
        """Forget a photo entirely (its tags too); False if it was not indexed."""
        path_b = fs_bytes(path)
        removed = self.write(lambda conn: self._delete(conn, path_b))
        if removed and self._embeddings is not None:
            self._embeddings.invalidate()
        return removed

    def _delete(self, conn: sqlite3.Connection, path_b: bytes) -> bool:
        row = conn.execute("SELECT id, status, taken FROM photo WHERE path = CAST(? AS TEXT)", (path_b,)).fetchone()
        if row is None:
            return False
        tags.load_cache(conn, self._tags)
        old_tags = conn.execute("SELECT tag_id, state, source FROM photo_tag WHERE photo_id = ?", (row[0],)).fetchall()
        keys = bitmaps.photo_keys(row[1], row[2], old_tags, self._tags.ancestors)
        keys.add((bitmaps.EMBEDDING, 0))  # clearing a bit that is not set is harmless
        writer = bitmaps.BitmapWriter(conn)
        writer.update(row[0], keys, set())
        conn.execute("DELETE FROM photo WHERE id = ?", (row[0],))  # cascades to tags and embedding
        writer.flush()
        tags.bump(conn, "embedding_gen")
        return True

    # -- reading -------------------------------------------------------------------------------

    def get(self, path: Path, *, embedding: bool = True) -> PhotoRecord | None:
        """The photo at `path`, or None. `embedding=False` skips the vector (and numpy)."""
        path_b = fs_bytes(path)

        def tx(conn: sqlite3.Connection) -> PhotoRecord | None:
            row = conn.execute(
                f"SELECT id, path, {', '.join(PHOTO_COLUMNS)} FROM photo WHERE path = CAST(? AS TEXT)", (path_b,)
            ).fetchone()
            if row is None:
                return None
            photo_id = row[0]
            cols = dict(zip(PHOTO_COLUMNS, row[2:]))
            tag_list = [
                IndexedTag(name, score, SOURCES[source], STATES[state])
                for name, score, source, state in conn.execute(
                    "SELECT t.name, pt.score, pt.source, pt.state FROM photo_tag pt JOIN tag t ON t.id = pt.tag_id "
                    "WHERE pt.photo_id = ? ORDER BY pt.score DESC, t.key",
                    (photo_id,),
                )
            ]
            reverted = conn.execute("SELECT 1 FROM photo_reverted WHERE photo_id = ?", (photo_id,)).fetchone() is not None
            regions = [Box(*r) for r in conn.execute(
                "SELECT label, score, x, y, w, h FROM photo_region WHERE photo_id = ? ORDER BY position", (photo_id,))]
            vector = None
            if embedding:
                emb = conn.execute("SELECT dim, vector FROM embedding WHERE photo_id = ?", (photo_id,)).fetchone()
                if emb is not None:
                    from tagd.index.similar import decode_vector

                    vector = decode_vector(emb[1], emb[0])
            return PhotoRecord(
                path=Path(row[1]),
                content_hash=cols["content_hash"],
                size=cols["size"],
                mtime_ns=cols["mtime_ns"],
                width=cols["width"],
                height=cols["height"],
                taken=parse_time(cols["taken"]),
                camera=cols["camera"],
                status=cols["status"],
                error=cols["error"],
                model_version=cols["model_version"],
                tagged_at=parse_time(cols["tagged_at"]),
                tags=tag_list,
                embedding=vector,
                reverted=reverted,
                regions=regions,
            )

        return self.read(tx)

    def find_by_hash(self, content_hash: str) -> list[Path]:
        """Indexed paths whose file has this content (to recognise a moved or copied photo)."""
        key = hash_key(content_hash)
        sql = "SELECT path FROM photo WHERE content_hash = ?"
        params: tuple[object, ...] = (content_hash,)
        if key is not None:
            sql, params = sql + " AND hash_key = ?", (content_hash, key)
        sql += " ORDER BY path"
        return self.read(lambda conn: [Path(p) for (p,) in conn.execute(sql, params)])

    def search(self, query: str, *, sort: str = "score", limit: int | None = None, suggestions: bool = False) -> list[SearchHit]:
        """Photos matching `query` (see README, "Searching the index"). Raises QueryError.

        sort: "score" (best score among the query's tags, then most recently indexed), "taken"
        (newest first, undated last) or "path". suggestions: suggested tags count as present.
        """
        from tagd.index.search import run_search

        node = parse(query)
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        return self.read(lambda conn: run_search(conn, node, sort=sort, limit=limit, suggestions=suggestions))

    def count(self, query: str, *, suggestions: bool = False) -> int:
        from tagd.index.search import run_count

        node = parse(query)
        return self.read(lambda conn: run_count(conn, node, suggestions=suggestions))

    def unknown_words(self, query: str) -> list["Unknown"]:
        """The query's tag words that no tag in the index is called, with the closest known ones."""
        from tagd.index.hints import unknown_words

        node = parse(query)
        return self.read(lambda conn: unknown_words(conn, node))

    def similar(self, embedding: Any, k: int = 10, exclude: Path | None = None) -> list[tuple[Path, float]]:
        """The k photos whose embeddings are nearest (cosine similarity, best first)."""
        from tagd.index.similar import EmbeddingCache, nearest

        if self._embeddings is None:
            self._embeddings = EmbeddingCache()
        cache = self._embeddings
        exclude_b = fs_bytes(exclude) if exclude is not None else None
        return [(path, score) for _, path, score in self.read(lambda conn: nearest(conn, cache, embedding, k, exclude_b))]

    def neighbours(self, embedding: Any, k: int, among: Sequence[int], exclude: Path | None = None) -> list[tuple[int, float]]:
        """The k photos nearest to `embedding` among the photo ids `among` (as `user_tags` gives
        them; sorted saves a sort): (photo id, cosine similarity), best first. Scans only those
        photos' embeddings."""
        import numpy as np

        from tagd.index.similar import EmbeddingCache, nearest

        if self._embeddings is None:
            self._embeddings = EmbeddingCache()
        cache = self._embeddings
        ids = np.asarray(among, dtype=np.int64)
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            ids = np.unique(ids)
        exclude_b = fs_bytes(exclude) if exclude is not None else None
        return [(photo_id, score) for photo_id, _, score in self.read(lambda conn: nearest(conn, cache, embedding, k, exclude_b, ids))]

    def user_tags(self) -> tuple[int, dict[int, list[str]]]:
        """The user's own tags (source user, kept or suggested for removal) of every photo that
        has some and is not gone, by photo id; with the `generation` they reflect (one snapshot).

        Reads only those photos' rows (the source bitmap names them), so a library where the user
        tagged a few thousand of a million photos pays for a few thousand.
        """
        user, states = SOURCE_CODE["user"], (STATE_CODE["kept"], STATE_CODE["suggested-removal"])

        def tx(conn: sqlite3.Connection) -> tuple[int, dict[int, list[str]]]:
            ids = bitmaps.load(conn, bitmaps.SOURCE_S, [user]) & ~bitmaps.load(
                conn, bitmaps.STATUS, [bitmaps.STATUS_CODE["gone"]])
            return _counter(conn, "embedding_gen"), _tags_of(conn, bitmaps.to_ids(ids), user, states)

        return self.read(tx)

    def rejected_tags(self) -> dict[int, list[str]]:
        """The tags the user rejected (tagd accept/reject, or deleting tagd's addition), by photo
        id, of every photo that has some and is not gone."""
        model, rejected = SOURCE_CODE["model"], STATE_CODE["rejected"]

        def tx(conn: sqlite3.Connection) -> dict[int, list[str]]:
            ids = bitmaps.load(conn, bitmaps.STATE, [rejected]) & ~bitmaps.load(
                conn, bitmaps.STATUS, [bitmaps.STATUS_CODE["gone"]])
            return _tags_of(conn, bitmaps.to_ids(ids), model, (rejected,))

        return self.read(tx)

    def added_tags(self, photo_ids: Sequence[int]) -> dict[int, list[str]]:
        """The tags tagd's model added to each of these photos (and the user kept), by photo id."""
        model, added = SOURCE_CODE["model"], STATE_CODE["added"]
        return self.read(lambda conn: _tags_of(conn, sorted(set(photo_ids)), model, (added,)))

    def generation(self) -> int:
        """A counter that moves whenever photos with embeddings are written, marked gone or removed."""
        return self.read(lambda conn: _counter(conn, "embedding_gen"))

    def embedding(self, path: Path) -> np.ndarray | None:
        """The stored embedding of an indexed photo, or None."""
        path_b = fs_bytes(path)

        def tx(conn: sqlite3.Connection) -> Any:
            row = conn.execute(
                "SELECT e.dim, e.vector FROM embedding e JOIN photo p ON p.id = e.photo_id WHERE p.path = CAST(? AS TEXT)",
                (path_b,),
            ).fetchone()
            if row is None:
                return None
            from tagd.index.similar import decode_vector

            return decode_vector(row[1], row[0])

        return self.read(tx)

    def stats(self, *, top: int = 20, failed: int = 50) -> dict[str, Any]:
        """Photos by status, most common tags, failed files with reasons, sizes."""
        from tagd.index.search import run_stats

        result = self.read(lambda conn: run_stats(conn, top=top, failed=failed))
        size = 0
        if self.dialect == postgres.DIALECT:
            size = self.read(lambda conn: conn.database_bytes())
        for suffix in ("", "-wal", "-shm") if self.dialect == "sqlite" else ():
            try:
                size += os.stat(os.fsencode(self.path) + suffix.encode()).st_size
            except OSError:
                pass
        result["index"] = {"path": self.location, "bytes": size, "schema_version": schema.latest_version()}
        return result


_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/-._~")


def _uri_path(raw: bytes) -> str:
    """Percent-encode a file name for an SQLite URI (what urllib.parse.quote does, without its import)."""
    return "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in raw)


def _is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)


def _counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
    return int(row[0]) if row else 0










def _tags_of(conn: sqlite3.Connection, photo_ids: Sequence[int], source: int, states: Sequence[int]) -> dict[int, list[str]]:
    """Tag names by photo id, of one source in these states, for the given photos."""
    out: dict[int, list[str]] = {}
    marks = ",".join("?" * len(states))
    for start in range(0, len(photo_ids), 50_000):
        chunk = "[" + ",".join(map(str, photo_ids[start:start + 50_000])) + "]"
        for photo_id, name in conn.execute(
            "SELECT pt.photo_id, t.name FROM photo_tag pt JOIN tag t ON t.id = pt.tag_id "
            f"WHERE pt.photo_id IN (SELECT value FROM json_each(?)) AND pt.source = ? AND pt.state IN ({marks})",
            (chunk, source, *states),
        ):
            out.setdefault(photo_id, []).append(name)
    return out
