"""The packaged model on real photos: each gets the tag a person would expect."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_embedding_is_unit_length_and_discriminative(results) -> None:
    import numpy as np

    cat, coffee, rocket = (results[n].embedding for n in ("chelsea", "coffee", "rocket"))
    assert cat.shape == (1280,)
    assert abs(float(np.linalg.norm(cat)) - 1.0) < 1e-5
    assert float(cat @ cat) > float(cat @ coffee)
    assert float(cat @ cat) > float(cat @ rocket)
