"""Build an int8 copy of a model bundle with onnxruntime's static quantisation.

    python training/quantize.py                         # the float bundle -> build/int8/ (the default
                                                        # bundle's classifier.onnx, byte for byte)
    python training/build_fused_bundle.py --classifier build/int8   # ... into the default bundle
    python training/quantize.py --bundle DIR --out DIR2 --method percentile

Weights are quantised per output channel (int8), activations per tensor (uint8), in QDQ
format, with ranges calibrated on real photos that are not in any evaluation set (the
scikit-image and scikit-learn sample photos, several crops and mirrors of each, through
tagd's own decode and three-crop preprocessing so the ranges are those tagd will see).
The outputs stay float: the softmax and the embedding are not quantised; nor are the first
convolutions (FLOAT_CONVS, below).

The bundle written is a complete `tagd-bundle/1` directory (its own sha256 and name) that
`model.path` can point at. Measure it with:

    python training/evaluate.py ../shared/data/coco128-dev --model build/int8
    python bench/bench_e2e.py --model build/int8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagd.model import Model, float_bundle_dir, load_spec  # noqa: E402

if TYPE_CHECKING:
    from PIL import Image

CALIBRATION_SOURCES = ("chelsea", "coffee", "rocket", "astronaut", "horse", "camera", "china", "flower",
                       "motorcycle", "cat", "page", "immunohistochemistry", "coins", "hubble_deep_field")


def calibration_images() -> Iterator[Image.Image]:
    """Sample photos that ship with scikit-image / scikit-learn, each whole, cropped and mirrored."""
    from PIL import Image, ImageOps
    from skimage import data
    from sklearn.datasets import load_sample_image

    for name in CALIBRATION_SOURCES:
        if name in ("china", "flower"):
            arr = load_sample_image(f"{name}.jpg")
        elif name == "motorcycle":
            arr = data.stereo_motorcycle()[0]
        else:
            arr = getattr(data, name)()
        image = Image.fromarray(arr).convert("RGB")
        w, h = image.size
        yield image
        yield ImageOps.mirror(image)
        yield image.crop((w // 6, h // 6, w - w // 6, h - h // 6))


def _short_side(image: Image.Image, size: int) -> Image.Image:
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    return image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one batch of NCHW views at a time."""

    def __init__(self, model: Model) -> None:
        batches = []
        for image in calibration_images():
            views = model.views(_short_side(image, model.short_side))
            batches.append(np.ascontiguousarray(views.transpose(0, 3, 1, 2)))
        self._input = model.spec.input.name
        self._batches = iter(batches)
        self.count = len(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}


# The first convolutions see the photo's full dynamic range and the block-0 depthwise filter is
# the most quantisation-sensitive layer: keeping the stem and block 0 (3 convolutions, ~5 % of
# the multiply-adds) in float halves the int8 model's divergence from the float one on the
# coco128-dev photos (mean KL of the label distributions 0.020 -> 0.011, top-1 agreement
# 0.914 -> 0.938) at the same speed (501 vs 486 views/s). Chosen on that label-free fidelity,
# not on mean AP; keeping more (5, 8) gains little fidelity and costs 20-30 % of the speed.
FLOAT_CONVS = 3


def quantize(bundle: Path, out: Path, method: str = "minmax", keep_float: tuple[str, ...] = (),
             float_convs: int = FLOAT_CONVS) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    spec = load_spec(bundle)
    model = Model(bundle, threads=0)
    reader = _Reader(model)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(bundle / spec.model_file), str(prepared))
        import onnx

        graph = onnx.load(str(prepared)).graph
        convs = [n.name for n in graph.node if n.op_type == "Conv"]
        exclude = [n.name for n in graph.node if n.op_type in keep_float] + convs[:float_convs]
        target = out / "model.onnx"
        quantize_static(
            str(prepared), str(target), reader,
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            op_types_to_quantize=["Conv", "MatMul", "Gemm", "Add", "Mul", "GlobalAveragePool", "Clip"],
            nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    raw = json.loads((bundle / "bundle.json").read_text())
    raw["name"] = f"{spec.name}-int8"
    raw["description"] = (f"{raw.get('description', spec.name)}; int8 (onnxruntime static QDQ, {method} calibration on "
                          f"{reader.count} sample-photo views batches; first {float_convs} convolutions in float)")
    raw["model_file"] = "model.onnx"
    raw["model_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (out / "bundle.json").write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n")
    shutil.copyfile(bundle / spec.vocabulary_file, out / "vocab.json")
    Model(out)  # the bundle must load through tagd's own contract checks
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="source bundle (default: packaged)")
    parser.add_argument("--out", type=Path, default=Path("build/int8"))
    parser.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    parser.add_argument("--keep-float", nargs="*", default=[], metavar="OP",
                        help="operator types left in float, e.g. Gemm (default: none)")
    parser.add_argument("--float-convs", type=int, default=FLOAT_CONVS, metavar="N",
                        help=f"the first N convolutions stay in float (default {FLOAT_CONVS}: the stem and block 0)")
    args = parser.parse_args(argv)
    out = quantize(args.bundle or float_bundle_dir(), args.out, args.method, tuple(args.keep_float), args.float_convs)
    size = (out / "model.onnx").stat().st_size
    print(f"wrote {out} ({size / 1e6:.1f} MB model)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
