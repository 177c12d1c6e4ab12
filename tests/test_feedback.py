"""`tagd accept` and `tagd reject`: the user's verdict on a tag reaches the photo's keywords, the
index, tagd's next proposals for that photo and for similar ones; `tagd revert` stays exact.
Real photos, the real tagger, exiftool as the reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tagd.config import Settings
from tagd.index.db import Index
from test_refine_wiring import needs_exiftool, subject, tagd, tagd_namespace


def _save(pixels: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB").save(path, quality=92)
    return path


def _run(index_path: Path, paths: list[Path], tagger, writer) -> dict:  # noqa: ANN001
    from tagd.pipeline import make_pipeline

    with Index(index_path) as index:
        index.set_vocabulary((t.name, t.parents, t.synonyms) for t in tagger.vocabulary.tags)
        outcomes = list(make_pipeline(Settings.model_validate({}), tagger, writer, index).run(paths))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return {o.path.name: o for o in outcomes}


def _tags(index_path: Path, photo: Path) -> dict[str, tuple[str, str]]:
    with Index(index_path, readonly=True) as index:
        record = index.get(photo, embedding=False)
    assert record is not None
    return {t.name.casefold(): (t.source, t.state) for t in record.tags}


@needs_exiftool
def test_a_rejected_tag_leaves_never_returns_and_similar_photos_lose_it(tmp_path: Path, tagger, writer) -> None:
    import skimage.data as sd

    index_path = tmp_path / "index.sqlite3"
    cat, astronaut = sd.chelsea(), sd.astronaut()
    first = _save(cat, tmp_path / "cat.jpg")
    person = _save(astronaut, tmp_path / "astronaut.jpg")
    done = _run(index_path, [first, person], tagger, writer)
    assert "cat" in done["cat.jpg"].added and "person" in done["astronaut.jpg"].added

    rejected = tagd("reject", "--index", str(index_path), str(first), "Cat")
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.startswith(f"{first}\trejected Cat; keywords now: ")
    assert "cat" not in subject(first) and tagd_namespace(first)["RejectedKeywords"] == ["cat"]
    assert _tags(index_path, first)["cat"] == ("model", "rejected")

    # Tagged again (a new model, say): "cat" stays off this photo.
    done = _run(index_path, [first], tagger, writer)
    assert "cat" not in subject(first)
    # Another take of the same cat is not given "cat"; a different photo keeps its tags.
    again = _save(cat[:, ::-1], tmp_path / "cat-mirrored.jpg")
    other = _save(astronaut[:, ::-1], tmp_path / "astronaut-mirrored.jpg")
    done = _run(index_path, [again, other], tagger, writer)
    assert "cat" not in done["cat-mirrored.jpg"].added and "person" in done["astronaut-mirrored.jpg"].added

    reverted = tagd("revert", str(first))
    assert reverted.returncode == 0, reverted.stderr
    assert subject(first) == [] and tagd_namespace(first) == {}


@needs_exiftool
def test_an_accepted_tag_becomes_the_users_and_survives_revert(tmp_path: Path, tagger, writer) -> None:
    import skimage.data as sd

    index_path = tmp_path / "index.sqlite3"
    photo = _save(sd.chelsea(), tmp_path / "cat.jpg")
    done = _run(index_path, [photo], tagger, writer)
    assert "cat" in done["cat.jpg"].added
    accepted = tagd("accept", "--index", str(index_path), str(photo), "cat", "mittens")
    assert accepted.returncode == 0, accepted.stderr
    assert "cat" not in tagd_namespace(photo).get("AddedKeywords", [])
    assert {"cat", "mittens"} <= set(subject(photo))
    assert _tags(index_path, photo)["cat"] == ("user", "kept") and _tags(index_path, photo)["mittens"] == ("user", "kept")
    reverted = tagd("revert", str(photo))
    assert reverted.returncode == 0, reverted.stderr
    assert sorted(subject(photo)) == ["cat", "mittens"]  # the user's now: revert keeps them


@needs_exiftool
def test_rejecting_a_tag_the_photo_lacks_is_an_error_and_changes_nothing(tmp_path: Path, tagger, writer) -> None:
    import skimage.data as sd

    photo = _save(sd.chelsea(), tmp_path / "cat.jpg")
    before = photo.read_bytes()
    result = tagd("reject", str(photo), "zebra")
    assert result.returncode == 1 and "'zebra' is not among the photo's keywords" in result.stdout
    assert photo.read_bytes() == before
