"""A writer killed between temp write and rename, and a full disk: the original survives."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import temp_files, tmpfs
from metadata_oracles import as_list, exiftool_keywords
from tagd.metadata import KeywordUpdate, MetadataWriter, WriteError

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
REPO = Path(__file__).resolve().parent.parent

CHILD = """
import os, signal, sys
from pathlib import Path
from tagd.metadata import writer as w_mod
from tagd.metadata import MetadataWriter, KeywordUpdate

def die(src, dst):  # the moment between a complete, fsynced temp file and the rename
    print("TEMP", src, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

w_mod.os.replace = die
w = MetadataWriter()
p = Path(sys.argv[1])
w.write(w.read(p), KeywordUpdate(keywords=["cat"], added=["cat"]))
"""


def test_kill_between_temp_write_and_rename(jpeg: Path) -> None:
    before = jpeg.read_bytes()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(jpeg)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "TEMP" in proc.stdout
    assert jpeg.read_bytes() == before  # the original never saw the write
    leftovers = temp_files(jpeg.parent)
    assert len(leftovers) == 1  # the dead writer's complete temp file
    # The next writer in that directory removes what the dead one left, then writes normally.
    w = MetadataWriter()
    try:
        assert w.write(w.read(jpeg), KeywordUpdate(keywords=["cat"], added=["cat"])).changed
    finally:
        w.exiftool.close()
    assert temp_files(jpeg.parent) == []
    assert as_list(exiftool_keywords(jpeg)["XMP-dc:Subject"]) == ["cat"]


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    with tmpfs(tmp_path / "small", "160k") as mount:
        yield mount


def test_disk_full(writer, real_photo_dir: Path, small_tmpfs: Path) -> None:
    """The photo fits on the file system, a second copy (the temp file) does not."""
    photo = small_tmpfs / "big.jpg"
    data = (real_photo_dir / "china.jpg").read_bytes()  # ~110 kB on a 160 kB file system
    photo.write_bytes(data)
    with pytest.raises(WriteError) as info:
        writer.write(writer.read(photo), KeywordUpdate(keywords=["temple"]))
    assert "\n" not in info.value.reason
    assert photo.read_bytes() == data
    assert temp_files(small_tmpfs) == []


def test_injected_enospc_at_fsync(jpeg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tagd.metadata import files as files_module

    def no_space(path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module, "fsync_file", no_space)
    before = jpeg.read_bytes()
    w = MetadataWriter()
    try:
        with pytest.raises(WriteError, match="disk full"):
            w.write(w.read(jpeg), KeywordUpdate(keywords=["cat"]))
    finally:
        w.exiftool.close()
    assert jpeg.read_bytes() == before and temp_files(jpeg.parent) == []


def test_exiftool_killed_is_replaced(jpeg: Path) -> None:
    w = MetadataWriter()
    try:
        w.read(jpeg)
        proc = w.exiftool._proc
        assert proc is not None
        proc.kill()
        proc.wait()
        assert w.write(w.read(jpeg), KeywordUpdate(keywords=["cat"])).changed
        assert w.exiftool._proc is not proc
    finally:
        w.exiftool.close()
    assert temp_files(jpeg.parent) == []


def test_exiftool_hanging_times_out_and_is_replaced(jpeg: Path) -> None:
    w = MetadataWriter()
    try:
        current = w.read(jpeg)
        proc = w.exiftool._proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)  # a hung exiftool: alive, silent
        w.exiftool.timeout = 2
        before = jpeg.read_bytes()
        with pytest.raises(WriteError, match="no answer"):
            w.write(current, KeywordUpdate(keywords=["cat"]))
        assert jpeg.read_bytes() == before and temp_files(jpeg.parent) == []
        w.exiftool.timeout = 60
        assert w.write(w.read(jpeg), KeywordUpdate(keywords=["cat"])).changed
    finally:
        w.exiftool.close()
