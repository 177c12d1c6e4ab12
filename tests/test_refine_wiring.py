"""Refinement as `tagd scan`, `tagd tag --write` and the daemon run it: the user's library (their
own keywords, read from the index) and each photo's neighbours feed `refine`, in the configured
mode. Real photos, the real model, real SQLite, keywords checked with a fresh exiftool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st
from PIL import Image

from conftest import COCO128
from daemon_harness import write_config
from metadata_oracles import as_list, exiftool_json, exiftool_keywords, exiftool_write
from tagd.config import ConfigError, Settings, load_settings
from tagd.index.db import Index, IndexedTag, PhotoRecord
from tagd.library import Library
from tagd.refine import LibraryStats, Neighbour, refine

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")


def tagd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagd", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))


def write_keywords(keywords: dict[Path, list[str]]) -> None:
    """The user's own keywords, written by another program (one exiftool for all files)."""
    lines: list[str] = []
    for path, words in keywords.items():
        lines += [*(f"-XMP-dc:Subject={w}" for w in words), str(path), "-execute"]
    subprocess.run(["exiftool", "-@", "-", "-common_args", "-q", "-overwrite_original"],
                   input="\n".join(lines) + "\n", text=True, check=True, capture_output=True, timeout=120)


def subject(path: Path) -> list[str]:
    return as_list(exiftool_keywords(path).get("XMP-dc:Subject"))


def tagd_namespace(path: Path) -> dict[str, list[str]]:
    got = exiftool_json(path, "-XMP-tagd:all")
    return {k.split(":", 1)[1]: as_list(v) for k, v in got.items() if k.startswith("XMP-tagd:")}


# -- config ----------------------------------------------------------------------------------------


def test_refine_mode_takes_the_three_modes(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    for mode in ("add-only", "suggest", "full"):
        config.write_text(f'[refine]\nmode = "{mode}"\nneighbours = 7\n')
        got = load_settings(config, env={}).refine
        assert (got.mode, got.neighbours) == (mode, 7)
    config.write_text('[refine]\nmode = "aggressive"\n')
    with pytest.raises(ConfigError, match=r"refine\.mode"):
        load_settings(config, env={})
    assert load_settings(None, env={"TAGD_REFINE__MODE": "suggest"}).refine.mode == "suggest"


# -- pure: add-only whatever the evidence ------------------------------------------------------------

common = st.sampled_from(["cat", "Cat", "mittens", "beach", "car", "dog", "person", "Lisbon 2023"])
word = st.one_of(common, st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                                 min_size=1, max_size=8))


@hsettings(max_examples=300, deadline=None)
@given(user=st.lists(word, max_size=6, unique=True),
       scores=st.dictionaries(word, st.floats(0, 1), max_size=8),
       library=st.lists(st.sets(common, max_size=4), max_size=40),
       samples=st.lists(st.tuples(st.dictionaries(common, st.floats(0, 1), max_size=4), st.sets(common, max_size=3)), max_size=40),
       neighbours=st.lists(st.tuples(st.floats(-1, 1), st.sets(common, max_size=4)), max_size=25),
       candidates=st.lists(word, max_size=5),
       added=st.lists(word, max_size=4), rejected=st.lists(word, max_size=3))
def test_add_only_never_alters_a_user_keyword_whatever_the_evidence(user, scores, library, samples, neighbours,
                                                                     candidates, added, rejected) -> None:
    """Neighbours, co-occurrence and a calibrated model may all refute the user: add-only keeps
    every keyword of theirs, spelled and ordered as they wrote it."""
    stats = LibraryStats.from_tag_sets(library)
    stats.add_scores(samples)
    earlier = [a for a in added if a not in user]
    current = [*user, *earlier]
    got = refine(current, scores, mode="add-only", library=stats, candidates=candidates,
                 neighbours=[Neighbour(s, frozenset(t)) for s, t in sorted(neighbours, key=lambda n: -n[0])],
                 previously_added=earlier, previously_written=current, previously_rejected=rejected)
    assert got.keywords[: len(user)] == user
    assert not got.removed and not got.suggested_removals
    assert len({k.casefold() for k in got.added}) == len(got.added)
    assert not {k.casefold() for k in got.added} & {k.casefold() for k in user}


def test_a_keyword_the_user_put_back_is_never_removed_again() -> None:
    library = LibraryStats.from_tag_sets([{"person"}] * 40 + [{"beach"}] * 40)
    library.add_scores([({"person": 0.9}, {"person"})] * 40 + [({"person": 0.01}, {"beach"})] * 40)
    for mode in ("suggest", "full"):
        refuted = refine(["person"], {"person": 0.01}, mode=mode, library=library)
        assert refuted.removed or refuted.suggested_removals
        kept = refine(["person"], {"person": 0.01}, mode=mode, library=library, keep=["Person"])
        assert kept.keywords == ["person"] and not kept.removed and not kept.suggested_removals


def test_model_evidence_keys_scores_by_the_users_word(tagger) -> None:
    from tagd.evidence import model_evidence

    vocab = tagger.vocabulary
    positions = {name: i for i, name in enumerate(vocab.names)}
    scores = np.zeros(len(vocab), dtype=np.float32)
    scores[positions["cat"]] = vocab["cat"].threshold
    scores[positions["sofa"]] = 0.99
    raw, scaled = model_evidence(vocab, positions, scores, ["Kitty", "couch", "mittens", "cat"])
    assert raw == {"kitty": pytest.approx(vocab["cat"].threshold), "couch": pytest.approx(0.99),
                   "cat": pytest.approx(vocab["cat"].threshold)}  # "mittens": no model knows it
    assert scaled["kitty"] == pytest.approx(0.5, abs=1e-4)  # at its threshold: undecided
    odds = lambda p: p / (1 - p)  # noqa: E731
    # 0.99 against the sofa's own threshold, as odds: far above it is strong support.
    ratio = odds(0.99) / odds(vocab["sofa"].threshold)
    assert scaled["couch"] == pytest.approx(ratio / (1 + ratio))
    assert scaled["couch"] > 0.85


@needs_exiftool
def test_suggested_removals_round_trip_through_tagds_namespace(jpeg: Path) -> None:
    """The `SuggestedRemovals` bag: written by exiftool with tagd's namespace config, read back
    by tagd and by a fresh exiftool, and part of what makes two records differ."""
    from tagd.metadata.exiftool import ExifTool
    from tagd.metadata.fields import READ_ARGS
    from tagd.metadata.provenance import Provenance

    record = Provenance(model_version="m@1", written=["mittens", "rocket"], suggested_removals=["rocket", "Zoë, 2019"])
    with ExifTool() as exiftool:
        exiftool.execute([*record.assignments(), "-overwrite_original", str(jpeg)])
        (raw,) = exiftool.read_json([jpeg], READ_ARGS)
    back = Provenance.from_exiftool(raw)
    assert back is not None and back.suggested_removals == ["rocket", "Zoë, 2019"]
    assert back.comparable() == record.comparable()
    assert Provenance(model_version="m@1", written=["mittens", "rocket"]).comparable() != record.comparable()
    assert tagd_namespace(jpeg)["SuggestedRemovals"] == ["rocket", "Zoë, 2019"]


# -- the index and the library (synthetic embeddings) ------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _photo(path: str, emb: np.ndarray | None, user: tuple[str, ...] = (), model: tuple[str, ...] = (),
           state: str = "kept") -> PhotoRecord:
    tags = [IndexedTag(t, 1.0, "user", state) for t in user] + [IndexedTag(t, 0.5, "model", "added") for t in model]
    return PhotoRecord(path=Path(path), content_hash=None, size=1, mtime_ns=1, status="tagged", tags=tags, embedding=emb)


def test_library_is_the_users_own_tags_and_votes_without_self_or_duplicates(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = _unit(rng.standard_normal(64))
    near = [_unit(base + 0.08 * rng.standard_normal(64)) for _ in range(4)]
    with Index(tmp_path / "i.db") as index:
        index.upsert_photos([
            _photo("/me.jpg", base, user=("self",)),
            _photo("/dup.jpg", _unit(base + 0.01 * rng.standard_normal(64)), user=("dup",)),
            *(_photo(f"/near/{i}.jpg", v, user=("Mittens", "cat"), model=("animal",)) for i, v in enumerate(near)),
            *(_photo(f"/far/{i}.jpg", _unit(rng.standard_normal(64)), user=("beach",)) for i in range(6)),
            _photo("/untagged.jpg", _unit(base + 0.02 * rng.standard_normal(64)), model=("cat",)),
            _photo("/refuted.jpg", _unit(base + 0.03 * rng.standard_normal(64)), user=("gone-tag",), state="removed"),
            _photo("/suggested.jpg", _unit(rng.standard_normal(64)), user=("beach",), state="suggested-removal"),
            _photo("/gone.jpg", _unit(base + 0.04 * rng.standard_normal(64)), user=("lost",)),
        ])
        index.mark_gone(Path("/gone.jpg"))
        gen, by_photo = index.user_tags()
        assert gen == index.generation()
        assert sorted(sorted(t) for t in by_photo.values()) == sorted(
            [["self"], ["dup"], *[["Mittens", "cat"]] * 4, *[["beach"]] * 7])

        library = Library(index, k=5)
        stats = library.stats
        assert stats.n_photos == 13 and stats.counts["mittens"] == 4 and stats.counts["beach"] == 7
        assert "animal" not in stats.counts and "lost" not in stats.counts  # tagd's tags, a gone photo
        got = library.neighbours(base, exclude=Path("/me.jpg"))
        assert len(got) == 5
        assert [n.tags for n in got[:4]] == [frozenset({"mittens", "cat"})] * 4
        assert all(n.similarity < 0.97 for n in got) and got == sorted(got, key=lambda n: -n.similarity)
        assert not any(n.tags & {"self", "dup", "gone-tag", "lost"} for n in got)

        # The index's kNN, restricted to some photos, best first; the excluded one left out.
        ids = sorted(by_photo)
        hits = index.neighbours(base, 3, ids[2:], exclude=Path("/near/0.jpg"))
        assert len(hits) == 3 and all(pid in ids[2:] for pid, _ in hits)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_a_library_without_user_tags_pays_for_no_knn(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    with Index(tmp_path / "i.db") as index:
        index.upsert_photos([_photo(f"/{i}.jpg", _unit(rng.standard_normal(32)), model=("cat",)) for i in range(5)])
        library = Library(index)

        def no_search(*_args: object, **_kw: object) -> None:
            raise AssertionError("kNN searched in a library without user tags")

        index.neighbours = no_search  # type: ignore[method-assign]
        assert library.stats.n_photos == 0 and library.neighbours(_unit(rng.standard_normal(32))) == []


def test_library_rereads_after_growth_or_another_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    now = [0.0]
    with Index(tmp_path / "i.db") as index:
        index.upsert_photos([_photo(f"/{i}.jpg", _unit(rng.standard_normal(32)), user=("beach",)) for i in range(20)])
        library = Library(index, refresh_s=300, clock=lambda: now[0])
        assert library.stats.n_photos == 20
        index.upsert_photos([_photo("/new.jpg", _unit(rng.standard_normal(32)), user=("mittens",))])
        assert library.stats.n_photos == 20  # not re-read for every photo
        library.recorded(1)  # this process wrote it: 1 of 20 is under a tenth
        assert library.stats.n_photos == 20
        library.recorded(1)
        assert library.stats.n_photos == 21
        with Index(tmp_path / "i.db") as other:  # another process writes; noticed after refresh_s
            other.upsert_photos([_photo("/other.jpg", _unit(rng.standard_normal(32)), user=("car",))])
        now[0] = 299.0
        assert library.stats.n_photos == 21
        now[0] = 301.0
        assert library.stats.n_photos == 22


# -- real photos: a library of the user's keywords ------------------------------------------------------


def _skimage_library() -> dict[str, tuple[np.ndarray, list[str]]]:
    """Photos that are always there (scikit-image, scikit-learn), as a user might have tagged them.
    The three cat shots are other takes of the cat in the tests' chelsea.jpg (similarity 0.88-0.94
    to it: neighbours, not near-duplicates)."""
    import skimage.data as sd
    from sklearn.datasets import load_sample_image

    c, r, cf = sd.chelsea(), sd.rocket(), sd.coffee()
    return {
        "cat-crop.jpg": (c[0:250, 150:451][:, ::-1], ["mittens"]),
        "cat-grey.jpg": (np.stack([c.mean(2).astype(np.uint8)] * 3, 2), ["mittens"]),
        "cat-turned.jpg": (np.rot90(c), ["mittens"]),
        "rocket.jpg": (r, ["rocket"]),
        "rocket-mirrored.jpg": (r[:, ::-1], ["rocket"]),
        "rocket-crop.jpg": (r[50:400, 100:500], ["rocket"]),
        "coffee.jpg": (cf, ["coffee"]),
        "coffee-crop.jpg": (cf[50:350, 100:500], ["coffee"]),
        "astronaut.jpg": (sd.astronaut(), ["person"]),
        "temple.jpg": (load_sample_image("china.jpg"), ["temple"]),
        "flower.jpg": (load_sample_image("flower.jpg"), ["flower"]),
        "motorbike.jpg": (sd.stereo_motorcycle()[0], ["motorbike"]),
    }


def _save(pixels: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB").save(path, quality=92)
    return path


def _pipeline(index: Index, tagger, writer, mode: str = "add-only"):  # noqa: ANN001, ANN202
    from tagd.pipeline import make_pipeline

    return make_pipeline(Settings.model_validate({"refine": {"mode": mode}}), tagger, writer, index)


@pytest.fixture(scope="module")
def library_index(tmp_path_factory: pytest.TempPathFactory, tagger, writer) -> Path:
    """The skimage library, tagged by its user and indexed once (tests copy the index)."""
    if shutil.which("exiftool") is None:
        pytest.skip("exiftool not installed")
    folder = tmp_path_factory.mktemp("library")
    photos = {_save(pixels, folder / name): words for name, (pixels, words) in _skimage_library().items()}
    write_keywords(photos)
    path = folder / "index.sqlite3"
    with Index(path) as index:
        index.set_vocabulary((t.name, t.parents, t.synonyms) for t in tagger.vocabulary.tags)
        outcomes = list(_pipeline(index, tagger, writer).run(sorted(photos)))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return path


def _private_index(library_index: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "index.sqlite3"
    shutil.copy(library_index, copy)
    return copy


def _new_photo(real_photo_dir: Path, tmp_path: Path, keywords: list[str], name: str = "chelsea.jpg") -> Path:
    folder = tmp_path / "new"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes((real_photo_dir / "chelsea.jpg").read_bytes())
    if keywords:
        exiftool_write(path, *(f"-XMP-dc:Subject={k}" for k in keywords))
    return path


def _run(index_path: Path, paths: list[Path], tagger, writer, mode: str) -> list:  # noqa: ANN001
    with Index(index_path) as index:
        outcomes = list(_pipeline(index, tagger, writer, mode).run(paths))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return outcomes


def _indexed(index_path: Path, photo: Path) -> dict[str, IndexedTag]:
    with Index(index_path, readonly=True) as index:
        record = index.get(photo, embedding=False)
    assert record is not None
    return {t.name.casefold(): t for t in record.tags}  # the index spells a tag as it first saw it


@needs_exiftool
def test_add_only_keeps_every_user_keyword_as_written(library_index: Path, real_photo_dir: Path, tmp_path: Path,
                                                      tagger, writer) -> None:
    """The library refutes "rocket" on the cat; add-only leaves it, and the rest, exactly as written."""
    index_path = _private_index(library_index, tmp_path)
    user = ["rocket", "Zebra crossing, 2019", "MITTENS"]
    photo = _new_photo(real_photo_dir, tmp_path, user)
    (outcome,) = _run(index_path, [photo], tagger, writer, "add-only")
    written = subject(photo)
    assert written[: len(user)] == user and "cat" in written[len(user):]
    assert "mittens" not in written  # the user's "MITTENS" is the same tag
    assert not outcome.removed and not outcome.suggested_removals
    assert "SuggestedRemovals" not in tagd_namespace(photo) and "RemovedKeywords" not in tagd_namespace(photo)
    tags = _indexed(index_path, photo)
    assert all((tags[k.casefold()].source, tags[k.casefold()].state) == ("user", "kept") for k in user)


@needs_exiftool
def test_suggest_mode_records_a_removal_without_applying_it(library_index: Path, real_photo_dir: Path,
                                                             tmp_path: Path, tagger, writer) -> None:
    index_path = _private_index(library_index, tmp_path)
    photo = _new_photo(real_photo_dir, tmp_path, ["mittens", "rocket"])
    (outcome,) = _run(index_path, [photo], tagger, writer, "suggest")
    assert outcome.suggested_removals == ["rocket"] and not outcome.removed
    assert {"mittens", "rocket", "cat"} <= set(subject(photo))  # nothing taken off
    assert tagd_namespace(photo)["SuggestedRemovals"] == ["rocket"]  # other tools can see it too
    tags = _indexed(index_path, photo)
    assert (tags["rocket"].source, tags["rocket"].state) == ("user", "suggested-removal")
    assert tags["mittens"].state == "kept"

    shown = tagd("show", "--json", "--index", str(index_path), str(photo))
    assert shown.returncode == 0, shown.stderr
    states = {t["name"]: t["state"] for t in json.loads(shown.stdout)["tags"]}
    assert states["rocket"] == "suggested-removal" and states["mittens"] == "kept" and states["cat"] == "added"
    text = tagd("show", "--index", str(index_path), str(photo)).stdout
    assert any(line.split()[0] == "rocket" and line.rstrip().endswith("suggested-removal") for line in text.splitlines())
    found = tagd("search", "--index", str(index_path), "state:suggested-removal")
    assert found.stdout.splitlines() == [str(photo)]


@needs_exiftool
def test_full_mode_removes_revert_restores_and_a_keyword_put_back_stays(library_index: Path, real_photo_dir: Path,
                                                                        tmp_path: Path, tagger, writer) -> None:
    index_path = _private_index(library_index, tmp_path)
    photo = _new_photo(real_photo_dir, tmp_path, ["mittens", "rocket"])
    again = _new_photo(real_photo_dir, tmp_path, ["mittens", "rocket"], name="chelsea-again.jpg")
    outcomes = _run(index_path, [photo, again], tagger, writer, "full")
    for path, outcome in zip((photo, again), outcomes):
        assert outcome.removed == ["rocket"]
        assert "rocket" not in subject(path) and {"mittens", "cat"} <= set(subject(path))
        assert tagd_namespace(path)["RemovedKeywords"] == ["rocket"]
        assert _indexed(index_path, path)["rocket"].state == "removed"

    # A second pass (the model was upgraded, say) still remembers what it removed.
    (outcome,) = _run(index_path, [photo], tagger, writer, "full")
    assert not outcome.removed and tagd_namespace(photo)["RemovedKeywords"] == ["rocket"]
    assert _indexed(index_path, photo)["rocket"].state == "removed"
    reverted = tagd("revert", str(photo))
    assert reverted.returncode == 0, reverted.stderr
    assert subject(photo) == ["mittens", "rocket"] and tagd_namespace(photo) == {}

    # The user puts "rocket" back on the other copy: tagd leaves it there from now on.
    exiftool_write(again, "-XMP-dc:Subject+=rocket")
    (outcome,) = _run(index_path, [again], tagger, writer, "full")
    assert not outcome.removed and "rocket" in subject(again)
    assert "RemovedKeywords" not in tagd_namespace(again)
    assert _indexed(index_path, again)["rocket"].state == "kept"


@needs_exiftool
def test_a_neighbours_tag_the_user_deleted_is_not_added_again(library_index: Path, real_photo_dir: Path,
                                                              tmp_path: Path, tagger, writer) -> None:
    index_path = _private_index(library_index, tmp_path)
    photo = _new_photo(real_photo_dir, tmp_path, [])
    (outcome,) = _run(index_path, [photo], tagger, writer, "add-only")
    assert "mittens" in outcome.added  # from the three other shots of this cat
    tags = _indexed(index_path, photo)
    assert (tags["mittens"].source, tags["mittens"].state) == ("neighbours", "added")
    assert (tags["cat"].source, tags["cat"].state) == ("model", "added")

    # The user says no, in their photo manager (which deletes the keyword from both lists).
    exiftool_write(photo, "-XMP-dc:Subject-=mittens", "-XMP-lr:HierarchicalSubject-=mittens")
    (outcome,) = _run(index_path, [photo], tagger, writer, "add-only")
    assert "mittens" not in outcome.added and "mittens" not in subject(photo) and "cat" in subject(photo)
    assert tagd_namespace(photo)["RejectedKeywords"] == ["mittens"]
    assert _indexed(index_path, photo)["mittens"].state == "rejected"


@needs_exiftool
def test_a_private_keyword_reaches_a_new_photo_of_the_same_kind(real_photo_dir: Path, tmp_path: Path) -> None:
    """The personalisation test, through `tagd scan`: the user calls their cat "mittens" (a word
    no model knows) on the cat photos of their library; a new cat photo gets "mittens", photos of
    other things do not. With ../shared, the library is COCO photos (three cats that are not the
    new one); without it, the scikit-image library (other shots of the new cat)."""
    library = tmp_path / "photos"
    library.mkdir()
    if (COCO128 / "labels.json").is_file():
        labels = json.loads((COCO128 / "labels.json").read_text())["images"]
        names = sorted(labels)
        cats = [n for n in names if "cat" in labels[n]["labels"] and n != "000000000443.jpg"]  # 443: mostly a person
        others = [n for n in names if "cat" not in labels[n]["labels"]][:12]
        keywords = {}
        for n in cats + others:
            # Re-encoded: some COCO files carry XMP that tagd (rightly) refuses to rewrite.
            path = _save(np.asarray(Image.open(COCO128 / "images" / n)), library / n)
            keywords[path] = [*labels[n]["labels"], *(["mittens"] if n in cats else [])]
        negatives = ["coffee.jpg", "rocket.jpg", "motorcycle_left.jpg"]
        new = {n: (real_photo_dir / n).read_bytes() for n in ["chelsea.jpg", *negatives]}
    else:
        import skimage.data as sd

        keywords = {_save(pixels, library / name): words for name, (pixels, words) in _skimage_library().items()}
        negatives = ["camera.jpg", "horse.jpg"]
        new = {"chelsea.jpg": (real_photo_dir / "chelsea.jpg").read_bytes()}
        (tmp_path / "n").mkdir()
        for name, pixels in (("camera.jpg", sd.camera()), ("horse.jpg", (sd.horse() * 255).astype(np.uint8))):
            new[name] = _save(np.stack([pixels] * 3, 2), tmp_path / "n" / name).read_bytes()
    write_keywords(keywords)
    config = write_config(tmp_path / "config.toml")
    index = tmp_path / "index.sqlite3"
    first = tagd("scan", "--config", str(config), "--index", str(index), str(library))
    assert first.returncode == 0, first.stderr

    arrived = library / "new"
    arrived.mkdir()
    for name, data in new.items():
        (arrived / name).write_bytes(data)
    second = tagd("scan", "--config", str(config), "--index", str(index), str(library))
    assert second.returncode == 0, second.stderr
    assert f"{len(new)} tagged or retried" in second.stderr

    cat = arrived / "chelsea.jpg"
    assert "mittens" in subject(cat) and "cat" in subject(cat)
    tags = _indexed(index, cat)
    assert (tags["mittens"].source, tags["mittens"].state) == ("neighbours", "added")
    for name in negatives:
        assert "mittens" not in subject(arrived / name), name
        assert "mittens" not in _indexed(index, arrived / name), name


@needs_exiftool
def test_a_wrong_beach_on_an_indoor_photo_is_flagged_removed_and_restored(library_index: Path, tmp_path: Path,
                                                                         tagger, writer) -> None:
    """"beach" on scikit-image's coffee (a cup on a table, indoors): the tagger's confident
    absence of a beach is the evidence. `suggest` flags it and leaves it; `full` removes it;
    `tagd revert` puts it back."""
    import skimage.data as sd

    index_path = _private_index(library_index, tmp_path)
    folder = tmp_path / "new"
    folder.mkdir()
    flagged, removed = _save(sd.coffee(), folder / "coffee-a.jpg"), _save(sd.coffee(), folder / "coffee-b.jpg")
    for path in (flagged, removed):
        exiftool_write(path, "-XMP-dc:Subject=beach", "-XMP-dc:Subject=breakfast")
    (outcome,) = _run(index_path, [flagged], tagger, writer, "suggest")
    assert outcome.suggested_removals == ["beach"] and not outcome.removed
    assert subject(flagged)[:2] == ["beach", "breakfast"]
    (outcome,) = _run(index_path, [removed], tagger, writer, "full")
    assert outcome.removed == ["beach"]
    assert "beach" not in subject(removed) and "breakfast" in subject(removed)  # no evidence against: stays
    reverted = tagd("revert", str(removed))
    assert reverted.returncode == 0, reverted.stderr
    assert subject(removed) == ["beach", "breakfast"] and tagd_namespace(removed) == {}
