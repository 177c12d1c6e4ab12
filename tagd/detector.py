"""The object detector of a v2 model bundle: YOLOX (COCO's 80 classes) through onnxruntime.

It sees the same decoded photo as the classifier (tagd.tagger decodes once), letterboxed into
its square input. Its output is one row per anchor point: box offsets, objectness and the
class probabilities (both already sigmoid). A photo's score for a class is its best anchor's
objectness x class probability (all tagging needs: no box decoding, no NMS); boxes, decoded
and suppressed per class, are made only where regions are wanted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tagd.boxes import Box
from tagd.errors import ModelError

if TYPE_CHECKING:
    from PIL import Image

    from tagd.model import DetectorSpec


class Detector:
    def __init__(self, spec: "DetectorSpec", session: object, where: Path) -> None:
        self.spec = spec
        self._session = session
        inputs = {i.name: i for i in session.get_inputs()}  # type: ignore[attr-defined]
        outputs = {o.name: o for o in session.get_outputs()}  # type: ignore[attr-defined]
        if spec.input.name not in inputs or spec.output not in outputs:
            raise ModelError(f"model bundle {where}: the detector graph has inputs {sorted(inputs)} and outputs "
                             f"{sorted(outputs)}, bundle.json names {spec.input.name!r} and {spec.output!r}")
        height, width = spec.input.size
        self.size = (int(width), int(height))
        self.grid, self.strides = _grid(height, width, spec.strides)
        columns = outputs[spec.output].shape[-1]
        if isinstance(columns, int) and columns != 5 + len(spec.labels):
            raise ModelError(f"model bundle {where}: the detector output has {columns} columns, "
                             f"{5 + len(spec.labels)} expected for {len(spec.labels)} labels")
        self._pad_byte = np.uint8(min(255, max(0, round(spec.input.pad_value))))  # the letterbox fill, 0..255

    @property
    def long_side(self) -> int:
        """The decoded photo's long side this detector needs (more is wasted work)."""
        return max(self.size)

    def prepare(self, image: "Image.Image") -> tuple[np.ndarray, float]:
        """RGB photo -> (the (3, H, W) float32 input, the scale from photo to input pixels).

        Resized keeping its aspect ratio to fit the input, placed top-left, padded (YOLOX's
        letterbox), channels in the graph's order, values 0..255."""
        from PIL import Image as PILImage

        width, height = self.size
        scale = min(width / image.width, height / image.height)
        new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resized = image.resize(new, PILImage.Resampling.BILINEAR, reducing_gap=2.0) if new != image.size else image
        # Laid out in 8 bits and converted once, straight into the graph's channel-first order.
        out = np.full((height, width, 3), self._pad_byte, dtype=np.uint8)
        pixels = np.asarray(resized)
        out[:new[1], :new[0]] = pixels[:, :, ::-1] if self.spec.input.channels == "BGR" else pixels
        chw = np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)
        if self.spec.input.scale != 1.0:
            chw *= np.float32(self.spec.input.scale)
        return chw, scale

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each prepared input -> its raw (anchors, 5 + classes) output. The graph takes one
        photo at a time (its batch axis is fixed at 1)."""
        name, output = self.spec.input.name, self.spec.output
        return [self._session.run([output], {name: x[None]})[0][0] for x in inputs]  # type: ignore[attr-defined]

    @staticmethod
    def class_scores(raw: np.ndarray) -> np.ndarray:
        """(anchors, 5 + C) -> (C,): each class's best anchor, objectness x class probability."""
        return (raw[:, 4:5] * raw[:, 5:]).max(axis=0)

    def detections(self, raw: np.ndarray, scale: float, image_size: tuple[int, int], min_score: float = 0.35,
                   iou: float = 0.45, limit: int = 20, names: Sequence[str] | None = None) -> list[Box]:
        """Boxes above `min_score`, one per object (per-class NMS), best first, normalised to
        the photo of `image_size` (width, height) that `prepare` got with this `scale`; each
        labelled `names[class]` (the vocabulary's tag) where given and non-empty, else by the
        detector's own label."""
        scores = raw[:, 4:5] * raw[:, 5:]
        labels = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), labels]
        keep = np.nonzero(best >= min_score)[0]
        if not len(keep):
            return []
        # YOLOX's head: centre = (offset + grid cell) * stride, size = exp(log size) * stride.
        xy = (raw[keep, :2] + self.grid[keep]) * self.strides[keep, None]
        wh = np.exp(np.minimum(raw[keep, 2:4], 10.0)) * self.strides[keep, None]
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1) / scale
        width, height = image_size
        boxes = np.clip(boxes, 0, [width, height, width, height])
        out: list[Box] = []
        for label in np.unique(labels[keep]):
            rows = np.nonzero(labels[keep] == label)[0]
            for i in _nms(boxes[rows], best[keep][rows], iou):
                x0, y0, x1, y1 = boxes[rows][i]
                if x1 - x0 < 1 or y1 - y0 < 1:
                    continue
                out.append(Box((names[int(label)] if names else "") or self.spec.labels[int(label)], round(float(best[keep][rows][i]), 4),
                                     round(float((x0 + x1) / 2 / width), 4), round(float((y0 + y1) / 2 / height), 4),
                                     round(float((x1 - x0) / width), 4), round(float((y1 - y0) / height), 4)))
        out.sort(key=lambda d: -d.score)
        return out[:limit]


def _grid(height: int, width: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Every anchor's (column, row) cell and its stride, in the head's output order."""
    cells, sizes = [], []
    for stride in strides:
        rows, cols = height // stride, width // stride
        yv, xv = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        cells.append(np.stack([xv, yv], axis=-1).reshape(-1, 2))
        sizes.append(np.full(rows * cols, stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(sizes).astype(np.float32)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.asarray(order)
        x0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(0, x1 - x0) * np.maximum(0, y1 - y0)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        overlap = inter / np.maximum(area(boxes[i]) + area(boxes[rest]) - inter, 1e-9)
        order = [j for j, o in zip(order, overlap) if o <= iou]
    return keep
