"""The index and its library API: schema, migrations, records, moves, vocabulary, similar, stats.

Tests taking `index` (or `index_backend`) run twice: on an SQLite file and on a real PostgreSQL
server (tests/postgres_harness.py); the rest are about the SQLite file itself."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from tagd.errors import TagdError
from tagd.index import schema
from tagd.index.db import Index, IndexedTag, PhotoRecord
from tagd.index.errors import (
    IndexCorruptError,
    IndexNotFoundError,
    IndexVersionError,
    NotIndexedError,
    QueryError,
)

VOCAB = [
    ("animal", [], ["creature"]),
    ("cat", ["animal"], ["kitty"]),
    ("dog", ["animal"], ["puppy"]),
    ("furniture", [], []),
    ("sofa", ["furniture"], ["couch"]),
]


def rec(path: str, *tags: tuple[str, float, str, str], **kw: object) -> PhotoRecord:
    return PhotoRecord(Path(path), kw.pop("content_hash", None), kw.pop("size", 1), kw.pop("mtime_ns", 1),
                       tags=[IndexedTag(*t) for t in tags], **kw)


@pytest.fixture
def index(index_backend) -> Index:
    with Index(index_backend()) as ix:
        ix.set_vocabulary(VOCAB)
        yield ix


@pytest.fixture
def sqlite_index(tmp_path: Path) -> Index:
    with Index(tmp_path / "data" / "tagd" / "index.sqlite3") as ix:
        ix.set_vocabulary(VOCAB)
        yield ix


def test_creates_folders_wal_foreign_keys_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "index.sqlite3"
    with Index(path) as ix:
        conn = ix._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.latest_version()
    assert path.is_file()


def test_readonly_never_creates(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no index at"):
        Index(tmp_path / "missing.sqlite3", readonly=True)
    assert not (tmp_path / "missing.sqlite3").exists()


def test_readonly_refuses_writes(index: Index) -> None:
    with Index(index.path, readonly=True) as ro:
        with pytest.raises(TagdError, match="read-only"):
            ro.upsert_photos([rec("/p/a.jpg")])


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "index.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexCorruptError, match="not a usable tagd index"):
        Index(bad)
    with pytest.raises(IndexCorruptError):
        Index(bad, readonly=True)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    Index(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.latest_version() + 1}")
    conn.commit()
    conn.close()
    for readonly in (False, True):
        with pytest.raises(IndexVersionError, match="newer than this tagd"):
            Index(path, readonly=readonly)


def test_migrations_run_in_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "index.sqlite3"
    Index(path).close()

    def v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE photo ADD COLUMN rating INTEGER")
        raise RuntimeError("crash half way")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, v2])
    with pytest.raises(RuntimeError):
        Index(path)
    current = len(schema.MIGRATIONS) - 1  # before the crashing step was appended
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == current
    assert "rating" not in [r[1] for r in conn.execute("PRAGMA table_info(photo)")]
    conn.close()

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS[:current], lambda c: c.execute("ALTER TABLE photo ADD COLUMN rating INTEGER")])
    with pytest.raises(IndexVersionError, match=f"schema version {current}"):
        Index(path, readonly=True)  # a reader does not upgrade
    with Index(path) as ix:
        assert ix._conn.execute("PRAGMA user_version").fetchone()[0] == current + 1
    with Index(path, readonly=True):
        pass


def test_record_round_trip(index: Index) -> None:
    taken = datetime(2024, 6, 15, 14, 22, 1, 500)
    tagged = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    emb = np.random.default_rng(0).standard_normal(1280).astype(np.float32)
    index.upsert_photos([rec(
        "/home/me/Pictures/cat.jpg", ("cat", 0.9631, "model", "kept"), ("Grandma", 1.0, "user", "added"),
        ("dog", 0.05, "model", "suggested"), ("sofa", 0.4, "model", "rejected"),
        content_hash="ab" * 32, size=123, mtime_ns=456, width=4032, height=3024, taken=taken,
        camera="Google Pixel 7", model_version="efficientnet-lite0@0123456789ab", tagged_at=tagged, embedding=emb,
    )])
    got = index.get(Path("/home/me/Pictures/cat.jpg"))
    assert got is not None
    assert (got.content_hash, got.size, got.mtime_ns, got.width, got.height) == ("ab" * 32, 123, 456, 4032, 3024)
    assert got.taken == taken and got.tagged_at == tagged
    assert got.camera == "Google Pixel 7" and got.model_version == "efficientnet-lite0@0123456789ab"
    assert got.status == "tagged" and got.error is None
    assert sorted((t.name, t.score, t.source, t.state) for t in got.tags) == [
        ("Grandma", 1.0, "user", "added"), ("cat", 0.9631, "model", "kept"),
        ("dog", 0.05, "model", "suggested"), ("sofa", 0.4, "model", "rejected"),
    ]
    assert got.embedding is not None and got.embedding.dtype == np.float32
    assert float(got.embedding @ (emb / np.linalg.norm(emb))) > 0.9999
    assert index.get(Path("/home/me/Pictures/cat.jpg"), embedding=False).embedding is None
    assert index.get(Path("/home/me/Pictures/dog.jpg")) is None
    assert index.find_by_hash("ab" * 32) == [Path("/home/me/Pictures/cat.jpg")]
    assert index.find_by_hash("cd" * 32) == []


def test_upsert_replaces_tags_and_embedding(index: Index) -> None:
    emb = np.ones(8, dtype=np.float32)
    index.upsert_photos([rec("/p/a.jpg", ("cat", 0.9, "model", "kept"), embedding=emb)])
    index.upsert_photos([rec("/p/a.jpg", ("dog", 0.8, "model", "kept"), status="tagged")])
    got = index.get(Path("/p/a.jpg"))
    assert [t.name for t in got.tags] == ["dog"] and got.embedding is None
    assert index.count("cat") == 0 and index.count("dog") == 1 and index.count("animal") == 1
    assert index.similar(emb) == []


def test_last_record_for_a_path_wins_and_duplicate_tags_keep_the_first(index: Index) -> None:
    index.upsert_photos([
        rec("/p/a.jpg", ("cat", 0.9, "model", "kept")),
        rec("/p/a.jpg", ("Dog", 0.8, "user", "added"), ("dog", 0.1, "model", "suggested")),
    ])
    # one spelling per tag in the index: the vocabulary's (else the first seen)
    assert [(t.name, t.source, t.state) for t in index.get(Path("/p/a.jpg")).tags] == [("dog", "user", "added")]


def test_invalid_records_are_refused_before_writing(index: Index) -> None:
    for bad in (
        rec("relative/path.jpg"),
        rec("/p/a.jpg", status="done"),
        rec("/p/a.jpg", ("cat", 1.5, "model", "kept")),
        rec("/p/a.jpg", ("cat", 0.5, "robot", "kept")),
        rec("/p/a.jpg", ("cat", 0.5, "model", "maybe")),
        rec("/p/a.jpg", ("  ", 0.5, "model", "kept")),
    ):
        with pytest.raises(ValueError):
            index.upsert_photos([rec("/p/ok.jpg"), bad])
    assert index.count("") == 0


def test_move_keeps_tags_and_replaces_the_target(index: Index) -> None:
    index.upsert_photos([rec("/p/a.jpg", ("cat", 0.9, "model", "kept")), rec("/p/b.jpg", ("dog", 0.9, "model", "kept"))])
    index.move(Path("/p/a.jpg"), Path("/q/a.jpg"))
    assert index.get(Path("/p/a.jpg")) is None
    assert [t.name for t in index.get(Path("/q/a.jpg")).tags] == ["cat"]
    index.move(Path("/q/a.jpg"), Path("/p/b.jpg"))  # a file moved over another
    assert [h.path for h in index.search("animal")] == [Path("/p/b.jpg")]
    assert index.count("dog") == 0 and index.count("cat") == 1
    with pytest.raises(NotIndexedError, match="not in the index"):
        index.move(Path("/nowhere.jpg"), Path("/x.jpg"))


def test_mark_gone_hides_unless_asked(index: Index) -> None:
    index.upsert_photos([rec("/p/a.jpg", ("cat", 0.9, "model", "kept"))])
    index.mark_gone(Path("/p/a.jpg"))
    index.mark_gone(Path("/p/unknown.jpg"))  # nothing to do
    assert index.count("cat") == 0 and index.count("") == 0
    assert index.count("cat status:gone") == 1
    assert index.get(Path("/p/a.jpg")).status == "gone"
    index.upsert_photos([rec("/p/a.jpg", ("cat", 0.9, "model", "kept"))])  # it came back
    assert index.count("cat") == 1


def test_remove(index: Index) -> None:
    index.upsert_photos([rec("/p/a.jpg", ("cat", 0.9, "model", "kept"))])
    assert index.remove(Path("/p/a.jpg")) is True
    assert index.remove(Path("/p/a.jpg")) is False
    assert index.count("cat") == 0 and index.get(Path("/p/a.jpg")) is None


def test_vocabulary_is_stored_once_and_rebuilt_when_it_changes(index: Index) -> None:
    index.upsert_photos([rec("/p/a.jpg", ("cat", 0.9, "model", "kept")), rec("/p/b.jpg", ("Couch", 1.0, "user", "added"))])
    assert index.set_vocabulary(VOCAB) is False  # same vocabulary: nothing to do
    assert index.count("animal") == 1 and index.count("furniture") == 1 and index.count("couch") == 1
    assert index.set_vocabulary([("pet", [], ["couch"]), ("cat", ["pet"], [])]) is True
    assert index.count("animal") == 0 and index.count("pet") == 2  # the user's Couch now hangs under pet
    assert index.count("furniture") == 0


def test_hierarchy_is_transitive_and_cycles_do_not_hang(index_backend) -> None:
    with Index(index_backend()) as ix:
        ix.set_vocabulary([("a", ["b"], []), ("b", ["c"], []), ("c", ["a"], []), ("d", ["c"], [])])
        ix.upsert_photos([rec("/p/d.jpg", ("d", 0.5, "model", "kept"))])
        assert ix.count("a") == ix.count("b") == ix.count("c") == ix.count("d") == 1


def test_strange_names_are_data(index: Index) -> None:
    names = ["'; DROP TABLE photo; --", 'x" OR "1"="1', "Robert'); DELETE FROM tag;--", "%", "_", "\\", "ünïcödé", "emoji 🐱", "\u202eRTL"]
    paths = [f"/p/{i}-{n}.jpg" for i, n in enumerate(names)] + ["/p/not-utf8-\udcff.jpg", "/p/new\nline.jpg"]
    index.upsert_photos([rec(p, (n, 0.5, "user", "added"), camera=n) for p, n in zip(paths, names + ["x", "y"])])
    for path, name in zip(paths, names):
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        assert [h.path for h in index.search(quoted)] == [Path(path)], name
        assert Path(path) in [h.path for h in index.search(f"camera:{quoted}")]
    assert index.get(Path("/p/not-utf8-\udcff.jpg")) is not None
    assert [h.path for h in index.search('path:"*\udcff*"')] == [Path("/p/not-utf8-\udcff.jpg")]
    assert index.count("") == len(paths)
    catalog = ("SELECT tablename FROM pg_tables WHERE schemaname = 'public'" if index.dialect == "postgresql"
               else "SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = index.read(lambda c: {r[0] for r in c.execute(catalog)})
    assert {"photo", "tag", "photo_tag"} <= tables


def test_query_errors_carry_the_column(index: Index) -> None:
    with pytest.raises(QueryError) as info:
        index.search("dog beach NOT")
    assert str(info.value) == "col 14: expected a tag after NOT"


def test_similar_finds_planted_neighbours(index: Index) -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal(64).astype(np.float32)
    near = [base + 0.1 * i * rng.standard_normal(64).astype(np.float32) for i in range(1, 6)]
    far = [rng.standard_normal(64).astype(np.float32) for _ in range(300)]
    records = [rec(f"/near/{i}.jpg", embedding=v) for i, v in enumerate(near)]
    records += [rec(f"/far/{i}.jpg", embedding=v) for i, v in enumerate(far)]
    records.append(rec("/base.jpg", embedding=base))
    index.upsert_photos(records)
    hits = index.similar(base, k=5, exclude=Path("/base.jpg"))
    assert [p for p, _ in hits] == [Path(f"/near/{i}.jpg") for i in range(5)]
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and 0.9 < scores[0] <= 1.0001
    # exact ranking, checked against float64 cosine on the stored float16 vectors
    everything = index.similar(base, k=1000)
    vectors = {Path(r.path): r.embedding for r in records}
    want = sorted(vectors, key=lambda p: -float(np.dot(vectors[p], base) / np.linalg.norm(vectors[p]) / np.linalg.norm(base)))
    assert [p for p, _ in everything[:20]] == want[:20]
    assert len(everything) == len(records)
    index.mark_gone(Path("/near/0.jpg"))
    assert Path("/near/0.jpg") not in [p for p, _ in index.similar(base, k=5)]
    assert index.similar(np.ones(32, dtype=np.float32)) == []  # another model's dimension: nothing comparable


def test_similar_cache_follows_other_writers(index: Index) -> None:
    v = np.eye(16, dtype=np.float32)
    with Index(index.path, readonly=True) as reader:
        index.upsert_photos([rec("/a.jpg", embedding=v[0])])
        assert [p for p, _ in reader.similar(v[0], k=3)] == [Path("/a.jpg")]
        index.upsert_photos([rec("/b.jpg", embedding=v[0] + 0.01 * v[1])])
        assert [p for p, _ in reader.similar(v[0], k=3)] == [Path("/a.jpg"), Path("/b.jpg")]
        index.remove(Path("/a.jpg"))
        assert [p for p, _ in reader.similar(v[0], k=3)] == [Path("/b.jpg")]


def test_stats(index: Index) -> None:
    index.upsert_photos([
        rec("/p/a.jpg", ("cat", 0.9, "model", "kept"), model_version="m@1", embedding=np.ones(4, np.float32)),
        rec("/p/b.jpg", ("dog", 0.9, "model", "kept"), ("sofa", 0.2, "model", "suggested"), model_version="m@1"),
        rec("/p/c.jpg", status="failed", error="cannot decode: truncated"),
        rec("/p/d.jpg", status="pending"),
        rec("/p/e.jpg", ("cat", 0.9, "model", "kept"), status="gone"),
    ])
    s = index.stats()
    assert s["photos"] == {"total": 4, "tagged": 2, "failed": 1, "pending": 1, "gone": 1}
    assert s["tags"]["top"][0] == {"name": "animal", "photos": 2}
    assert {t["name"]: t["photos"] for t in s["tags"]["top"]} == {"animal": 2, "cat": 1, "dog": 1}
    assert s["tags"]["vocabulary"] == 5
    assert s["failed"] == {"total": 1, "files": [{"path": "/p/c.jpg", "error": "cannot decode: truncated"}]}
    assert s["embeddings"] == 1
    assert s["models"][0] == {"version": "m@1", "photos": 2}
    assert s["index"]["bytes"] > 0 and s["index"]["path"] == str(index.path)


def test_dates_are_stored_as_wall_clock_time(index: Index) -> None:
    aware = datetime(2024, 6, 15, 23, 30, tzinfo=timezone(timedelta(hours=-7)))
    index.upsert_photos([rec("/p/a.jpg", taken=aware)])
    assert index.get(Path("/p/a.jpg")).taken == datetime(2024, 6, 15, 23, 30)
    assert index.count("taken:2024-06-15") == 1


def test_a_second_writer_waits_instead_of_failing(sqlite_index: Index) -> None:
    index = sqlite_index
    with Index(index.path) as other:
        other._conn.execute("BEGIN IMMEDIATE")
        index.busy_timeout = 0.3
        index._conn.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(TagdError, match="locked"):
            index.upsert_photos([rec("/p/a.jpg")])
        other._conn.execute("ROLLBACK")
    index.upsert_photos([rec("/p/a.jpg")])
    assert index.count("") == 1


def test_file_modes_untouched_by_readers(sqlite_index: Index) -> None:
    index = sqlite_index
    index.upsert_photos([rec("/p/a.jpg")])
    before = os.stat(index.path).st_mtime_ns
    with Index(index.path, readonly=True) as ro:
        assert ro.count("") == 1
        with pytest.raises(sqlite3.OperationalError):
            ro._conn.execute("DELETE FROM photo")
    assert os.stat(index.path).st_mtime_ns == before


def test_the_writers_similar_cache_takes_its_own_new_photos(index: Index) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((120, 32)).astype(np.float32)
    index.upsert_photos([rec(f"/p/{i}.jpg", embedding=vectors[i]) for i in range(50)])
    index.similar(vectors[0])
    index.upsert_photos([rec(f"/p/{i}.jpg", embedding=vectors[i]) for i in range(50, 120)])
    cache = index._embeddings
    assert cache is not None and cache.gen is not None and cache.n == 120  # appended, not reloaded
    with Index(index.path, readonly=True) as fresh:
        for q in vectors[::7]:
            assert index.similar(q, k=7) == fresh.similar(q, k=7)
    index.upsert_photos([rec("/p/3.jpg", embedding=vectors[100])])  # a changed photo: reload
    assert cache.gen is None
    assert [p for p, _ in index.similar(vectors[100], k=2)] == [Path("/p/100.jpg"), Path("/p/3.jpg")] or \
        [p for p, _ in index.similar(vectors[100], k=2)] == [Path("/p/3.jpg"), Path("/p/100.jpg")]


def test_unwritable_places_are_one_line_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TagdError, match="cannot create the index folder"):
        Index(blocker / "sub" / "index.sqlite3")
    with pytest.raises(TagdError, match="cannot open index"):
        Index(tmp_path)  # a folder where the file should be


def test_reverted_flag_round_trip_and_cleared_by_a_new_record(index: Index) -> None:
    index.upsert_photos([rec("/p/a.jpg", ("cat", 0.9, "model", "added")), rec("/p/b.jpg")])
    assert index.get(Path("/p/a.jpg")).reverted is False
    index.upsert_photos([rec("/p/a.jpg", ("Mittens", 1.0, "user", "kept"), reverted=True)])
    got = index.get(Path("/p/a.jpg"))
    assert got.reverted and [t.name for t in got.tags] == ["Mittens"]
    index.move(Path("/p/a.jpg"), Path("/p/c.jpg"))
    assert index.get(Path("/p/c.jpg")).reverted  # a renamed photo stays reverted
    index.upsert_photos([rec("/p/c.jpg", ("cat", 0.9, "model", "added"))])  # tagged again on request
    assert index.get(Path("/p/c.jpg")).reverted is False and index.get(Path("/p/b.jpg")).reverted is False
    index.remove(Path("/p/c.jpg"))  # the flag goes with the photo (ON DELETE CASCADE)
    assert index._conn.execute("SELECT count(*) FROM photo_reverted").fetchone()[0] == 0


def _index_at_version(path: Path | str, monkeypatch: pytest.MonkeyPatch, version: int) -> Path | str:
    """An index made by a tagd whose schema stopped at `version`, holding one tagged photo."""
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:version])
        with Index(path) as ix:
            ix.set_vocabulary(VOCAB)
            ix.upsert_photos([rec("/p/a.jpg", ("cat", 0.9, "model", "added"))])
    return path


def test_a_version_1_index_is_upgraded_with_its_photos(index_backend, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _index_at_version(index_backend(), monkeypatch, 1)
    with Index(path) as ix:
        assert schema.version(ix._conn) == schema.latest_version()
        got = ix.get(Path("/p/a.jpg"))
        assert [t.name for t in got.tags] == ["cat"] and got.reverted is False
        ix.upsert_photos([rec("/p/a.jpg", reverted=True)])
        assert ix.get(Path("/p/a.jpg")).reverted


def test_regions_round_trip_and_go_with_their_photo(index_backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector's objects (v3): stored with the photo, best first, replaced by a new record,
    kept through a move, gone with the photo; a version-2 index is upgraded to hold them."""
    from tagd.boxes import Box

    path = _index_at_version(index_backend(), monkeypatch, 2)
    boxes = [Box("person", 0.93, 0.5, 0.4, 0.3, 0.8), Box("dog", 0.71, 0.2, 0.7, 0.1, 0.2)]
    with Index(path) as ix:
        assert ix.get(Path("/p/a.jpg")).regions == []
        record = ix.get(Path("/p/a.jpg"))
        record.regions = boxes
        ix.upsert_photos([record])
        assert ix.get(Path("/p/a.jpg")).regions == boxes
        ix.move(Path("/p/a.jpg"), Path("/p/b.jpg"))
        assert ix.get(Path("/p/b.jpg")).regions == boxes
        record = ix.get(Path("/p/b.jpg"))
        record.regions = boxes[1:]
        ix.upsert_photos([record])
        assert ix.get(Path("/p/b.jpg")).regions == boxes[1:]
        ix.remove(Path("/p/b.jpg"))
        assert ix._conn.execute("SELECT count(*) FROM photo_region").fetchone()[0] == 0
