"""`tagd backfill --ray local`: real photos, the packaged model, a real Ray cluster started by a
real `tagd` subprocess, and real kills (SIGKILL) of one of its workers and of the driver.

Each `tagd backfill` runs in a session of its own (and each test with its own RAY_TMPDIR): that
is how a test finds its own workers, and how its teardown kills whatever is left of its cluster,
never another user's Ray.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from metadata_oracles import as_list, exiftool_json

REPO = Path(__file__).resolve().parent.parent
needs_ray = pytest.mark.skipif(find_spec("ray") is None,
                               reason="Ray is not installed (pip install 'tagd[ray]'): no cluster to backfill on")
USER_KEYWORD = "holiday-2019"
SUMMARY = re.compile(r"backfilled .*: (\d+) tagged \((\d+) failed\), (\d+) moved, (\d+) gone, (\d+) unchanged")


# ---- photos -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def variant_dir(real_photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 distinct small JPEGs (5 crops and qualities of each real photo, no two files alike)."""
    folder = tmp_path_factory.mktemp("backfill-photos")
    n = 0
    for src in sorted(real_photo_dir.glob("*.jpg")):
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((400, 400))
            w, h = im.size
            for i in range(5):
                crop = im.crop((i * 6, i * 4, w - (4 - i) * 5, h - i * 3))
                crop.save(folder / f"{src.stem}-{i}.jpg", quality=70 + 5 * i)
                n += 1
    (folder / "sub").mkdir()
    shutil.move(folder / "chelsea-0.jpg", folder / "sub" / "chelsea-0.jpg")  # a nested folder too
    Image.open(real_photo_dir / "coffee.jpg").rotate(90, expand=True).save(folder / "coffee-rotated.jpg", quality=88)
    assert n + 1 == 36
    return folder


@pytest.fixture
def library(variant_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    shutil.copytree(variant_dir, folder)
    # A photo the user had already tagged: the keyword is theirs, the backfill must keep it.
    subprocess.run(["exiftool", "-q", "-overwrite_original", f"-XMP-dc:Subject={USER_KEYWORD}",
                    f"-IPTC:Keywords={USER_KEYWORD}", str(folder / "astronaut-2.jpg")], check=True, timeout=60)
    return folder


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.jpg") if not p.name.startswith("."))


# ---- the cluster's processes ------------------------------------------------------------------

class Driver:
    """`tagd backfill` subprocesses, each the leader of a session of its own: every process of
    the local cluster it starts (Ray's, the workers, their exiftool) stays in that session, even
    orphaned by a SIGKILL, and nothing else is in it. Ray rewrites its processes' titles over
    their command line and environment, so the session is what tells them apart."""

    def __init__(self, tmp_path: Path) -> None:
        # Short: Ray's socket paths under it must fit in 107 bytes.
        self.ray_tmp = tempfile.mkdtemp(prefix="tbf-", dir="/tmp")
        self.env = {**os.environ, "RAY_TMPDIR": self.ray_tmp, "PYTHONPATH": str(REPO)}
        self.sessions: list[int] = []

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen:  # noqa: ANN003
        proc = subprocess.Popen(argv, env=self.env, start_new_session=True, **kwargs)
        self.sessions.append(proc.pid)
        return proc

    def run(self, argv: list[str]) -> subprocess.CompletedProcess:
        proc = self.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=180)
        finally:
            proc.kill()
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def processes(self, session: int | None = None, title: bytes = b"") -> list[int]:
        """Live processes of the given session (default: any of this test's), whose title or
        command line starts with `title`."""
        sessions = {session} if session is not None else set(self.sessions)
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    cmdline = fh.read()
            except OSError:
                continue
            if fields[0] != b"Z" and int(fields[3]) in sessions and cmdline.startswith(title):
                found.append(int(entry.name))
        return found

    def kill_all(self) -> None:
        for pid in self.processes():
            with_pid(pid, signal.SIGKILL)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    runs = Driver(tmp_path)
    try:
        yield runs
    finally:
        runs.kill_all()  # whatever a failed test or a killed driver left
        shutil.rmtree(runs.ray_tmp, ignore_errors=True)


def with_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_for(condition, timeout: float, step: float = 0.02):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()


def rows(index: Path) -> int:
    """Photos recorded so far, read as another process would, while the backfill writes (0
    before the driver has created the index)."""
    from tagd.errors import TagdError
    from tagd.index.db import Index

    try:
        with Index(index, readonly=True) as reader:
            return reader.count("status:tagged OR status:failed")
    except TagdError:
        return 0


# ---- running it -------------------------------------------------------------------------------

def backfill_argv(index: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "tagd", "--index", str(index), "backfill", "--ray", "local", "--workers", "2",
            "--batch", "4", str(root)]


def summary(stderr: str) -> tuple[int, ...]:
    """(tagged, failed, moved, gone, unchanged) from the run's one-line summary."""
    found = SUMMARY.search(stderr)
    assert found, stderr
    return tuple(int(g) for g in found.groups())


def assert_complete(index_path: Path, library: Path) -> None:
    """Every photo tagged in the index at the model's version, and each file still a sound photo."""
    from tagd.index.db import Index

    with Index(index_path, readonly=True) as index:
        for path in photos_in(library):
            record = index.get(path, embedding=False)
            assert record is not None and record.status == "tagged", (path, record and record.error)
            assert record.model_version and record.model_version.startswith("tagd-default")
            assert any(t.source == "model" and t.state == "added" for t in record.tags), path
    for path in photos_in(library):
        with Image.open(path) as im:
            im.load()  # decodes: the file was replaced whole, never left half-written


# ---- tests -------------------------------------------------------------------------------------

@needs_ray
def test_backfill_tags_writes_and_indexes_every_photo(library: Path, tmp_path: Path, driver: Driver) -> None:
    index_path = tmp_path / "index.sqlite3"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "truncated.jpg").write_bytes((library / "coffee-1.jpg").read_bytes()[:3000])
    proc = driver.run(backfill_argv(index_path, library) + [str(broken)])
    # One photo failed: exit 1, its one-line reason on stderr, the 36 others tagged.
    assert proc.returncode == 1, proc.stderr
    assert summary(proc.stderr) == (37, 1, 0, 0, 0)
    assert "on 2 Ray workers" in proc.stderr and "Traceback" not in proc.stderr
    assert f"{broken / 'truncated.jpg'}: " in proc.stderr
    assert_complete(index_path, library)

    from tagd.index.db import Index

    with Index(index_path, readonly=True) as index:
        record = index.get(broken / "truncated.jpg", embedding=False)
        assert record is not None and record.status == "failed" and record.error
        cats = {hit.path.name for hit in index.search("cat")}
        assert {f"chelsea-{i}.jpg" for i in range(5)} <= cats, cats
        # The oracle: a fresh exiftool reads in the file exactly the keywords the index says it carries.
        cat = library / "chelsea-3.jpg"
        in_file = set(as_list(exiftool_json(cat, "-XMP-dc:Subject").get("XMP-dc:Subject")))
        record = index.get(cat, embedding=False)
        assert record is not None and "cat" in in_file
        assert in_file == {t.name for t in record.tags if t.state in ("added", "kept")}
        # The user's keyword stays, in the file and in the index (theirs, kept), beside tagd's.
        user = library / "astronaut-2.jpg"
        in_file = set(as_list(exiftool_json(user, "-XMP-dc:Subject").get("XMP-dc:Subject")))
        assert USER_KEYWORD in in_file and len(in_file) > 1
        record = index.get(user, embedding=False)
        assert record is not None
        assert [(t.source, t.state) for t in record.tags if t.name == USER_KEYWORD] == [("user", "kept")]

    # The driver stopped its cluster: nothing of it is left running.
    left = wait_for(lambda: not driver.processes(), timeout=20, step=0.2)
    assert left, [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in driver.processes()]


@needs_ray
def test_a_killed_worker_loses_nothing(library: Path, tmp_path: Path, driver: Driver) -> None:
    index_path = tmp_path / "index.sqlite3"
    proc = driver.start(backfill_argv(index_path, library), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Mid-run: a batch recorded, and a worker busy with the next one.
        assert wait_for(lambda: rows(index_path) >= 4, timeout=90), "no batch was recorded"
        busy = wait_for(lambda: driver.processes(proc.pid, b"ray::TagWorker.tag_batch"), timeout=30)
        assert busy, "no worker was tagging a batch"
        assert rows(index_path) < 36, "the run ended before a worker could be killed"
        os.kill(busy[0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert busy[0] not in driver.processes()
    assert proc.returncode == 0, stderr
    assert summary(stderr)[:2] == (36, 0)  # the batch it held, tagged again (once)
    assert_complete(index_path, library)


@needs_ray
def test_a_killed_driver_is_resumed_by_a_rerun(library: Path, tmp_path: Path, driver: Driver) -> None:
    index_path = tmp_path / "index.sqlite3"
    first = driver.start(backfill_argv(index_path, library), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: rows(index_path) >= 8, timeout=90), "no batch was recorded"
    finally:
        first.kill()  # SIGKILL: no finally, no shutdown
        first.wait(timeout=30)
    recorded = rows(index_path)
    assert 8 <= recorded < 36, "the run ended before the driver could be killed"
    # Its workers finish the batch they hold and go; the rest of its cluster is killed here.
    wait_for(lambda: not driver.processes(first.pid, b"ray::TagWorker"), timeout=30, step=0.2)
    driver.kill_all()

    proc = driver.run(backfill_argv(index_path, library))
    tagged, failed, moved, gone, unchanged = summary(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert (failed, moved, gone) == (0, 0, 0)
    # Only what was left: the photos of the batches in flight were written but never recorded.
    assert tagged == 36 - recorded and unchanged == recorded, proc.stderr
    assert_complete(index_path, library)

    proc = driver.run(backfill_argv(index_path, library))
    assert proc.returncode == 0 and summary(proc.stderr) == (0, 0, 0, 0, 36), proc.stderr
    assert "Ray worker" not in proc.stderr  # nothing to do: no cluster started


def test_without_ray_the_command_says_how_to_install_it(library: Path, tmp_path: Path) -> None:
    """The default install has no Ray: `import ray` fails as it would there (sys.modules entry
    None), and backfill says what to install in one line, before touching the index."""
    index_path = tmp_path / "index.sqlite3"
    code = ("import sys; sys.modules['ray'] = None; from tagd.cli import main; "
            f"sys.exit(main(['--index', {str(index_path)!r}, 'backfill', '--ray', 'local', {str(library)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (proc.returncode, proc.stderr) == (1, "tagd backfill: Ray is not installed: pip install 'tagd[ray]'\n")
    assert not index_path.exists()


def test_the_cli_never_imports_ray_unless_backfilling() -> None:
    code = ("import sys; from tagd.cli import build_parser; build_parser().parse_args(['backfill', '--ray', 'local']); "
            "import tagd.backfill; print('ray' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (proc.returncode, proc.stdout) == (0, "False\n"), proc.stderr


@needs_ray
def test_backfill_into_a_postgresql_index(library: Path, driver: Driver, pg_server) -> None:
    """The same run with `--index postgresql://...`: the driver records into the server, and a
    rerun plans from it (nothing left to do)."""
    url = pg_server.new_database()
    argv = [sys.executable, "-m", "tagd", "--index", url, "backfill", "--ray", "local", "--workers", "2",
            "--batch", "6", str(library)]
    proc = driver.run(argv)
    assert proc.returncode == 0 and summary(proc.stderr)[:2] == (36, 0), proc.stderr
    from tagd.index.db import Index

    with Index(url, readonly=True) as index:
        assert index.count("") == 36
        assert {f"chelsea-{i}.jpg" for i in range(5)} <= {h.path.name for h in index.search("cat")}
        assert index.count(f'"{USER_KEYWORD}" source:user') == 1
    again = driver.run(argv)
    assert again.returncode == 0 and summary(again.stderr) == (0, 0, 0, 0, 36), again.stderr
