"""Build the default model bundle (format 2): the int8 classifier, the YOLOX-Nano detector, and
a vocabulary that maps both onto tags and calibrates their fused score.

    python training/build_fused_bundle.py                      # -> tagd/models/default, as packaged
    python training/build_fused_bundle.py --out build/default  # anywhere else

Inputs: the classifier (`--classifier`: a bundle, default the packaged one; a new one comes
from `training/quantize.py --out build/int8`), the detector (`--detector`: a directory holding yolox_nano.onnx, its
LICENSE and README; default the copy already packaged, or ../shared/models/yolox-nano),
WordNet 3.0 (`apt-get install wordnet-base`) and labelled photos for the calibration, of
two kinds:
- `--calibration` (default ../shared/data/coco128-dev): COCO photos (labels.json + images/).
  The detector was trained on COCO train2017, so on these it is nearly always right;
- `--unseen` (default $XDG_CACHE_HOME/tagd/unseen-set, made by training/unseen_photos.py):
  real photos from outside COCO, of which only the `"split": "calibration"` half is used. On
  such photos the detector guesses (a macaque is a "dog" to it), and only they can teach the
  calibration how far to trust it. The other half, `"split": "report"`, is never used here:
  training/evaluate.py reports on it.

Steps: the vocabulary (training/curation.py: the classifier's tags, its dog and cat breeds,
the tags only the detector knows, each COCO class mapped to its tag, each fitted tag's rivals);
both models run on the calibration photos exactly as tagd runs them; the calibration fitted on
those scores (training/fusion_fit.py); the write threshold chosen by cross-validation, the
lowest that keeps the held-out precision of written tags on the unseen calibration photos >=
TARGET_PRECISION. Running it twice gives the same bytes (parameters are rounded to 4 decimals).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import fusion_fit  # noqa: E402
from training.build_vocab import resolve  # noqa: E402
from training.curation import COCO_TAGS, DETECTOR_TAGS, RIVAL_ROOTS, TAGS, breed_tags  # noqa: E402
from training.wordnet import DEFAULT_WORDNET_DIR, WordNet  # noqa: E402

if TYPE_CHECKING:
    from tagd.vocab import Vocabulary

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tagd" / "models" / "default"
SHARED = REPO.parent / "shared"
NAME = "tagd-default-v2"
DETECTOR_FILE = "yolox_nano.onnx"
# The detector's provenance (../shared/models/yolox-nano/README.md): YOLOX-Nano, COCO 2017, Apache-2.0.
DETECTOR_SHA256 = "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
# The classifier's view of a photo: the middle square. Three squares along the long side (tagd
# 0.1 to 0.5) cost three times the classifier's CPU for the same quality, now that the
# detector sees the whole photo (docs/tagger.md).
VIEWS = "center-crop"
# Held-out precision of the written (calibrated) tags on unseen photos that the threshold must
# keep. Above the 0.80 promised for what tagd writes: this counts every calibrated tag
# ("animal" too), the promise is measured on COCO's categories.
TARGET_PRECISION = 0.90
THRESHOLD_GRID = tuple(round(0.30 + 0.05 * i, 2) for i in range(13))  # 0.30 .. 0.90
# A tag with this many labelled unseen calibration photos gets a threshold of its own ("animal"
# today; "person" has 7); the others share one.
OWN_THRESHOLD_POSITIVES = 30
UNSEEN = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tagd" / "unseen-set"
FOLDS = 5
FUSED_SUGGESTION_FLOOR = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", type=Path, default=OUT,
                        help="bundle whose classifier to use (default: the packaged one; training/quantize.py writes others)")
    parser.add_argument("--detector", type=Path, default=None, help="folder with yolox_nano.onnx, LICENSE, README.md")
    parser.add_argument("--calibration", type=Path, default=SHARED / "data" / "coco128-dev",
                        help="COCO photos (labels.json + images/; default ../shared/data/coco128-dev)")
    parser.add_argument("--unseen", type=Path, default=UNSEEN,
                        help=f"photos from outside COCO (training/unseen_photos.py DIR; default {UNSEEN})")
    parser.add_argument("--views", choices=("center-crop", "three-crop", "squash"), default=VIEWS,
                        help=f"the classifier's view of a photo (default {VIEWS}; tagd 0.1 to 0.5: three-crop)")
    parser.add_argument("--wordnet", type=Path, default=DEFAULT_WORDNET_DIR)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    detector_dir = args.detector or next((d for d in (args.out / "detector", SHARED / "models" / "yolox-nano")
                                          if (d / DETECTOR_FILE).is_file()), None)
    if detector_dir is None:
        raise SystemExit("no detector: give --detector DIR (a folder with yolox_nano.onnx, LICENSE, README.md)")
    for folder in (args.calibration, args.unseen):
        if not (folder / "labels.json").is_file():
            raise SystemExit(f"{folder}/labels.json not found" + (
                f": make it with `python training/unseen_photos.py {folder}`" if folder == args.unseen else ""))
    build(args.classifier, detector_dir, args.calibration, args.unseen, args.out, WordNet.load(args.wordnet), args.views)
    return 0


def build(classifier_dir: Path, detector_dir: Path, calibration_dir: Path, unseen_dir: Path, out: Path,
          wordnet: WordNet, views: str = VIEWS) -> dict:
    """Write the bundle into `out`; returns the cross-validated figures of the calibration."""
    from tagd.model import load_spec

    classifier = load_spec(classifier_dir)
    classifier = classifier.model_copy(update={"classifier": classifier.classifier.model_copy(
        update={"input": classifier.input.model_copy(update={"resize": views})})})
    detector_bytes = (detector_dir / DETECTOR_FILE).read_bytes()
    detector_sha = hashlib.sha256(detector_bytes).hexdigest()
    if detector_sha != DETECTOR_SHA256:
        print(f"note: {detector_dir / DETECTOR_FILE} is not the packaged YOLOX-Nano export (sha256 {DETECTOR_SHA256}); "
              "its own is recorded", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detector").mkdir(exist_ok=True)
    if (detector_dir / DETECTOR_FILE).resolve() != (out / "detector" / DETECTOR_FILE).resolve():
        for name in (DETECTOR_FILE, "LICENSE", "README.md"):
            shutil.copyfile(detector_dir / name, out / "detector" / name)
    source = classifier_dir / classifier.model_file
    if source.resolve() != (out / "classifier.onnx").resolve():
        shutil.copyfile(source, out / "classifier.onnx")

    tags = vocabulary_tags(wordnet, [l.id for l in classifier.labels], [l.name for l in classifier.labels])
    _write(out, classifier, tags, detector_sha=detector_sha)  # neutral calibration: the scores are what the models say
    coco = calibration_photos(calibration_dir)
    unseen = calibration_photos(unseen_dir, split="calibration")
    ev_coco = fused_evidence(*score_photos(out, coco[0]), coco[1], coco[2])
    ev_unseen = fused_evidence(*score_photos(out, unseen[0]), unseen[1], unseen[2])
    calibration, thresholds, figures = calibrate(ev_coco, ev_unseen)
    figures = {**figures, "photos": {"coco": len(coco[0]), "unseen": len(unseen[0])}}
    for j, (tag, (bias, w_c, w_d, w_r)) in enumerate(zip(tags, calibration)):
        if ev_coco.group[j] >= 0:
            tag["calibration"] = {"bias": float(bias), "classifier": float(w_c), "detector": float(w_d),
                                  "rival": float(w_r)}
            tag["threshold"] = float(thresholds[j])
    threshold = figures["threshold"]
    _write(out, classifier, tags, figures, detector_sha=detector_sha)
    print(f"wrote {out}: {len(tags)} tags ({int((ev_coco.group >= 0).sum())} calibrated on {len(coco[0])} COCO and "
          f"{len(unseen[0])} unseen photos), threshold {threshold}; cross-validated: {figures}")
    return figures


def calibrate(trained_on: fusion_fit.Evidence, unseen: fusion_fit.Evidence) -> tuple[np.ndarray, np.ndarray, dict]:
    """The calibration (T, 4) and each fitted tag's write threshold (T,; NaN where not fitted)
    from photos the detector was trained on and photos it never saw, and the figures of the
    threshold's choice. The one procedure the build and training/evaluate.py --cv share."""
    ev = fusion_fit.concatenate(trained_on, unseen)
    measured = np.arange(len(trained_on.truth), len(ev.truth))
    threshold, figures, own = choose_threshold(ev, measured)
    thresholds = np.where(ev.group >= 0, threshold, np.nan)
    for j, mine in own.items():
        thresholds[j] = mine
    return fusion_fit.fit(ev), thresholds, {"threshold": threshold, **figures, "own_thresholds": len(own)}


def calibration_photos(directory: Path, split: str | None = None) -> tuple[list[Path], list[set[str]], list[set[str]]]:
    """The photos of a labels.json folder (coco128-dev's layout; only those of `split`, where
    given), each one's COCO categories and the vocabulary tags a person gave it (`concepts`)."""
    labels = json.loads((directory / "labels.json").read_text())
    files = sorted(f for f, item in labels["images"].items() if split is None or item.get("split") == split)
    if not files:
        raise SystemExit(f"{directory}/labels.json: no photos" + (f" with split {split!r}" if split else ""))
    items = [labels["images"][f] for f in files]
    return ([directory / "images" / f for f in files], [set(item["labels"]) for item in items],
            [set(item.get("concepts") or ()) for item in items])


def score_photos(bundle: Path, photos: list[Path]) -> tuple["Vocabulary", np.ndarray, np.ndarray]:
    """Both models' raw scores, exactly as tagd computes them: (vocabulary, (N, tags)
    classifier tag scores, (N, detector classes) detector scores)."""
    from tagd.model import Model
    from tagd.tagger import Tagger

    tagger = Tagger(Model(bundle), batch_size=8)
    classifier, detector = [], []
    for result in tagger.tag_paths(photos):
        if not result.ok:
            raise SystemExit(f"{result.path}: {result.error}")
        classifier.append(result.classifier_scores)
        detector.append(result.detector_scores)
    return tagger.vocabulary, np.stack(classifier), np.stack(detector)


def fused_evidence(vocab: "Vocabulary", classifier: np.ndarray, detector: np.ndarray, labels: list[set[str]],
                   concepts: list[set[str]] | None = None) -> fusion_fit.Evidence:
    """The calibration's evidence (as tagd.vocab computes it at run time); a tag is right on a
    photo where one of the photo's COCO categories is that tag or one of its descendants, or
    where a person gave the photo that tag (`concepts`, ancestors included)."""
    tags = vocab.tags
    truth = np.zeros((len(labels), len(tags)), dtype=bool)
    for i, categories in enumerate(labels):
        for category in categories:
            name: str | None = COCO_TAGS[category]
            while name:
                truth[i, vocab.names.index(name)] = True
                name = vocab[name].parents[0] if vocab[name].parents else None
        for concept in (concepts[i] if concepts else ()):
            if concept in vocab:
                truth[i, vocab.names.index(concept)] = True
    x_c, x_d, x_r = vocab.evidence(classifier, detector)
    group = fusion_fit.groups(np.asarray([bool(t.labels) for t in tags]), np.asarray([bool(t.detector_labels) for t in tags]))
    return fusion_fit.Evidence(x_c, x_d, x_r, truth, group)


def vocabulary_tags(wordnet: WordNet, class_ids: list[str], class_names: list[str]) -> list[dict]:
    """The format-2 vocabulary's tags: resolved as build_vocab.py does, plus each tag's
    detector classes (its own and its children's), with a neutral calibration."""
    curated = (*TAGS, *breed_tags(class_names), *DETECTOR_TAGS)
    tags = resolve(curated, wordnet, class_ids, detector_only=frozenset(t.name for t in DETECTOR_TAGS))
    coco = list(COCO_TAGS)
    own = {t["name"]: set() for t in tags}
    for index, name in enumerate(coco):
        own[COCO_TAGS[name]].add(index)
    children: dict[str, list[str]] = {t["name"]: [] for t in tags}
    for t in tags:
        for parent in t["parents"]:
            children[parent].append(t["name"])

    def closure(name: str) -> set[int]:
        return own[name].union(*(closure(c) for c in children[name]))

    parent_of = {t["name"]: t["parents"][0] if t["parents"] else None for t in tags}

    def root(name: str) -> str | None:
        """The top of `name`'s hierarchy; None where `name` is the top."""
        top = None
        while parent_of[name]:
            top = name = parent_of[name]
        return top

    breeds = {t.name for t in breed_tags(class_names)}
    for t in tags:
        t["detector_labels"] = sorted(closure(t["name"]))
        if t["name"] in breeds:
            t["capped"] = True  # the detector knows "dog" and "cat" whole: no breed without them
        t["classifier_threshold"] = t.pop("threshold")
        t["threshold"] = 0.5  # a calibrated probability: 0.5 is the classifier's own decision for the rest
        t["calibration"] = {"bias": 0.0, "classifier": 1.0, "detector": 1.0 if t["detector_labels"] else 0.0,
                            "rival": 0.0}
        if not t["labels"]:
            t["calibration"]["classifier"] = 0.0
        rival_root = RIVAL_ROOTS.get(t["name"], root(t["name"]))
        if t["detector_labels"] and rival_root:
            t["rival_root"] = rival_root
    return tags


def choose_threshold(ev: fusion_fit.Evidence, measured: np.ndarray | None = None
                     ) -> tuple[float, dict, dict[int, float]]:
    """The write thresholds: the lowest whose cross-validated precision of written (fitted) tags
    on the photos `measured` (default: all) reaches TARGET_PRECISION, with the held-out figures
    at it; and for each tag with at least OWN_THRESHOLD_POSITIVES labelled photos among those,
    its own (tag index -> threshold), the lowest that keeps that tag's held-out precision there
    at TARGET_PRECISION. Precision is measured where the detector can be wrong: on the COCO
    photos it was trained on it hardly ever is, and a threshold chosen there (0.30 for "person")
    writes "person" on herons and dolphins."""
    rng = np.random.default_rng(0)
    folds = rng.permutation(len(ev.truth)) % FOLDS
    held_out = np.zeros(ev.truth.shape)
    for k in range(FOLDS):
        train, test = np.nonzero(folds != k)[0], np.nonzero(folds == k)[0]
        held_out[test] = fusion_fit.apply(ev, fusion_fit.fit(ev, train))[test]
    rows = np.arange(len(ev.truth)) if measured is None else measured
    fitted = np.nonzero(ev.group >= 0)[0]
    found = _lowest(held_out[np.ix_(rows, fitted)], ev.truth[np.ix_(rows, fitted)])
    if found is None:
        threshold, figures = THRESHOLD_GRID[-1], {"precision": None, "recall": None, "note": "target not reached"}
    else:
        threshold, figures = found
    own = {}
    for j in fitted:
        truth = ev.truth[rows, j:j + 1]
        if truth.sum() >= OWN_THRESHOLD_POSITIVES and (mine := _lowest(held_out[rows, j:j + 1], truth)):
            own[int(j)] = mine[0]
    return threshold, {**figures, "folds": FOLDS}, own


def _lowest(scores: np.ndarray, truth: np.ndarray) -> tuple[float, dict] | None:
    for threshold in THRESHOLD_GRID:
        written = scores >= threshold
        tp = int((written & truth).sum())
        precision = tp / max(1, int(written.sum()))
        if precision >= TARGET_PRECISION:
            return threshold, {"precision": round(precision, 3), "recall": round(tp / max(1, int(truth.sum())), 3)}
    return None


def _write(out: Path, classifier, tags: list[dict], figures: dict | None = None,  # noqa: ANN001 - BundleSpec
           detector_sha: str = DETECTOR_SHA256) -> None:
    vocab = {
        "format": "tagd-vocab/2",
        "source": "WordNet 3.0 noun hierarchy + training/curation.py; calibration: training/build_fused_bundle.py",
        "n_labels": len(classifier.labels),
        "n_detector_labels": len(COCO_TAGS),
        "suggestion_floor": FUSED_SUGGESTION_FLOOR,
        "max_suggestions": 20,
    }
    lines = ",\n".join("  " + json.dumps(t, ensure_ascii=False, sort_keys=True) for t in tags)
    text = json.dumps(vocab, ensure_ascii=False, sort_keys=True)[:-1] + ', "tags": [\n' + lines + "\n]}\n"
    json.loads(text)
    (out / "vocab.json").write_text(text, encoding="utf-8")
    bundle = {
        "format": "tagd-bundle/2",
        "name": NAME,
        "description": "EfficientNet-Lite0 (ImageNet-1k, int8) for the broad vocabulary and YOLOX-Nano (COCO 2017, "
                       "Apache-2.0) for people and 80 objects, fused into one calibrated probability per tag",
        "classifier": {
            "model_file": "classifier.onnx",
            "model_sha256": hashlib.sha256((out / "classifier.onnx").read_bytes()).hexdigest(),
            "input": classifier.input.model_dump(mode="json"),
            "outputs": classifier.outputs.model_dump(mode="json"),
            "scores": classifier.scores.model_dump(mode="json"),
            "embedding_dim": classifier.embedding_dim,
            "labels": [label.model_dump(mode="json") for label in classifier.labels],
            "source": classifier.name,
        },
        "detector": {
            "kind": "yolox",
            "model_file": f"detector/{DETECTOR_FILE}",
            "model_sha256": detector_sha,
            "input": {"name": "images", "size": [416, 416], "channels": "BGR", "pad_value": 114.0, "scale": 1.0},
            "output": "output",
            "strides": [8, 16, 32],
            "labels": list(COCO_TAGS),
            "licence_file": "detector/LICENSE",
            "provenance_file": "detector/README.md",
        },
        "vocabulary_file": "vocab.json",
        "vocabulary_sha256": hashlib.sha256((out / "vocab.json").read_bytes()).hexdigest(),
        "embedding": "tags",
        "calibration": figures or {},
    }
    (out / "bundle.json").write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
