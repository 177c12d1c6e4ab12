"""The model bundle contract: the packaged bundle loads; broken bundles are refused in one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tagd.errors import ModelError
from tagd.model import Model, default_bundle_dir, float_bundle_dir, load_spec


@pytest.mark.parametrize("name", ["default", "float"])
def test_packaged_bundles_match_contract(name: str) -> None:
    model = Model(name, threads=1)
    spec = model.spec
    assert len(spec.labels) == 1000 and spec.embedding_dim == 1280
    assert spec.input.size == (224, 224)
    assert model.version.startswith("tagd-default-v2@" if name == "default" else "efficientnet-lite0-imagenet1k@")


def test_outputs_are_probabilities_and_embeddings(model) -> None:
    rng = np.random.default_rng(1)
    batch = rng.normal(0, 0.5, size=(3, 224, 224, 3)).astype(np.float32)
    scores, embedding = model.predict(batch)
    assert scores.shape == (3, 1000) and embedding.shape == (3, 1280)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    assert (scores >= 0).all()


def test_batching_does_not_change_results(model) -> None:
    rng = np.random.default_rng(2)
    batch = rng.normal(0, 0.5, size=(4, 224, 224, 3)).astype(np.float32)
    together, _ = model.predict(batch)
    alone = np.concatenate([model.predict(batch[i : i + 1])[0] for i in range(4)])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    """A format-1 bundle (one classifier, its fields at the top of bundle.json), as a user's own
    trained bundle is: the float one."""
    target = tmp_path / "bundle"
    shutil.copytree(float_bundle_dir(), target)
    return target


@pytest.fixture
def v2_copy(tmp_path: Path) -> Path:
    target = tmp_path / "v2"
    shutil.copytree(default_bundle_dir(), target)
    return target


def test_v2_detector_checksum_mismatch(v2_copy: Path) -> None:
    spec = json.loads((v2_copy / "bundle.json").read_text())
    spec["detector"]["model_sha256"] = "0" * 64
    (v2_copy / "bundle.json").write_text(json.dumps(spec))
    _refused(v2_copy, "does not match the detector's model_sha256")


def test_v2_vocabulary_checksum_mismatch(v2_copy: Path) -> None:
    vocab = v2_copy / "vocab.json"
    text = vocab.read_text()
    changed = re.sub(r'"threshold": [0-9.]+', '"threshold": 0.05', text, count=1)
    assert changed != text
    vocab.write_text(changed)
    _refused(v2_copy, "vocab.json does not match vocabulary_sha256")


def test_v2_detector_label_count_mismatch(v2_copy: Path) -> None:
    spec = json.loads((v2_copy / "bundle.json").read_text())
    spec["detector"]["labels"] = spec["detector"]["labels"][:79]
    (v2_copy / "bundle.json").write_text(json.dumps(spec))
    _refused(v2_copy, "85 columns")


def _edit(bundle: Path, **changes) -> None:
    spec = json.loads((bundle / "bundle.json").read_text())
    spec.update(changes)
    (bundle / "bundle.json").write_text(json.dumps(spec))


def _refused(bundle: Path, needle: str) -> None:
    with pytest.raises(ModelError) as info:
        Model(bundle)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_missing_bundle_json(tmp_path: Path) -> None:
    _refused(tmp_path, "no bundle.json")


def test_wrong_format(bundle_copy: Path) -> None:
    _edit(bundle_copy, format="something-else/9")
    _refused(bundle_copy, "format")


def test_checksum_mismatch(bundle_copy: Path) -> None:
    _edit(bundle_copy, model_sha256="0" * 64)
    _refused(bundle_copy, "does not match model_sha256")


def test_unknown_output_name(bundle_copy: Path) -> None:
    _edit(bundle_copy, outputs={"scores": "probs", "embedding": "embedding"})
    _refused(bundle_copy, "no scores output 'probs'")


def test_label_count_mismatch(bundle_copy: Path) -> None:
    spec = json.loads((bundle_copy / "bundle.json").read_text())
    _edit(bundle_copy, labels=spec["labels"][:10])
    _refused(bundle_copy, "1000 columns")


def test_not_an_onnx_graph(bundle_copy: Path) -> None:
    import hashlib

    junk = b"not a graph"
    (bundle_copy / "model.onnx").write_bytes(junk)
    _edit(bundle_copy, model_sha256=hashlib.sha256(junk).hexdigest())
    _refused(bundle_copy, "cannot load the graph")


def test_missing_field_names_the_key(bundle_copy: Path) -> None:
    spec = json.loads((bundle_copy / "bundle.json").read_text())
    del spec["input"]["mean"]
    (bundle_copy / "bundle.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="input.mean"):
        load_spec(bundle_copy)


def test_providers_missing_from_this_build_are_skipped_in_order() -> None:
    """The default asks for CUDA first: a CPU-only onnxruntime must quietly use the CPU, and a
    GPU build gets the GPU; a list with nothing available is refused with what there is."""
    import onnxruntime as ort

    from tagd.config import ModelSettings

    wanted = ModelSettings().providers
    model = Model(threads=1, providers=wanted)
    available = ort.get_available_providers()
    assert model.providers[0] == next(p for p in wanted if p in available)
    with pytest.raises(ModelError, match="none of the execution providers"):
        Model(threads=1, providers=["NoSuchExecutionProvider"])


def test_packaged_default_bundle_runs_the_int8_classifier_beside_the_detector(float_model, real_photo_dir: Path) -> None:
    """The packaged default (format 2) is what tagd runs unless told otherwise; its classifier is
    the quantised copy of the float one and, on a real photo, agrees with it on its top classes;
    "int8", the default's old name, still names it."""
    from tagd.decode import load_rgb
    from tagd.model import packaged_bundle_dir

    default = Model(threads=1)
    assert default.bundle_dir == packaged_bundle_dir("default") and default.version.startswith("tagd-default-v2@")
    assert default.detector is not None and len(default.spec.detector.labels) == 80
    assert Model("int8", threads=1).version == default.version
    model = float_model
    views = model.views(load_rgb(real_photo_dir / "chelsea.jpg", model.short_side))
    p_float, e_float = model.predict(views)
    p_int8, e_int8 = default.predict(views)
    assert set(np.argsort(-p_float.max(0))[:3]) & set(np.argsort(-p_int8.max(0))[:3])
    cos = (e_float * e_int8).sum(1) / np.linalg.norm(e_float, axis=1) / np.linalg.norm(e_int8, axis=1)
    assert cos.min() > 0.9, cos


def test_int8_classifier_rebuilds_byte_for_byte(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("skimage")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tagd.model import packaged_bundle_dir
    from training.quantize import quantize

    out = quantize(float_bundle_dir(), tmp_path / "int8")
    assert (out / "model.onnx").read_bytes() == (packaged_bundle_dir("default") / "classifier.onnx").read_bytes()
