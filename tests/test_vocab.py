"""The packaged vocabulary: human tags, a sound hierarchy, scores that aggregate classes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tagd.errors import ModelError
from tagd.model import float_bundle_dir
from tagd.vocab import Vocabulary

REPO = Path(__file__).resolve().parent.parent
EGYPTIAN_MAU, TABBY, PERSIAN = 285, 281, 283
CAT_BREEDS = (281, 282, 283, 284, 285)


@pytest.fixture(scope="module")
def vocab(tagger) -> Vocabulary:
    return tagger.vocabulary


def test_egyptian_mau_is_a_cat_is_an_animal(vocab: Vocabulary) -> None:
    holding = {t.name for t in vocab.tags if EGYPTIAN_MAU in t.labels}
    assert {"cat", "animal"} <= holding
    assert vocab.ancestors("cat") == ["animal"]
    assert vocab.path("cat") == "animal|cat"


def test_tag_score_is_the_sum_over_its_classes(vocab: Vocabulary) -> None:
    probs = np.zeros((1, 1000), dtype=np.float32)
    probs[0, TABBY], probs[0, PERSIAN], probs[0, 0] = 0.3, 0.25, 0.45  # 0 is a fish
    scores = dict(zip(vocab.names, vocab.tag_scores(probs)[0]))
    assert scores["cat"] == pytest.approx(0.55)
    assert scores["fish"] == pytest.approx(0.45)
    assert scores["animal"] == pytest.approx(1.0)
    assert scores["vehicle"] == 0.0


def test_no_abstract_wordnet_nodes(vocab: Vocabulary) -> None:
    abstract = {"entity", "whole", "artifact", "object", "physical entity", "instrumentality", "organism",
                "device", "container", "covering", "commodity", "matter", "structure"}
    assert not abstract & set(vocab.names)


def test_hierarchy_is_consistent(vocab: Vocabulary) -> None:
    for tag in vocab.tags:
        # Every tag has evidence: classifier classes, or (a v2 vocabulary) detector classes.
        assert tag.labels or tag.detector_labels, tag.name
        assert 0 < tag.threshold < 1
        for parent in tag.parents:
            # A parent holds every class of its children, so its score is never lower.
            assert set(tag.labels) <= set(vocab[parent].labels), (tag.name, parent)
            assert set(tag.detector_labels) <= set(vocab[parent].detector_labels), (tag.name, parent)
        assert tag.name not in vocab.ancestors(tag.name)


def test_fused_scores_respect_the_hierarchy(vocab: Vocabulary) -> None:
    """After fusion a parent is never less likely than a child it lifts, and a capped child (a
    breed) never more likely than its parent, whatever the two models say."""
    if not vocab.fused:
        pytest.skip("a format-1 vocabulary has no fusion")
    rng = np.random.default_rng(0)
    fused = vocab.fuse(rng.uniform(0, 1, (64, len(vocab))).astype(np.float32),
                       rng.uniform(0, 1, (64, vocab.n_detector_labels)).astype(np.float32))
    for j, tag in enumerate(vocab.tags):
        if tag.parents:
            parent = fused[:, vocab.names.index(tag.parents[0])]
            if tag.capped:
                assert (fused[:, j] <= parent + 1e-6).all(), tag.name
            else:
                assert (parent >= fused[:, j] - 1e-6).all(), tag.name


def test_synonyms_resolve(vocab: Vocabulary) -> None:
    assert vocab.canonical("couch") == "sofa"
    assert vocab.canonical("TV") == "television"
    assert vocab.canonical("kitten") == "cat"
    assert vocab.canonical("puppy") == "dog"
    assert vocab.canonical("no-such-word") is None


def test_person_tag_exists_from_proxy_evidence(vocab: Vocabulary) -> None:
    person = vocab["person"]
    assert {981, 982, 983} <= set(person.labels)  # ballplayer, groom, scuba diver
    assert 834 in person.labels  # suit


def test_select_respects_thresholds_and_order(vocab: Vocabulary) -> None:
    scores = np.zeros(len(vocab), dtype=np.float32)
    scores[vocab.names.index("cat")] = 0.9
    scores[vocab.names.index("animal")] = 0.9
    scores[vocab.names.index("dog")] = vocab["dog"].threshold / 2
    picked = [t.name for t in vocab.select(scores)]
    assert picked == ["cat", "animal"]  # equal scores: the specific tag first
    suggested = [t.name for t in vocab.suggest(scores, exclude=set(picked))]
    assert suggested == ["dog"]


def test_a_tag_is_written_only_under_its_written_parent(vocab: Vocabulary) -> None:
    """A written tag asserts its whole path (`vehicle|boat|ship`): a child that clears its own
    (lower, uncalibrated) bar under a parent that does not clear the parent's stays a suggestion,
    for photos one at a time and for a batch with a threshold per photo."""
    ship, boat, vehicle = (vocab.names.index(t) for t in ("ship", "boat", "vehicle"))
    assert vocab.path("ship") == "vehicle|boat|ship" and vocab["ship"].threshold < vocab["boat"].threshold
    scores = np.zeros((2, len(vocab)), dtype=np.float32)
    scores[:, ship] = scores[:, boat] = scores[:, vehicle] = (vocab["ship"].threshold + vocab["boat"].threshold) / 2
    scores[1, [boat, vehicle]] = vocab["boat"].threshold + 0.01  # the parent believed: the child is written
    assert [t.name for t in vocab.select(scores[0])] == []
    assert "ship" in {t.name for t in vocab.suggest(scores[0], exclude=set())}
    assert [t.name for t in vocab.select(scores[1])] == ["boat", "vehicle", "ship"]
    per_photo = np.tile(np.asarray([t.threshold for t in vocab.tags]), (2, 1))
    written = vocab.written(scores, per_photo)
    assert written[:, ship].tolist() == [False, True] and written[:, boat].tolist() == [False, True]
    per_photo[0, boat] = per_photo[0, vehicle] = 0.0  # a bar lowered for this photo alone
    assert vocab.written(scores, per_photo)[:, ship].tolist() == [True, True]
    # "boat" and "ship" tie and the specific one lists first; at most two tags, the cut keeps
    # the parent and leaves the child out (a ship without its boat would break the path).
    tied = np.zeros(len(vocab), dtype=np.float32)
    tied[[ship, boat]], tied[vehicle] = 0.9, 0.95
    assert [t.name for t in vocab.select(tied)] == ["vehicle", "ship", "boat"]
    assert [t.name for t in vocab.select(tied, max_tags=2)] == ["vehicle", "boat"]


def test_malformed_vocabulary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"format": "tagd-vocab/1", "n_labels": 3, "tags": [
        {"name": "a", "parents": ["missing"], "labels": [0], "threshold": 0.1}]}))
    with pytest.raises(ModelError, match="unknown parent 'missing'"):
        Vocabulary.load(path, 3)
    path.write_text(json.dumps({"format": "tagd-vocab/1", "n_labels": 3, "tags": [
        {"name": "a", "labels": [7], "threshold": 0.1}]}))
    with pytest.raises(ModelError, match="outside"):
        Vocabulary.load(path, 3)
    with pytest.raises(ModelError, match="written for 3 labels"):
        Vocabulary.load(path, 1000)


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").is_file(), reason="WordNet 3.0 (Debian wordnet-base) not installed")
def test_packaged_vocabulary_is_what_the_script_builds(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    from training.build_vocab import main

    out = tmp_path / "vocab.json"
    assert main(["--out", str(out)]) == 0
    assert out.read_bytes() == (float_bundle_dir() / "vocab.json").read_bytes()


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").is_file(), reason="WordNet 3.0 (Debian wordnet-base) not installed")
@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "coco128-dev" / "labels.json").is_file(),
                    reason="../shared/data/coco128-dev (the calibration photos) not present")
def test_packaged_default_bundle_is_what_the_script_builds(tmp_path: Path) -> None:
    """training/build_fused_bundle.py, from the packaged classifier and detector and the
    calibration photos (coco128-dev and the unseen set's calibration half), writes the packaged
    vocabulary and bundle.json byte for byte."""
    sys.path.insert(0, str(REPO))
    from tagd.model import default_bundle_dir
    from training.build_fused_bundle import UNSEEN, main

    if not (UNSEEN / "labels.json").is_file():
        pytest.skip(f"the unseen photos are not at {UNSEEN} (python training/unseen_photos.py {UNSEEN})")

    out = tmp_path / "default"
    packaged = default_bundle_dir()
    assert main(["--out", str(out), "--detector", str(packaged / "detector")]) == 0
    for name in ("vocab.json", "bundle.json", "classifier.onnx", "detector/yolox_nano.onnx"):
        assert (out / name).read_bytes() == (packaged / name).read_bytes(), name
