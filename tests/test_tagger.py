"""Tagger: input order kept across batches, bad files reported and the rest still tagged."""

from __future__ import annotations

from pathlib import Path

from tagd.tagger import Tagger, expand_paths


def test_order_and_errors_across_batch_boundaries(model, photos: Path) -> None:
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_text("hello")
    good = sorted(photos.glob("[a-z]*.jpg"))
    paths = [photos / "empty.jpg", *good[:3], photos / "text.png", *good[3:], photos / "missing.jpg"]
    tagger = Tagger(model, batch_size=2, decode_workers=2)
    results = list(tagger.tag_paths(paths))
    assert [r.path for r in results] == paths
    errors = {r.path.name: r.error for r in results if not r.ok}
    assert set(errors) == {"empty.jpg", "text.png", "missing.jpg"}
    assert all(r.tags for r in results if r.ok)


def test_results_do_not_depend_on_batch_size(model, real_photo_dir: Path) -> None:
    paths = sorted(real_photo_dir.glob("*.jpg"))
    one = [r.tags for r in Tagger(model, batch_size=1).tag_paths(paths)]
    many = [r.tags for r in Tagger(model, batch_size=16).tag_paths(paths)]
    assert [[t.name for t in tags] for tags in one] == [[t.name for t in tags] for tags in many]


def test_expand_paths_walks_folders_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.JPG").write_bytes(b"1")
    (tmp_path / "b.png").write_bytes(b"1")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "y.jpg").write_bytes(b"1")
    (tmp_path / ".dot.jpg").write_bytes(b"1")
    found = [p.relative_to(tmp_path).as_posix() for p in expand_paths([tmp_path])]
    assert found == ["a/x.JPG", "b.png"]
    assert list(expand_paths([tmp_path / "given.txt"])) == [tmp_path / "given.txt"]
