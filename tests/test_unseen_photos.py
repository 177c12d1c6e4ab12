"""training/unseen_photos.py: how a photo's source is named, and the download cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.unseen_photos import LABELS, Source, Unavailable, _fetched  # noqa: E402


def test_sources_parse_every_manager_and_an_apt_epoch() -> None:
    apt = Source.parse("apt:plasma-workspace-wallpapers==4:5.27.5-2:usr/share/wallpapers/Kite/contents/images/1920x1080.jpg")
    assert (apt.manager, apt.package, apt.version) == ("apt", "plasma-workspace-wallpapers", "4:5.27.5-2")
    assert apt.path == "usr/share/wallpapers/Kite/contents/images/1920x1080.jpg"
    assert apt.install == "apt-get install plasma-workspace-wallpapers=4:5.27.5-2"
    sdist = Source.parse("sdist:face-recognition==1.3.0:face_recognition-1.3.0/tests/test_images/obama.jpg")
    assert (sdist.manager, sdist.package, sdist.path) == ("sdist", "face-recognition", "face_recognition-1.3.0/tests/test_images/obama.jpg")
    assert sdist.install == "pip download --no-deps --no-binary face-recognition face-recognition==1.3.0"
    npm = Source.parse("npm:@vladmandic/face-api==1.7.15:demo/sample1.jpg")
    assert (npm.package, npm.version, npm.install) == ("@vladmandic/face-api", "1.7.15", "npm pack @vladmandic/face-api@1.7.15")


def test_every_labelled_photo_names_a_source_a_checksum_and_a_split() -> None:
    images = json.loads(LABELS.read_text())["images"]
    assert len(images) == 271
    for name, item in images.items():
        Source.parse(item["source"])
        assert len(item["sha256"]) == 64 and item["split"] in ("calibration", "report"), name
    splits = [item["split"] for item in images.values()]
    assert (splits.count("calibration"), splits.count("report")) == (127, 144)
    # The split goes by package: no package has photos on both sides.
    sides: dict[tuple[str, str], set[str]] = {}
    for item in images.values():
        src = Source.parse(item["source"])
        sides.setdefault((src.manager, src.package), set()).add(item["split"])
    mixed = {k for k, v in sides.items() if len(v) > 1}
    assert mixed <= {("apt", "gcompris-qt-data"), ("apt", "lomiri-wallpapers")}, mixed  # split by activity / release


def test_a_fetched_file_is_made_once_then_taken_from_the_cache(tmp_path: Path) -> None:
    made = _fetched(tmp_path / "cache", "*.tgz", ["touch", "pkg-1.0.tgz"])
    assert made == tmp_path / "cache" / "pkg-1.0.tgz" and made.is_file()
    # Cached: the command is not run again (this one would fail).
    assert _fetched(tmp_path / "cache", "*.tgz", ["false"]) == made
    with pytest.raises(Unavailable, match=r"produced no \*\.deb"):
        _fetched(tmp_path / "empty", "*.deb", ["true", "nothing"])
