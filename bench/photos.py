"""Build sets of realistic 12-megapixel photos for benchmarking tagd.

Why this exists: tagd's speed is dominated by reading large camera JPEGs, so a
benchmark on small or synthetic images measures the wrong thing, and real
photo dumps cannot be committed. We derive full-size, camera-like files
(EXIF, orientation flags, varied JPEG quality, sensor-like grain) from the
photos that scikit-image and scikit-learn already ship, deterministically
per seed, so every run and every machine benchmarks the same bytes.

CLI:  python bench/photos.py OUTDIR -n N [--seed S] [--mix]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import itertools
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import piexif
from PIL import Image, ImageChops, ImageEnhance

LONG_SIDE, SHORT_SIDE = 4000, 3000

# Only colour photos of real scenes: a tagger benchmarked on drawings or
# microscopy would exercise different code paths than users' photos do.
# "camera" is greyscale and becomes RGB, like a B&W export from a phone.
SOURCE_NAMES: tuple[str, ...] = (
    "chelsea", "coffee", "rocket", "astronaut", "motorcycle", "camera", "china", "flower",
)

# (Make, Model, JPEG chroma subsampling). Phones write 4:2:0 and many
# cameras 4:2:2; the difference changes decode cost, so both appear.
_CAMERAS: tuple[tuple[str, str, int], ...] = (
    ("Apple", "iPhone 12", 2),
    ("Apple", "iPhone 13 Pro", 2),
    ("Google", "Pixel 5", 2),
    ("samsung", "SM-G991B", 2),
    ("Canon", "Canon EOS 5D", 1),
    ("NIKON CORPORATION", "NIKON D700", 1),
    ("SONY", "ILCE-7S", 1),
    ("FUJIFILM", "X-E1", 1),
)
_ISOS = (50, 100, 200, 400, 800, 1600, 3200)
_ISO_WEIGHTS = (0.15, 0.30, 0.20, 0.15, 0.10, 0.06, 0.04)
_EXPOSURES = ((1, 30), (1, 60), (1, 125), (1, 250), (1, 500), (1, 1000), (1, 4000))
_FNUMBERS = ((18, 10), (20, 10), (28, 10), (40, 10), (56, 10), (80, 10))

# Upscaled pixels are far smoother than a sensor's and would compress (and
# decode) unrealistically fast, so grain is added at full resolution, scaled
# by ISO band. It is cut from a pre-tiled field at a random offset because
# drawing 36M normals per photo would dominate generation time.
_NOISE_SIGMAS = ((1.5, 0.7), (2.5, 1.2), (4.0, 2.0))  # (luma, chroma) per ISO band
_NOISE_TILE = 1024
_NOISE_MARGIN = 512

# Rough share of special cases; see _quota for how small sets are handled.
_ROTATED_SHARE = 0.04  # each of Orientation 6 and 8
_MIX_SHARE = 0.02  # each of PNG and WebP with --mix
_PORTRAIT_SHARE = 0.15  # upright portraits stored as 3000x4000, Orientation 1

_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class PhotoSpec:
    """Every random choice for one photo, drawn up front in the parent.

    Planning serially and rendering in workers keeps the output independent
    of pool scheduling, hence byte-identical for a given seed.
    """

    seed: int
    index: int  # 1-based, used in the file name
    source: str
    flip: bool
    angle: float  # degrees counter-clockwise, applied about the crop centre
    box: tuple[float, float, float, float]  # crop in source pixels
    portrait: bool  # upright scene is SHORT_SIDE x LONG_SIDE
    brightness: float
    contrast: float
    saturation: float
    wb_gains: tuple[float, float, float]
    noise_level: int
    noise_offset: tuple[int, int]
    orientation: int  # EXIF Orientation: 1, 6 or 8
    fmt: str  # Pillow format: JPEG, PNG or WEBP
    quality: int
    make: str
    model: str
    subsampling: int
    taken: str  # EXIF "YYYY:MM:DD HH:MM:SS"
    exposure: tuple[int, int]
    fnumber: tuple[int, int]
    iso: int
    focal_length: tuple[int, int]

    @property
    def filename(self) -> str:
        return f"IMG_{self.index:05d}.{_EXT[self.fmt]}"


def _load_source(name: str) -> Image.Image:
    # Imported here: these packages take a while to import and only the
    # loader needs them.
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(f"{name}.jpg")
    else:
        from skimage import data

        arr = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return Image.fromarray(arr).convert("RGB")


@functools.lru_cache(maxsize=None)
def _sources() -> Mapping[str, Image.Image]:
    # Cached per process: forked workers inherit the parent's copy, and
    # spawned ones decode once in the pool initializer, not once per photo.
    return {name: _load_source(name) for name in SOURCE_NAMES}


@functools.lru_cache(maxsize=None)
def _noise_field(seed: int, level: int) -> Image.Image:
    rng = np.random.default_rng([seed, 0x6E6F, level])
    luma, chroma = _NOISE_SIGMAS[level]
    shape = (_NOISE_TILE, _NOISE_TILE)
    tile = (
        128.0
        + luma * rng.standard_normal((*shape, 1), dtype=np.float32)
        + chroma * rng.standard_normal((*shape, 3), dtype=np.float32)
    )
    tile8 = np.clip(np.rint(tile), 0, 255).astype(np.uint8)
    side = LONG_SIDE + _NOISE_MARGIN
    reps = -(-side // _NOISE_TILE)
    # Square so one field serves both landscape and portrait frames.
    field = np.tile(tile8, (reps, reps, 1))[:side, :side]
    return Image.fromarray(np.ascontiguousarray(field))


def _quota(n: int, share: float) -> int:
    # At least one of each special case once a set is big enough to hold
    # them, so small sets (e.g. in tests) still exercise every path.
    return min(max(1, round(n * share)), n // 10)


def _crop_box(
    rng: np.random.Generator, w: int, h: int, aspect: float, angle: float
) -> tuple[float, float, float, float]:
    # Largest crop of the requested aspect whose rotation by `angle` about
    # its own centre stays inside the source, so no black corners appear.
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    margin = 2.0  # keeps bicubic taps off the rotated image's black fill
    uw, uh = w - 2 * margin, h - 2 * margin
    ch = rng.uniform(0.7, 0.97) * min(uw / (aspect * c + s), uh / (aspect * s + c))
    cw = aspect * ch
    ex, ey = (cw * c + ch * s) / 2, (cw * s + ch * c) / 2
    cx = margin + rng.uniform(ex, uw - ex)
    cy = margin + rng.uniform(ey, uh - ey)
    return (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)


def plan_photos(n: int, seed: int = 0, mix: bool = False) -> list[PhotoSpec]:
    """Draw the parameters of `n` photos; cheap, no pixels are touched."""
    sizes = {name: im.size for name, im in _sources().items()}
    rng = np.random.default_rng([seed, 0])
    # Special cases come from their own stream and slots, so --mix only
    # changes the format of a few files and never the other photos' content.
    slots = np.random.default_rng([seed, 1]).permutation(n).tolist()
    n_rot, n_mix = _quota(n, _ROTATED_SHARE), _quota(n, _MIX_SHARE) if mix else 0
    special: dict[int, tuple[int, str]] = {}
    for k, (orientation, fmt) in enumerate(
        [(6, "JPEG")] * n_rot + [(8, "JPEG")] * n_rot + [(1, "PNG")] * n_mix + [(1, "WEBP")] * n_mix
    ):
        special[slots[k]] = (orientation, fmt)

    taken = dt.datetime(2019, 1, 1, 8) + dt.timedelta(
        days=int(rng.integers(0, 4 * 365)), seconds=int(rng.integers(0, 4 * 3600))
    )
    specs: list[PhotoSpec] = []
    for i in range(n):
        orientation, fmt = special.get(i, (1, "JPEG"))
        # Sideways camera shots are portrait scenes stored landscape, as
        # sensors write them; a few upright portraits are stored as such.
        portrait = orientation != 1 or bool(rng.random() < _PORTRAIT_SHARE)
        source = SOURCE_NAMES[int(rng.integers(len(SOURCE_NAMES)))]
        angle = float(rng.uniform(-3.0, 3.0))
        aspect = SHORT_SIDE / LONG_SIDE if portrait else LONG_SIDE / SHORT_SIDE
        box = _crop_box(rng, *sizes[source], aspect, angle)
        make, model, subsampling = _CAMERAS[int(rng.integers(len(_CAMERAS)))]
        iso = int(rng.choice(_ISOS, p=_ISO_WEIGHTS))
        wb = [float(g) for g in rng.uniform(0.94, 1.06, 3)]
        # Strictly increasing capture times, like a camera roll: mostly
        # bursts minutes apart, sometimes a new day. This also guarantees
        # every file's bytes differ even if two crops came out alike.
        gap = rng.integers(3600, 3 * 86400) if rng.random() < 0.1 else rng.integers(2, 900)
        taken += dt.timedelta(seconds=int(gap))
        specs.append(
            PhotoSpec(
                seed=seed,
                index=i + 1,
                source=source,
                flip=bool(rng.random() < 0.5),
                angle=angle,
                box=box,
                portrait=portrait,
                brightness=float(rng.uniform(0.85, 1.15)),
                contrast=float(rng.uniform(0.85, 1.2)),
                saturation=float(rng.uniform(0.75, 1.25)),
                wb_gains=(wb[0], wb[1], wb[2]),
                noise_level=0 if iso <= 200 else 1 if iso <= 800 else 2,
                noise_offset=(int(rng.integers(_NOISE_MARGIN)), int(rng.integers(_NOISE_MARGIN))),
                orientation=orientation,
                fmt=fmt,
                quality=int(rng.integers(85, 96)),
                make=make,
                model=model,
                subsampling=subsampling,
                taken=taken.strftime("%Y:%m:%d %H:%M:%S"),
                exposure=_EXPOSURES[int(rng.integers(len(_EXPOSURES)))],
                fnumber=_FNUMBERS[int(rng.integers(len(_FNUMBERS)))],
                iso=iso,
                focal_length=(int(rng.integers(24, 200)) * 10, 10),
            )
        )
    return specs


def render_upright(spec: PhotoSpec) -> Image.Image:
    """Pixels of the photo as a viewer should display them (before EXIF rotation)."""
    im = _sources()[spec.source]
    if spec.flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # Colour work happens at source size: ~100x fewer pixels than the output.
    lut = [
        min(255, round(v * spec.brightness * gain)) for gain in spec.wb_gains for v in range(256)
    ]
    im = im.point(lut)
    im = ImageEnhance.Contrast(im).enhance(spec.contrast)
    im = ImageEnhance.Color(im).enhance(spec.saturation)
    x0, y0, x1, y1 = spec.box
    im = im.rotate(spec.angle, Image.Resampling.BICUBIC, center=((x0 + x1) / 2, (y0 + y1) / 2))
    size = (SHORT_SIDE, LONG_SIDE) if spec.portrait else (LONG_SIDE, SHORT_SIDE)
    im = im.resize(size, Image.Resampling.LANCZOS, box=spec.box)
    ox, oy = spec.noise_offset
    grain = _noise_field(spec.seed, spec.noise_level).crop((ox, oy, ox + size[0], oy + size[1]))
    return ImageChops.add(im, grain, 1.0, -128)  # grain is centred on 128


def _to_stored(upright: Image.Image, orientation: int) -> Image.Image:
    # Inverse of what viewers (and PIL.ImageOps.exif_transpose) apply:
    # Orientation 6 is displayed rotated 90 degrees clockwise, so store it
    # rotated 90 degrees counter-clockwise; 8 is the mirror case.
    if orientation == 6:
        return upright.transpose(Image.Transpose.ROTATE_90)
    if orientation == 8:
        return upright.transpose(Image.Transpose.ROTATE_270)
    return upright


def _exif_bytes(spec: PhotoSpec, stored_size: tuple[int, int]) -> bytes:
    zeroth = {
        piexif.ImageIFD.Make: spec.make,
        piexif.ImageIFD.Model: spec.model,
        piexif.ImageIFD.Orientation: spec.orientation,
        piexif.ImageIFD.XResolution: (72, 1),
        piexif.ImageIFD.YResolution: (72, 1),
        piexif.ImageIFD.ResolutionUnit: 2,
        piexif.ImageIFD.DateTime: spec.taken,
    }
    exif = {
        piexif.ExifIFD.ExifVersion: b"0232",
        piexif.ExifIFD.DateTimeOriginal: spec.taken,
        piexif.ExifIFD.DateTimeDigitized: spec.taken,
        piexif.ExifIFD.ExposureTime: spec.exposure,
        piexif.ExifIFD.FNumber: spec.fnumber,
        piexif.ExifIFD.ISOSpeedRatings: spec.iso,
        piexif.ExifIFD.FocalLength: spec.focal_length,
        piexif.ExifIFD.ExposureProgram: 2,
        piexif.ExifIFD.MeteringMode: 5,
        piexif.ExifIFD.Flash: 16,
        piexif.ExifIFD.ColorSpace: 1,
        piexif.ExifIFD.PixelXDimension: stored_size[0],
        piexif.ExifIFD.PixelYDimension: stored_size[1],
    }
    return piexif.dump({"0th": zeroth, "Exif": exif})


def write_photo(spec: PhotoSpec, outdir: Path) -> Path:
    """Render one photo and write it to `outdir`; returns its path."""
    stored = _to_stored(render_upright(spec), spec.orientation)
    exif = _exif_bytes(spec, stored.size)
    final = outdir / spec.filename
    # Written under a hidden name and renamed, so an interrupted run never
    # leaves a truncated IMG_* file for a later --photos reuse to trip on.
    part = final.with_name(f".{final.name}.part")
    if spec.fmt == "JPEG":
        stored.save(
            part, "JPEG", quality=spec.quality, subsampling=spec.subsampling,
            optimize=False, progressive=False, dpi=(72, 72), exif=exif,
        )
    elif spec.fmt == "PNG":
        # Level 1: the content matters to the tagger, not the ratio, and
        # level 6 doubles generation time for 12 MP.
        stored.save(part, "PNG", compress_level=1, exif=exif)
    else:
        stored.save(part, "WEBP", quality=spec.quality - 5, method=4, exif=exif)
    os.replace(part, final)
    return final


def _init_worker() -> None:
    _sources()


def make_photos(outdir: Path, n: int, seed: int = 0, mix: bool = False) -> list[Path]:
    """Write `n` distinct 12 MP photos named IMG_00001.jpg... into `outdir`.

    Same seed, same bytes. With `mix`, ~2% are PNG and ~2% WebP. Uses a
    process pool over all cores because encoding 12 MP images is CPU-bound.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    specs = plan_photos(n, seed, mix)  # also loads sources before any fork
    workers = min(os.cpu_count() or 1, n)
    if workers <= 1:
        return [write_photo(spec, outdir) for spec in specs]
    with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
        return list(pool.map(write_photo, specs, itertools.repeat(outdir)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build realistic 12 MP benchmark photos.")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("-n", type=int, default=100, help="number of photos (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mix", action="store_true", help="~2%% PNG and ~2%% WebP")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be at least 1")
    start = time.perf_counter()
    paths = make_photos(args.outdir, args.n, seed=args.seed, mix=args.mix)
    elapsed = time.perf_counter() - start
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    print(f"wrote {len(paths)} photos ({megabytes:.0f} MB) to {args.outdir} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
