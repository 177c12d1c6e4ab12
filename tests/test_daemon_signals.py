"""Stopping the daemon in the middle of work: SIGTERM (clean stop) and kill -9 (crash) loops.

After either, no photo may be half-written or corrupted, the index must be consistent with the
files, and no temp file may be left behind.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from daemon_harness import (
    DaemonProcess, copy_file, decodes, exiftool_many, has_provenance, index_keywords, index_rows, integrity,
    make_photos, path_counts, subjects, tagged, temp_files_under, write_config,
)
from metadata_oracles import scan_data


def check_library(db: Path, photos: dict[Path, Path], *, all_tagged: bool) -> int:
    """Every photo decodes and either is byte-identical to its source or carries tagd's keywords;
    the index is consistent with the files; no temp files. Returns how many are tagged."""
    assert integrity(db) == "ok"
    rows = index_rows(db)
    counts = path_counts(db)
    assert all(n == 1 for n in counts.values()), {p: n for p, n in counts.items() if n > 1}
    assert set(rows) <= {str(p) for p in photos}, set(rows) - {str(p) for p in photos}
    records = exiftool_many(sorted(photos))
    n_tagged = 0
    for path, source in photos.items():
        assert decodes(path) is None, f"{path}: {decodes(path)}"
        row = rows.get(str(path))
        if all_tagged:
            assert row is not None and row["status"] == "tagged", f"{path}: {row}"
        else:
            assert row is None or row["status"] == "tagged", f"{path}: {row}"
        data, original = path.read_bytes(), source.read_bytes()
        record = records[str(path)]
        if data != original:
            # Rewritten by tagd: the image data is the original's, the keywords read back.
            assert scan_data(path) == scan_data(source), f"{path}: image data changed"
            assert has_provenance(record), f"{path}: rewritten without tagd's XMP: {record}"
        if row is not None and row["status"] == "tagged":
            n_tagged += 1
            in_file = subjects(record)
            assert has_provenance(record), f"{path}: tagged in the index, no tagd XMP in the file"
            assert len(in_file) == len(set(in_file)), f"{path}: duplicated keywords {in_file}"
            assert set(in_file) == index_keywords(db, path), f"{path}: index and file disagree"
    leftovers = temp_files_under(next(iter(photos)).parent.parent)
    assert not leftovers, leftovers
    return n_tagged


def test_sigterm_mid_batch(real_photo_dir: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    sources = make_photos(real_photo_dir, staging, 30, size=(1024, 768), seed=7)
    root = tmp_path / "library" / "photos"
    root.mkdir(parents=True)
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml", settle_s=0.2)
    photos = {root / s.name: s for s in sources}

    with DaemonProcess(tmp_path, [root], config=config, index=db) as daemon:
        daemon.wait_ready()
        for dst, src in photos.items():
            copy_file(src, dst)
        daemon.wait_for(daemon.tagged_paths, 90, "the first photo tagged", interval=0.02)
        rc, seconds = daemon.terminate(timeout=30)
        log = daemon.log()
    print(f"\nSIGTERM mid-batch: exit {rc} in {seconds:.2f} s; {len(daemon.tagged_paths())} of 30 tagged")
    assert rc == 0, log
    assert seconds < 10, f"took {seconds:.1f} s to stop"
    assert "SIGTERM: finishing the current photos, then stopping" in log
    assert "INFO stopped: " in log and "Traceback" not in log, log
    n_tagged = check_library(db, photos, all_tagged=False)
    assert 0 < n_tagged == len(set(daemon.tagged_paths()))


@pytest.mark.slow
def test_kill_9_during_a_300_photo_drop(real_photo_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(20240607)
    staging = tmp_path / "staging"
    sources = make_photos(real_photo_dir, staging, 300, size=(320, 240), seed=11)
    library = tmp_path / "library"
    folders = [library / "a", library / "b" / "2024", library / "c"]
    for folder in folders:
        folder.mkdir(parents=True)
    photos = {folders[i % len(folders)] / s.name: s for i, s in enumerate(sources)}
    db = tmp_path / "index.sqlite3"
    config = write_config(tmp_path / "config.toml", settle_s=0.3)

    # The drop: 300 photos arriving over ~30 s, whether or not the daemon is up.
    order = list(photos.items())
    rng.shuffle(order)
    pauses = [rng.uniform(0.0, 0.2) for _ in order]

    def drop() -> None:
        for (dst, src), pause in zip(order, pauses):
            copy_file(src, dst)
            time.sleep(pause)

    # The moments: a third at a random point of start-up (model load, index, reconciliation),
    # the rest at a random point after the daemon said it was ready (tagging, writing, recording).
    moments = [("start", rng.uniform(0.2, 2.0)) if rng.random() < 1 / 3 else ("ready", rng.uniform(0.05, 2.5))
               for _ in range(20)]
    dropper = threading.Thread(target=drop)
    started = time.monotonic()
    dropper.start()
    killed_while_tagging = 0
    try:
        for phase, delay in moments:
            daemon = DaemonProcess(tmp_path, [library], config=config, index=db, name="killed")
            try:
                if phase == "ready":
                    daemon.wait_ready()
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline and daemon.running():
                    time.sleep(0.02)
                assert daemon.running(), f"daemon died on its own\n{daemon.tail()}"
                killed_while_tagging += bool(daemon.tagged_paths())
            finally:
                daemon.kill()  # SIGKILL
    finally:
        dropper.join()
    loop_s = time.monotonic() - started
    assert integrity(db) == "ok"

    with DaemonProcess(tmp_path, [library], config=config, index=db, name="final") as daemon:
        daemon.wait_ready()
        daemon.wait_for(lambda: tagged(db, photos), 240, "all 300 photos tagged after the crashes",
                        interval=0.5)
        rc, _ = daemon.terminate()
        assert rc == 0, daemon.tail()
        assert "Traceback" not in daemon.log(), daemon.log()
    total_s = time.monotonic() - started
    print(f"\nkill -9 x20: loop {loop_s:.1f} s ({killed_while_tagging} kills after tagging had started), "
          f"final run to all tagged, total {total_s:.1f} s")
    assert check_library(db, photos, all_tagged=True) == 300
    assert len(index_rows(db)) == 300
