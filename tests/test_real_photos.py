"""The packaged model on real photos: each gets the tag a person would expect."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import COCO128

EXPECTED = {
    "chelsea": "cat",
    "coffee": "coffee",
    "rocket": "rocket",
    "motorcycle_left": "motorcycle",
    "astronaut": "person",
    "china": "building",
    "flower": "flower",
}


@pytest.fixture(scope="module")
def results(tagger, real_photo_dir: Path):
    paths = sorted(real_photo_dir.glob("*.jpg"))
    return {r.path.stem: r for r in tagger.tag_paths(paths)}


@pytest.mark.parametrize("photo,tag", sorted(EXPECTED.items()))
def test_expected_tag_is_among_top_tags(results, photo: str, tag: str) -> None:
    result = results[photo]
    assert result.ok, result.error
    top = [t.name for t in result.tags[:5]]
    assert tag in top, f"{photo}: expected {tag!r} in {top}"


def test_cat_photo_is_not_tagged_as_unrelated_things(results) -> None:
    names = {t.name for t in results["chelsea"].tags}
    assert names <= {"cat", "animal"}, names


def test_tags_are_ranked_and_scored(results) -> None:
    for result in results.values():
        scores = [t.score for t in result.tags]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 < s <= 1.0 for s in scores)
        assert all(t.source == "model" for t in result.tags)
        assert not {t.name for t in result.tags} & {t.name for t in result.suggestions}


def test_parent_score_holds_its_children(results) -> None:
    chelsea = {t.name: t.score for t in results["chelsea"].tags}
    assert chelsea["animal"] >= chelsea["cat"]


def test_embedding_is_unit_length_and_discriminative(results, tagger, real_photo_dir: Path, tmp_path: Path) -> None:
    """Two photos of a cat are nearer each other than the cat is to anything else here. (The
    second one is another framing of the same cat: its head, mirrored, as a close-up.)"""
    import numpy as np
    from PIL import Image

    for result in results.values():
        assert result.embedding.shape == (tagger.embedding_size,) == (354 + 64,)  # tagd.embedding: tags + sketch
        assert abs(float(np.linalg.norm(result.embedding)) - 1.0) < 1e-5
    close_up = tmp_path / "chelsea-head.jpg"
    with Image.open(real_photo_dir / "chelsea.jpg") as im:
        im.crop((80, 20, 330, 250)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((500, 460)).save(close_up)
    other_cat = next(iter(tagger.tag_paths([close_up]))).embedding
    cat = results["chelsea"].embedding
    nearest_other = max(float(cat @ r.embedding) for name, r in results.items() if name != "chelsea")
    assert float(cat @ other_cat) > 0.8 and float(cat @ other_cat) > nearest_other + 0.3, (float(cat @ other_cat), nearest_other)


@pytest.mark.skipif(not (COCO128 / "labels.json").is_file(), reason="../shared/data/coco128-dev not present")
def test_different_cats_are_nearer_a_cat_than_a_coffee_is(results, tagger) -> None:
    """Four COCO photos of other cats, in other places: each nearer the skimage cat than the
    coffee cup or the rocket is."""
    import json

    labels = json.loads((COCO128 / "labels.json").read_text())["images"]
    paths = [COCO128 / "images" / name for name, v in sorted(labels.items()) if "cat" in v["labels"]]
    assert len(paths) >= 4
    cat = results["chelsea"].embedding
    unrelated = max(float(cat @ results[n].embedding) for n in ("coffee", "rocket", "flower"))
    for path, result in zip(paths, tagger.tag_paths(paths)):
        assert float(cat @ result.embedding) > unrelated + 0.05, (path.name, float(cat @ result.embedding), unrelated)
