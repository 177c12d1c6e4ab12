"""Shared fixtures: real photos from the wheels of scikit-image and scikit-learn, the real model."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the checkout holds the labelled dev set; users and some CI runs lack it.
SHARED = Path(os.environ.get("TAGD_SHARED", REPO.parent / "shared"))
COCO128 = SHARED / "data" / "coco128-dev"


def pytest_configure(config: pytest.Config) -> None:
    """Keep every test (and every `tagd` subprocess) away from the real user's index and config."""
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="tagd-test-home-"))
    os.environ["XDG_DATA_HOME"] = str(home / "data")
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    os.environ["XDG_STATE_HOME"] = str(home / "state")


def _real_images() -> dict[str, np.ndarray]:
    import skimage.data as sd
    from sklearn.datasets import load_sample_image

    return {
        "chelsea": sd.chelsea(),  # a cat
        "coffee": sd.coffee(),  # a cup of coffee
        "rocket": sd.rocket(),  # a rocket on its launch pad
        "motorcycle_left": sd.stereo_motorcycle()[0],  # a motorbike
        "astronaut": sd.astronaut(),  # a person
        "china": load_sample_image("china.jpg"),  # a temple building
        "flower": load_sample_image("flower.jpg"),  # a flower
    }


@pytest.fixture(scope="session")
def real_photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real photos as JPEGs in a read-only session folder (copy before modifying)."""
    folder = tmp_path_factory.mktemp("real-photos")
    for name, pixels in _real_images().items():
        Image.fromarray(pixels).save(folder / f"{name}.jpg", quality=92)
    return folder


@pytest.fixture
def photos(real_photo_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the real photos for tests that add or break files."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted(real_photo_dir.iterdir()):
        (folder / src.name).write_bytes(src.read_bytes())
    return folder


@pytest.fixture(scope="session")
def model():
    """The model tagd runs by default (the packaged int8 bundle)."""
    from tagd.model import Model

    return Model(threads=2)


@pytest.fixture(scope="session")
def float_model():
    """The packaged float bundle: the export of the PyTorch weights the int8 copy comes from."""
    from tagd.model import Model

    return Model("float", threads=2)


@pytest.fixture(scope="session")
def tagger(model):
    from tagd.tagger import Tagger

    return Tagger(model, batch_size=4)


@pytest.fixture(scope="session")
def writer():
    from tagd.metadata import MetadataWriter

    w = MetadataWriter()
    yield w
    w.exiftool.close()


@pytest.fixture
def jpeg(real_photo_dir: Path, tmp_path: Path) -> Path:
    """A private copy of a real JPEG (the cat)."""
    path = tmp_path / "cat.jpg"
    path.write_bytes((real_photo_dir / "chelsea.jpg").read_bytes())
    return path


@contextlib.contextmanager
def tmpfs(mount: Path, size: str):
    """A real, small tmpfs at `mount` (root only): for full disks and read-only mounts."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tagd-tmp-" in p.name)


# -- the index backends: SQLite files, and a real PostgreSQL server ---------------------------


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the session (tests/postgres_harness.py); skips, saying why,
    where none can run."""
    from postgres_harness import PgServer, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    server = PgServer()
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        pytest.fail(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')[-2000:]}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def index_backend(request: pytest.FixtureRequest, tmp_path: Path):
    """A factory of fresh, empty index targets on each backend: a new SQLite file path, or the
    URL of a new PostgreSQL database. The same tests run on both."""
    if request.param == "sqlite":
        counter = iter(range(10**9))
        return lambda: tmp_path / f"index-{next(counter)}.sqlite3"
    server = request.getfixturevalue("pg_server")
    url: list[str] = []

    def fresh() -> str:
        if not url:
            url.append(server.new_database())
            return url[0]
        return server.emptied(url[0])

    return fresh
