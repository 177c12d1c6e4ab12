"""The PostgreSQL index on a real server: several writer processes at once (as several machines),
the real `tagd` command on it, and the failures a user sees as one line.

The query language's own tests run on both backends through the `index_backend` fixture
(test_index_search.py, test_index_db.py); these are what only a server has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagd.index import bitmaps, tags
from tagd.index.db import Index
from tagd.index.errors import IndexFileError, IndexNotFoundError
from tagd.index.query import parse
from tagd.index.query_sql import search_sql

REPO = Path(__file__).resolve().parent.parent
WRITERS, ROUNDS, SHARED_PATHS = 4, 30, 40

# Each writer is one "machine": its own process and connection. All of them write the same 40
# paths (the same files seen by every machine) with the writer's own tags, and 5 paths of their
# own per round; some rounds mark a shared photo gone. Every transaction touches the same
# bitmap chunks and photo rows, so any lost update shows up as a bitmap that disagrees with the
# rows, or a path with two rows.
WRITER = """
import json, random, sys
from pathlib import Path
from tagd.index.db import Index, IndexedTag, PhotoRecord
url, me, rounds, shared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(me)
def photo(path, i):
    return PhotoRecord(Path(path), f"{{i:064x}}", 1 + i, 1, tags=[
        IndexedTag(f"writer{{me}}", 0.5, "model", "kept"), IndexedTag(f"round{{i % 7}}", 0.9, "user", "added"),
        IndexedTag("cat" if i % 2 else "dog", 0.3 + me / 10, "model", "kept")])
written = 0
with Index(url) as index:
    for r in range(rounds):
        paths = rng.sample(range(shared), 8)
        records = [photo(f"/shared/{{p:03d}}.jpg", r) for p in paths]
        records += [photo(f"/own/{{me}}/{{r:03d}}-{{k}}.jpg", r) for k in range(5)]
        index.upsert_photos(records)
        written += len(records)
        if r % 5 == 4:
            index.mark_gone(Path(f"/shared/{{paths[0]:03d}}.jpg"))
print(json.dumps({{"written": written}}))
"""

VOCAB = [("animal", [], []), ("cat", ["animal"], ["kitty"]), ("dog", ["animal"], ["puppy"])]


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_concurrent_writers_lose_no_update(pg_server) -> None:
    url = pg_server.new_database()
    with Index(url) as index:
        index.set_vocabulary(VOCAB)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER.format(), url, str(w), str(ROUNDS), str(SHARED_PATHS)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for w in range(WRITERS)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-3000:]
        assert json.loads(out)["written"] == ROUNDS * 13
    with Index(url) as index:
        rows = index.read(lambda c: c.execute("SELECT path, count(*) FROM photo GROUP BY path").fetchall())
        assert all(n == 1 for _, n in rows)  # one row per path, whoever wrote it
        own = [p for p, _ in rows if p.startswith("/own/")]
        assert len(own) == WRITERS * ROUNDS * 5  # every machine's own photos arrived
        # Each shared photo holds exactly one writer's record, whole: its writer's tag, its round's.
        for path, (names,) in index.read(lambda c: {
            p: (sorted(n for (n,) in c.execute(
                "SELECT t.name FROM photo_tag pt JOIN tag t ON t.id = pt.tag_id JOIN photo ph ON ph.id = pt.photo_id "
                "WHERE ph.path = CAST(? AS TEXT)", (os.fsencode(p),))),)
            for p, _ in rows}).items():
            assert len(names) == 3 and sum(n.startswith("writer") for n in names) == 1, (path, names)
        # The bitmaps that every transaction rewrote equal a rebuild from the rows.
        snapshot = "SELECT kind, key, chunk, bits FROM bitmap ORDER BY kind, key, chunk"
        incremental = index.read(lambda c: c.execute(snapshot).fetchall())

        def rebuild(conn) -> None:  # noqa: ANN001
            cache = tags.TagCache()
            tags.load_cache(conn, cache)
            bitmaps.rebuild(conn, cache.ancestors)

        index.write(rebuild)
        assert index.read(lambda c: c.execute(snapshot).fetchall()) == incremental
        # And the engine's answers equal the one-statement reference SQL.
        for query in ("animal", "cat -dog", "writer0 OR writer3", "status:gone", "round3 kitty", "path:/own/2/*"):
            sql = search_sql(parse(query), sort="path", dialect="postgresql")
            want = [r[1] for r in index.read(lambda c: c.execute(sql.text, sql.params).fetchall())]
            assert [str(h.path) for h in index.search(query, sort="path")] == want, query
        assert index.count("") == len(rows) - index.count("status:gone")


def test_the_tagd_command_on_a_server(pg_server, photos: Path, tmp_path: Path) -> None:
    """`tagd scan` with index.url from the config, then `tagd search` / `show` / `stats` with
    `--index URL`: the real model, real photos, the real server."""
    url = pg_server.new_database()
    config = tmp_path / "config.toml"
    config.write_text(f'[index]\nurl = "{url}"\n')

    def tagd(*args: str, index: bool = False) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "tagd", "--config", str(config), *(["--index", url] if index else []), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())

    scan = tagd("scan", str(photos))
    assert scan.returncode == 0, scan.stderr
    found = tagd("search", "cat", index=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [str(photos / "chelsea.jpg")]
    show = tagd("show", str(photos / "astronaut.jpg"))
    assert show.returncode == 0 and "person" in show.stdout, show.stdout + show.stderr
    stats = tagd("stats", "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["photos"]["tagged"] == len(list(photos.iterdir()))
    again = tagd("scan", str(photos))
    assert again.returncode == 0 and "0 tagged" in again.stderr, again.stderr
    shown = tagd("config", "show")
    assert url in shown.stdout  # no password in this URL; one with a password is redacted:
    config.write_text(f'[index]\nurl = "{url.replace("tagd@", "tagd:s3cret@")}"\n')
    assert "s3cret" not in tagd("config", "show").stdout


def test_failures_are_one_line_and_hide_the_password(pg_server, tmp_path: Path) -> None:
    nowhere = f"postgresql://tagd:s3cret@/tagd?host={tmp_path}&connect_timeout=2"
    with pytest.raises(IndexFileError) as info:
        Index(nowhere)
    message = str(info.value)
    assert "\n" not in message and "s3cret" not in message and "cannot connect to the index" in message
    # A database that holds no index yet: a reader neither creates one nor pretends.
    empty = pg_server.new_database()
    with pytest.raises(IndexNotFoundError):
        Index(empty, readonly=True)
    with Index(empty) as writer:
        writer.set_vocabulary(VOCAB)
    with Index(empty, readonly=True) as reader:
        assert reader.count("") == 0
        with pytest.raises(Exception):
            reader.write(lambda c: c.execute("DELETE FROM photo"))
    cli = subprocess.run([sys.executable, "-m", "tagd", "--index", nowhere, "search", "cat"],
                         capture_output=True, text=True, timeout=60, env=_env())
    assert cli.returncode == 1 and len(cli.stderr.strip().splitlines()) == 1 and "s3cret" not in cli.stderr, cli.stderr


def test_two_daemons_watching_one_share_keep_one_index(pg_server, photos: Path, tmp_path: Path) -> None:
    """Two `tagd run`, as two machines watching the same share, on one PostgreSQL index: photos
    dropped in end up tagged once in the index (one row each), their files sound and carrying
    exactly the keywords the index records."""
    import shutil

    from daemon_harness import DaemonProcess, write_config
    from metadata_oracles import as_list, exiftool_json
    from PIL import Image

    url = pg_server.new_database()
    share = tmp_path / "share"
    share.mkdir()
    config = write_config(tmp_path / "config.toml", roots=[share])
    with DaemonProcess(tmp_path, [share], config=config, index=url, name="machine-a") as a, \
            DaemonProcess(tmp_path, [share], config=config, index=url, name="machine-b") as b:
        a.wait_ready()
        b.wait_ready()
        names = sorted(p.name for p in photos.iterdir())
        for name in names:  # as a sync tool delivers them: a hidden temporary, then a rename
            shutil.copy(photos / name, share / f".{name}.part")
            os.rename(share / f".{name}.part", share / name)

        def all_tagged() -> bool:
            with Index(url, readonly=True) as index:
                return index.count("status:tagged") == len(names)

        try:
            a.wait_for(all_tagged, 120, "every photo tagged in the shared index")
        except AssertionError as exc:
            with Index(url, readonly=True) as index:
                rows = index.read(lambda c: c.execute("SELECT path, status, error FROM photo").fetchall())
            raise AssertionError(f"{exc}\n{b.tail()}\nindex: {rows}") from None
        rc_a, _ = a.terminate()
        rc_b, _ = b.terminate()
        assert (rc_a, rc_b) == (0, 0), a.tail() + b.tail()
    with Index(url, readonly=True) as index:
        rows = index.read(lambda c: c.execute("SELECT path, status FROM photo").fetchall())
        assert sorted(rows) == sorted((str(share / n), "tagged") for n in names)
        for name in names:
            path = share / name
            with Image.open(path) as im:
                im.load()
            record = index.get(path, embedding=False)
            in_file = set(as_list(exiftool_json(path, "-XMP-dc:Subject").get("XMP-dc:Subject")))
            assert in_file and in_file == {t.name for t in record.tags if t.state in ("added", "kept")}, name
