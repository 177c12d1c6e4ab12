"""Image augmentations for fine-tuning: a random square of the photo, mirrored or not, with
its light and colour shifted a little.

The crop follows tagd's views: tagd scores squares of the short side along the long side,
so training squares are 70-100 % of the short side, anywhere in the photo. Light and colour
shifts stand in for other cameras and exposures. Deterministic: every random choice comes
from the `rng` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MEAN = 127.0
STD = 128.0


@dataclass(frozen=True)
class AugmentConfig:
    min_scale: float = 0.7
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def random_view(image: Image.Image, size: int, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """RGB PIL image -> (size, size, 3) float32, normalised as the bundle's input."""
    width, height = image.size
    short = min(width, height)
    side = max(1, int(round(short * rng.uniform(config.min_scale, 1.0))))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    crop = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(crop, dtype=np.float32)
    if config.flip and rng.random() < 0.5:
        arr = arr[:, ::-1]
    if config.brightness:
        arr = arr * rng.uniform(1 - config.brightness, 1 + config.brightness)
    if config.contrast:
        mean = arr.mean()
        arr = (arr - mean) * rng.uniform(1 - config.contrast, 1 + config.contrast) + mean
    if config.saturation:
        grey = arr.mean(axis=2, keepdims=True)
        arr = (arr - grey) * rng.uniform(1 - config.saturation, 1 + config.saturation) + grey
    arr = np.clip(arr, 0.0, 255.0)
    return ((arr - MEAN) / STD).astype(np.float32)
