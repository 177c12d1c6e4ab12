"""Backbone embeddings of every photo, computed once and cached on disk.

Each photo is decoded and cut into views exactly as `tagd` does at inference
(`tagd.decode.load_rgb`, `tagd.model.Model.views`: three 224 px squares along the long
side), and every view's 1280-d pooled embedding is kept, not just their mean: tagd scores a
tag at the photo's best view, so training and calibration need the views apart. A second
set of views of the mirrored photo is the augmentation the cached (fast) mode trains with.

The cache is one small `.npy` per photo, keyed by path, size, mtime and the backbone's
version, so an interrupted run resumes and a changed photo is embedded again.

Backends: the packaged ONNX graph through onnxruntime (default on CPU: exactly tagd's
numbers), or the PyTorch backbone (`device="cuda"`, much faster on a GPU).
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from training.progress import progress

log = logging.getLogger(__name__)

AUGMENTATIONS = ("original", "mirrored")


@dataclass
class Embeddings:
    paths: list[Path]
    views: np.ndarray  # (photos, augmentations, views, dim) float32; augmentation 0 is what tagd sees
    failed: dict[str, str] = field(default_factory=dict)  # path -> why it could not be decoded

    @property
    def dim(self) -> int:
        return int(self.views.shape[-1])


class Embedder:
    def __init__(
        self,
        *,
        device: str = "cpu",
        cache_dir: Path | None = None,
        mirrored: bool = True,
        threads: int = 0,
        batch_photos: int = 16,
        show_progress: bool = True,
    ) -> None:
        from tagd.model import Model, float_bundle_dir

        # The packaged float bundle defines the preprocessing (and, on CPU, computes the numbers):
        # heads are trained on, and exported with, the float backbone, not the int8 default.
        self.model = Model(float_bundle_dir(), threads=threads)
        self.version = self.model.version
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.augmentations = AUGMENTATIONS if mirrored else AUGMENTATIONS[:1]
        self.batch_photos = max(1, batch_photos)
        self.show_progress = show_progress
        self.workers = max(1, min(4, os.cpu_count() or 1))
        self._torch_graph = None
        if device != "cpu":
            import torch

            from training.build_default_model import TaggerGraph
            from training.reference import reference_net

            self._torch_graph = TaggerGraph(reference_net()).eval().to(torch.device(device))

    # ---- cache --------------------------------------------------------------------------------
    def _key(self, path: Path) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        ident = f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{self.version}\0{','.join(self.augmentations)}"
        return hashlib.sha256(ident.encode()).hexdigest()

    def _cache_file(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / self.version.replace("@", "-") / key[:2] / f"{key}.npy"

    def _load_cached(self, path: Path) -> np.ndarray | None:
        key = self._key(path)
        file = self._cache_file(key) if key else None
        if file is None or not file.is_file():
            return None
        try:
            arr = np.load(file)
        except (OSError, ValueError):
            return None  # a torn write from a killed run: embed again
        return arr if arr.shape[:2] == (len(self.augmentations), 3) else None

    def _store(self, path: Path, arr: np.ndarray) -> None:
        key = self._key(path)
        file = self._cache_file(key) if key else None
        if file is None:
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, arr)
        os.replace(tmp, file)

    # ---- computing ----------------------------------------------------------------------------
    def _decode(self, path: Path) -> np.ndarray:
        from PIL import ImageOps

        from tagd.decode import load_rgb

        image = load_rgb(path, self.model.short_side)
        views = [self.model.views(image)]
        if "mirrored" in self.augmentations:
            views.append(self.model.views(ImageOps.mirror(image)))
        return np.concatenate(views)  # (augmentations * views, H, W, 3)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._torch_graph is None:
            return self.model.predict(batch)[1]
        import torch

        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(self.device)
            return self._torch_graph(x)[1].float().cpu().numpy()

    def embed(self, paths: Sequence[Path]) -> Embeddings:
        from tagd.errors import ReadError

        paths = [Path(p) for p in paths]
        n_aug = len(self.augmentations)
        out: list[np.ndarray | None] = [self._load_cached(p) for p in paths]
        todo = [i for i, arr in enumerate(out) if arr is None]
        failed: dict[str, str] = {}
        if todo:
            log.info("embedding %d photos (%d cached)", len(todo), len(paths) - len(todo))
        chunks = [todo[i:i + self.batch_photos] for i in range(0, len(todo), self.batch_photos)]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="embed-decode") as pool:
            def submit(chunk: list[int]):
                return [(i, pool.submit(self._decode, paths[i])) for i in chunk]

            pending = submit(chunks[0]) if chunks else []
            bar = progress(range(len(todo)), desc="embedding", unit="photo", enable=self.show_progress)
            ticks = iter(bar)
            for k in range(len(chunks)):
                current = pending
                # Decode the next chunk while this one runs through the network.
                pending = submit(chunks[k + 1]) if k + 1 < len(chunks) else []
                decoded: list[tuple[int, np.ndarray]] = []
                for i, future in current:
                    try:
                        decoded.append((i, future.result()))
                    except ReadError as exc:
                        failed[str(paths[i])] = exc.reason
                    next(ticks, None)
                if not decoded:
                    continue
                emb = self._infer(np.concatenate([d for _, d in decoded]))
                emb = emb.reshape(len(decoded), n_aug, 3, -1).astype(np.float32, copy=False)
                for (i, _), arr in zip(decoded, emb):
                    out[i] = arr
                    self._store(paths[i], arr)
            for _ in ticks:
                pass
        for path, reason in failed.items():
            log.warning("%s: skipped, %s", path, reason)
        kept = [i for i, arr in enumerate(out) if arr is not None]
        dim = out[kept[0]].shape[-1] if kept else 1280
        views = np.stack([out[i] for i in kept]) if kept else np.zeros((0, n_aug, 3, dim), np.float32)
        return Embeddings([paths[i] for i in kept], views, failed)
