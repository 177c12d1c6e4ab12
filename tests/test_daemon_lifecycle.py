"""End to end: the real daemon on a temp folder, checked with exiftool and the real index.

Photos copied in (one written slowly), renamed, moved, deleted and modified while it runs;
a restart that must re-process nothing but pick up what changed while it was stopped;
SIGHUP adding a root; and `tagd scan`, the same reconciliation in the foreground.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from PIL import Image

from daemon_harness import (
    DaemonProcess, copy_file, exiftool_many, has_provenance, index_keywords, index_rows, integrity, subjects,
    tagged, temp_files_under, write_config,
)
from metadata_oracles import as_list, exiftool_json, exiftool_keywords, exiftool_write


def file_state(paths: list[Path]) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), os.stat(p).st_mtime_ns) for p in paths}


def assert_keywords_match_index(db: Path, paths: list[Path]) -> None:
    """The file carries exactly the keywords the index says it does, with tagd's provenance."""
    records = exiftool_many(paths)
    for path in paths:
        record = records[str(path)]
        assert has_provenance(record), f"{path}: no tagd provenance in {record}"
        in_file = subjects(record)
        assert in_file, f"{path}: no keywords in the file"
        assert len(in_file) == len(set(in_file)), f"{path}: duplicated keywords {in_file}"
        assert set(in_file) == index_keywords(db, path), f"{path}: file and index disagree"


def slow_write(src: Path, dst: Path, pause_s: float, done: threading.Event) -> None:
    """Half the bytes, a pause longer than the settle time (file still open), then the rest."""
    data = src.read_bytes()
    with open(dst, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.fsync(fh.fileno())
        time.sleep(pause_s)
        fh.write(data[len(data) // 2:])
    done.set()


def test_drop_rename_move_delete_modify_then_restart(real_photo_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    sub = root / "2024" / "launch"  # an album that already exists
    sub.mkdir(parents=True)
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml", settle_s=0.5)
    src = {p.stem: p for p in real_photo_dir.glob("*.jpg")}

    with DaemonProcess(tmp_path, [root], config=config, index=db) as daemon:
        daemon.wait_ready()
        daemon.wait_reconciled()  # an empty folder: nothing to do

        # -- photos copied in; one written slowly: half, 3 s pause (> settle_s), the rest -----
        quick = [root / "chelsea.jpg", root / "coffee.jpg", root / "rocket.jpg"]
        for path in quick:
            copy_file(src[path.stem], path)
        slow = root / "astronaut.jpg"
        slow_done = threading.Event()
        writer = threading.Thread(target=slow_write, args=(src["astronaut"], slow, 3.0, slow_done))
        writer.start()

        def all_tagged() -> bool:
            row = index_rows(db).get(str(slow))
            # Never read half-written: no failed row for the slow file at any point.
            assert row is None or row["status"] != "failed", f"half-written file recorded as failed: {row}"
            assert not (row and not slow_done.is_set()), "slow file processed before it was closed"
            return tagged(db, [*quick, slow])

        daemon.wait_for(all_tagged, 90, "the four photos tagged")
        writer.join()
        assert daemon.tagged_paths().count(str(slow)) == 1
        assert f"{slow}: cannot decode" not in daemon.log()
        live = [*quick, slow]
        assert_keywords_match_index(db, live)
        cat = as_list(exiftool_keywords(root / "chelsea.jpg").get("XMP-dc:Subject"))
        assert "cat" in cat, cat  # the real model really ran
        rows = index_rows(db)

        def same_row(old: Path, new: Path, first: Path, what: str) -> None:
            """`new` is in the index as the row `first` had, not re-tagged, and `old` is gone."""
            daemon.wait_for(lambda: str(new) in index_rows(db), 30, what)
            after = index_rows(db)
            assert str(old) not in after
            assert after[str(new)]["id"] == rows[str(first)]["id"]
            assert after[str(new)]["tagged_at"] == rows[str(first)]["tagged_at"]

        # -- rename: the same row, not re-tagged -------------------------------------------------
        espresso = root / "espresso.jpg"
        os.rename(root / "coffee.jpg", espresso)
        same_row(root / "coffee.jpg", espresso, root / "coffee.jpg", "the rename in the index")
        daemon.wait_log(rf"^INFO {re.escape(str(espresso))}: moved from ")

        # -- move into a subfolder: the same row, not re-tagged ------------------------------------
        moved = sub / "rocket.jpg"
        os.rename(root / "rocket.jpg", moved)
        same_row(root / "rocket.jpg", moved, root / "rocket.jpg", "the move in the index")
        daemon.wait_log(rf"^INFO {re.escape(str(moved))}: moved from ")

        # -- a whole folder renamed: the same row, not re-tagged -----------------------------------
        os.rename(sub, root / "2024" / "liftoff")
        moved = root / "2024" / "liftoff" / "rocket.jpg"
        same_row(sub / "rocket.jpg", moved, root / "rocket.jpg", "the folder rename in the index")

        # -- delete: the row stays (for revert), marked gone ---------------------------------------
        os.unlink(root / "chelsea.jpg")
        daemon.wait_for(lambda: index_rows(db)[str(root / "chelsea.jpg")]["status"] == "gone", 30, "the deletion")

        # -- modify: re-encoded by Pillow (drops the XMP) -> tagged again ---------------------------
        before_hash = index_rows(db)[str(slow)]["content_hash"]
        with Image.open(slow) as im:
            pixels = im.convert("RGB")
        pixels.save(slow, quality=70)
        assert not exiftool_keywords(slow).get("XMP-dc:Subject")

        def retagged() -> bool:
            row = index_rows(db)[str(slow)]
            return row["status"] == "tagged" and row["content_hash"] != before_hash

        daemon.wait_for(retagged, 60, "the re-encoded photo re-tagged")
        assert daemon.tagged_paths().count(str(slow)) == 2
        live = [espresso, moved, slow]
        assert_keywords_match_index(db, live)
        assert not temp_files_under(root)
        # Nothing else was tagged twice: tagd's own writes are not re-processed.
        counts = {p: daemon.tagged_paths().count(p) for p in set(daemon.tagged_paths())}
        assert counts == {str(p): 1 for p in quick} | {str(slow): 2}, counts
        rc, _ = daemon.terminate()
        assert rc == 0, daemon.tail()
        first_log = daemon.log()
    assert "Traceback" not in first_log, first_log

    # -- while stopped: a new photo arrives, one is moved --------------------------------------
    before = file_state(live)
    rows = index_rows(db)
    new_photo = root / "flower.jpg"
    copy_file(src["flower"], new_photo)
    moved_while_stopped = root / "2024" / "espresso.jpg"
    os.rename(espresso, moved_while_stopped)
    before[str(moved_while_stopped)] = before.pop(str(espresso))

    # -- restart: nothing re-processed, the new photo tagged, the move recorded ----------------
    with DaemonProcess(tmp_path, [root], config=config, index=db) as daemon:
        daemon.wait_ready()
        found = daemon.wait_reconciled()
        assert found.groups() == ("1", "1", "0", "2"), found.group(0)  # 1 to tag, 1 moved, 0 gone, 2 unchanged
        daemon.wait_for(lambda: tagged(db, [new_photo]), 60, "the photo added while stopped")
        rc, _ = daemon.terminate()
        assert rc == 0, daemon.tail()
        assert daemon.tagged_paths() == [str(new_photo)], daemon.tail()
    after = index_rows(db)
    assert after[str(moved_while_stopped)]["id"] == rows[str(espresso)]["id"]
    assert after[str(moved_while_stopped)]["tagged_at"] == rows[str(espresso)]["tagged_at"]
    assert str(espresso) not in after
    assert file_state([moved, slow, moved_while_stopped]) == before, "a restart rewrote a photo"
    assert_keywords_match_index(db, [moved, slow, moved_while_stopped, new_photo])
    assert integrity(db) == "ok"


def test_sighup_reload_adds_a_root(real_photo_dir: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml", roots=[first])
    src = {p.stem: p for p in real_photo_dir.glob("*.jpg")}
    already = second / "coffee.jpg"  # there before the reload: found by the scan of the new root
    copy_file(src["coffee"], already)

    with DaemonProcess(tmp_path, config=config, index=db) as daemon:  # roots from the config
        daemon.wait_ready()
        copy_file(src["chelsea"], first / "cat.jpg")
        daemon.wait_for(lambda: tagged(db, [first / "cat.jpg"]), 60, "a photo in the first root")
        assert str(already) not in index_rows(db)

        write_config(config, roots=[first, second])
        daemon.signal(signal.SIGHUP)
        daemon.wait_log(r"^INFO configuration reloaded; watching .*second", 30)
        dropped = second / "rocket.jpg"
        copy_file(src["rocket"], dropped)
        daemon.wait_for(lambda: tagged(db, [already, dropped]), 60, "photos in the added root")

        # A broken config on SIGHUP is refused; the daemon keeps running with the old one.
        config.write_text("[watch]\nsettle_s = -1\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log(r"^ERROR reload refused, keeping the running configuration: config key watch\.settle_s", 30)
        copy_file(src["flower"], second / "flower.jpg")
        daemon.wait_for(lambda: tagged(db, [second / "flower.jpg"]), 60, "a photo after a refused reload")
        rc, _ = daemon.terminate()
        assert rc == 0, daemon.tail()
    assert_keywords_match_index(db, [first / "cat.jpg", already, dropped, second / "flower.jpg"])


def run_scan(tmp_path: Path, db: Path, config: Path, *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagd", "scan", "--config", str(config), "--index", str(db),
                           *map(str, paths)], capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_tagd_scan_tags_then_reconciles(real_photo_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "library"
    (root / "trip").mkdir(parents=True)
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml")
    photos = [root / "cat.jpg", root / "trip" / "coffee.jpg", root / "trip" / "rocket.jpg"]
    src = {p.stem: p for p in real_photo_dir.glob("*.jpg")}
    for path, name in zip(photos, ["chelsea", "coffee", "rocket"]):
        copy_file(src[name], path)

    first = run_scan(tmp_path, db, config, root)
    assert first.returncode == 0, first.stderr
    assert re.search(r": 3 tagged or retried \(0 failed\), 0 moved, 0 gone, 0 unchanged", first.stderr), first.stderr
    assert tagged(db, photos)
    assert_keywords_match_index(db, photos)

    state = file_state(photos)
    second = run_scan(tmp_path, db, config, root)
    assert second.returncode == 0, second.stderr
    assert re.search(r": 0 tagged or retried \(0 failed\), 0 moved, 0 gone, 3 unchanged", second.stderr), second.stderr
    assert file_state(photos) == state, "a second scan rewrote a photo"

    rows = index_rows(db)
    target = root / "trip" / "2024" / "coffee.jpg"
    target.parent.mkdir()
    os.rename(photos[1], target)
    third = run_scan(tmp_path, db, config, root)
    assert third.returncode == 0, third.stderr
    assert re.search(r": 0 tagged or retried \(0 failed\), 1 moved, 0 gone, 2 unchanged", third.stderr), third.stderr
    after = index_rows(db)
    assert str(photos[1]) not in after
    assert after[str(target)]["id"] == rows[str(photos[1])]["id"]
    assert after[str(target)]["tagged_at"] == rows[str(photos[1])]["tagged_at"]
    assert file_state([target]) == {str(target): state[str(photos[1])]}
    assert not temp_files_under(root)


def test_folder_renamed_while_watched(real_photo_dir: Path, tmp_path: Path) -> None:
    """A renamed folder arrives as a folder move (-> rescan) and as each file inside moving; the
    two must not trip over each other (a big photo makes the rescan's snapshot come first)."""
    import numpy as np

    root = tmp_path / "photos"
    album = root / "album"
    album.mkdir(parents=True)
    big = album / "big.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big, quality=95)  # ~14 MB: hashing it takes a while
    copy_file(real_photo_dir / "chelsea.jpg", album / "cat.jpg")
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml")
    with DaemonProcess(tmp_path, [root], config=config, index=db) as daemon:
        daemon.wait_ready()
        daemon.wait_for(lambda: tagged(db, [big, album / "cat.jpg"]), 60, "the album tagged")
        rows = index_rows(db)
        renamed = root / "album 2024"
        os.rename(album, renamed)
        daemon.wait_for(lambda: tagged(db, [renamed / "big.jpg", renamed / "cat.jpg"]), 30, "the rename in the index")
        daemon.wait_log(r"^INFO reconciled .*: 0 to tag", 30)  # the folder move's rescan has run
        assert daemon.running(), daemon.tail()
        copy_file(real_photo_dir / "coffee.jpg", renamed / "coffee.jpg")
        daemon.wait_for(lambda: tagged(db, [renamed / "coffee.jpg"]), 30, "a photo after the rename")
        rc, _ = daemon.terminate()
        assert rc == 0, daemon.tail()
    after = index_rows(db)
    for name in ("big.jpg", "cat.jpg"):
        assert str(album / name) not in after
        assert after[str(renamed / name)]["id"] == rows[str(album / name)]["id"]
        assert after[str(renamed / name)]["tagged_at"] == rows[str(album / name)]["tagged_at"]
    assert sorted(daemon.tagged_paths()) == sorted([str(big), str(album / "cat.jpg"), str(renamed / "coffee.jpg")])


def test_a_photo_reverted_while_the_daemon_runs_is_left_alone(real_photo_dir: Path, tmp_path: Path) -> None:
    """`tagd revert` writes the photo (an event for the daemon): the running service must not
    tag it straight back, and must still tag the next new photo."""
    root = tmp_path / "photos"
    root.mkdir()
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml", settle_s=0.3)
    cat, cup = root / "chelsea.jpg", root / "coffee.jpg"
    with DaemonProcess(tmp_path, [root], config=config, index=db) as daemon:
        daemon.wait_ready()
        copy_file(real_photo_dir / "chelsea.jpg", cat)
        daemon.wait_for(lambda: tagged(db, [cat]), 90, "the cat tagged")
        assert "cat" in as_list(exiftool_keywords(cat).get("XMP-dc:Subject"))

        proc = subprocess.run([sys.executable, "-m", "tagd", "--config", str(config), "--index", str(db), "revert", str(cat)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        reverted = cat.read_bytes()
        copy_file(real_photo_dir / "coffee.jpg", cup)  # the daemon is busy with something after it
        daemon.wait_for(lambda: tagged(db, [cup]), 90, "the cup tagged")
        time.sleep(1.0)  # settle time x 3 past the revert's own event
        assert cat.read_bytes() == reverted
        assert "XMP-dc:Subject" not in exiftool_keywords(cat)
        assert index_keywords(db, cat) == set()

        exiftool_write(cat, "-XMP-dc:Subject=Tom")  # the user edits it later: still theirs alone
        copy_file(real_photo_dir / "rocket.jpg", root / "rocket.jpg")
        daemon.wait_for(lambda: tagged(db, [root / "rocket.jpg"]), 90, "the rocket tagged")
        time.sleep(1.0)
        assert as_list(exiftool_keywords(cat).get("XMP-dc:Subject")) == ["Tom"]
        assert not any(k.startswith("XMP-tagd:") for k in exiftool_json(cat, "-XMP-tagd:all"))
        assert daemon.tagged_paths().count(str(cat)) == 1


def test_a_chmod_lifts_a_read_only_refusal_while_the_daemon_runs(real_photo_dir: Path, tmp_path: Path) -> None:
    """A photo refused as read-only (the file, or its folder) is written as soon as the owner
    makes it writable: the real inotify watch sees the chmod (IN_ATTRIB), with no rescan."""
    root = tmp_path / "photos"
    locked_dir = root / "locked"
    locked_dir.mkdir(parents=True)
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml")  # rescan_interval_s = 0: only events count
    photo, in_dir = root / "chelsea.jpg", locked_dir / "coffee.jpg"
    copy_file(real_photo_dir / "chelsea.jpg", photo)
    copy_file(real_photo_dir / "coffee.jpg", in_dir)
    photo.chmod(0o444)
    locked_dir.chmod(0o555)
    try:
        with DaemonProcess(tmp_path, [root], config=config, index=db) as daemon:
            daemon.wait_ready()
            daemon.wait_for(lambda: {r["status"] for p, r in index_rows(db).items()} == {"failed"} and len(index_rows(db)) == 2,
                            60, "both photos refused")
            assert "read-only" in index_rows(db)[str(photo)]["error"]
            assert "read-only" in index_rows(db)[str(in_dir)]["error"]
            assert subjects(exiftool_many([photo])[str(photo)]) == []
            photo.chmod(0o644)
            daemon.wait_for(lambda: tagged(db, [photo]), 30, "the file written after its chmod")
            locked_dir.chmod(0o755)
            daemon.wait_for(lambda: tagged(db, [in_dir]), 30, "the photo written after its folder's chmod")
            rc, _ = daemon.terminate()
            assert rc == 0, daemon.tail()
            assert daemon.log().count("INFO reconciled ") == 1, "no rescan: the chmod events did it"
    finally:
        locked_dir.chmod(0o755)
    records = exiftool_many([photo, in_dir])
    for path in (photo, in_dir):
        assert has_provenance(records[str(path)]) and subjects(records[str(path)]), path
