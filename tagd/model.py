"""The ONNX model bundle: load it, check it against the contract, preprocess, predict.

A bundle is a directory holding `bundle.json` (this module's `BundleSpec`), the `.onnx`
graph it names, and the tag vocabulary (`tagd.vocab`). The daemon refuses a bundle that
does not match the contract with one clear message, before it touches any photo.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tagd.errors import ModelError

if TYPE_CHECKING:
    from tagd.detector import Detector

log = logging.getLogger(__name__)

BUNDLE_FORMATS = ("tagd-bundle/1", "tagd-bundle/2")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class InputSpec(_Strict):
    name: str
    layout: Literal["NCHW"] = "NCHW"
    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # squash: the whole photo stretched to the input size; center-crop: the middle square;
    # three-crop: three squares along the long side (start, middle, end) covering the whole
    # photo undistorted, each scored, a tag taking its best view.
    resize: Literal["squash", "center-crop", "three-crop"] = "three-crop"
    color: Literal["RGB"] = "RGB"


class OutputSpec(_Strict):
    scores: str
    embedding: str


class ScoresSpec(_Strict):
    # softmax: one distribution over exclusive classes, so a tag's score is the SUM of its
    # classes; sigmoid: independent per-label probabilities, so a tag takes the MAX.
    kind: Literal["softmax", "sigmoid"]
    aggregate: Literal["sum", "max"]


class Label(_Strict):
    id: str
    name: str


class ClassifierSpec(_Strict):
    """The classifier graph: label scores for the broad vocabulary, and the embedding."""

    model_file: str
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: InputSpec
    outputs: OutputSpec
    scores: ScoresSpec
    embedding_dim: int = Field(gt=0)
    labels: list[Label] = Field(min_length=1)


class DetectorInputSpec(_Strict):
    name: str
    size: tuple[int, int]  # height, width
    channels: Literal["BGR", "RGB"] = "BGR"
    pad_value: float = 114.0  # the letterbox's fill
    scale: float = 1.0  # pixel values 0..255 times this


class DetectorSpec(_Strict):
    """The object detector graph (v2 bundles): its classes map to tags in the vocabulary."""

    kind: Literal["yolox"]
    model_file: str
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: DetectorInputSpec
    output: str
    strides: tuple[int, ...] = (8, 16, 32)
    labels: list[str] = Field(min_length=1)
    licence_file: str | None = None
    provenance_file: str | None = None


class BundleSpec(_Strict):
    """bundle.json. Format 1: one classifier (its fields at the top level); format 2: a
    `classifier` and optionally a `detector`, each with its graph, pre-processing and labels,
    and a vocabulary that maps both onto tags and calibrates their fused score."""

    format: Literal["tagd-bundle/1", "tagd-bundle/2"]
    name: str
    classifier: ClassifierSpec
    detector: DetectorSpec | None = None
    vocabulary_file: str = "vocab.json"
    vocabulary_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # What a photo's embedding is (tagd.embedding): "classifier" features, or what is in it ("tags").
    embedding: Literal["classifier", "tags"] = "classifier"

    @model_validator(mode="before")
    @classmethod
    def _v1_layout(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("format") == "tagd-bundle/1" and "classifier" not in raw:
            fields = set(ClassifierSpec.model_fields)
            return {**{k: v for k, v in raw.items() if k not in fields}, "classifier": {k: raw[k] for k in fields if k in raw}}
        return raw

    # The classifier's fields, where a format-1 bundle had them.
    @property
    def model_file(self) -> str:
        return self.classifier.model_file

    @property
    def model_sha256(self) -> str:
        return self.classifier.model_sha256

    @property
    def input(self) -> InputSpec:
        return self.classifier.input

    @property
    def outputs(self) -> OutputSpec:
        return self.classifier.outputs

    @property
    def scores(self) -> ScoresSpec:
        return self.classifier.scores

    @property
    def embedding_dim(self) -> int:
        return self.classifier.embedding_dim

    @property
    def labels(self) -> list[Label]:
        return self.classifier.labels

    @property
    def version(self) -> str:
        """Short, stable id of the exact graphs (and, for format 2, the calibration in the
        vocabulary): recorded with every tag tagd writes; a new one re-tags the library."""
        if self.format == "tagd-bundle/1":
            return f"{self.name}@{self.model_sha256[:12]}"
        parts = [self.classifier.model_sha256, self.detector.model_sha256 if self.detector else "",
                 self.vocabulary_sha256 or ""]
        if self.embedding != "classifier":  # other embeddings: the index's are to be replaced
            parts.append(self.embedding + "+sketch64")  # tagd.embedding: a new definition, a new version
        return f"{self.name}@{hashlib.sha256(':'.join(parts).encode()).hexdigest()[:12]}"


# What `model.path` may name instead of a directory. "default" is the format-2 bundle tagd
# runs: the int8 classifier (training/quantize.py's copy of the float one) and the YOLOX-Nano
# detector, fused and calibrated (training/build_fused_bundle.py). "float" is the format-1
# EfficientNet-Lite0 export (training/build_default_model.py) that training starts from and
# the int8 classifier is quantised from. "int8", the default of tagd 0.1, names the default.
PACKAGED_BUNDLES = ("default", "float")
BUNDLE_ALIASES = {"int8": "default"}
DEFAULT_BUNDLE = "default"


def default_bundle_dir() -> Path:
    """The bundle tagd runs when `model.path` is not set."""
    return packaged_bundle_dir(DEFAULT_BUNDLE)


def float_bundle_dir() -> Path:
    """The float bundle: the source of the int8 copy, and the backbone training builds on."""
    return packaged_bundle_dir("float")


def packaged_bundle_dir(name: str) -> Path:
    return Path(str(resources.files("tagd") / "models" / name))


def resolve_bundle(path: Path | str | None) -> Path:
    """A bundle directory; None for the default; a packaged bundle's name ("default", "float") for the packaged ones.

    A directory of that name in the working directory wins over the packaged bundle.
    """
    if path is None or str(path) == "":
        return default_bundle_dir()
    path = Path(path)
    name = BUNDLE_ALIASES.get(str(path), str(path))
    if name in PACKAGED_BUNDLES and not path.is_dir():
        return packaged_bundle_dir(name)
    return path


def load_spec(bundle_dir: Path) -> BundleSpec:
    path = Path(bundle_dir) / "bundle.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model bundle {bundle_dir}: no bundle.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model bundle {bundle_dir}: unreadable bundle.json ({exc})") from None
    if isinstance(raw, dict) and raw.get("format") not in BUNDLE_FORMATS:
        raise ModelError(
            f"model bundle {bundle_dir}: format {raw.get('format')!r}, this tagd reads {' and '.join(BUNDLE_FORMATS)}"
        )
    try:
        return BundleSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"model bundle {bundle_dir}: bundle.json {where}: {first['msg']}") from None


class Model:
    """One onnxruntime session, created once, shared by all threads (run() is thread-safe)."""

    def __init__(
        self,
        bundle_dir: Path | None = None,
        *,
        threads: int = 0,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        verify_checksum: bool = True,
    ) -> None:
        self.bundle_dir = resolve_bundle(bundle_dir)
        self.spec = load_spec(self.bundle_dir)
        onnx_path = self.bundle_dir / self.spec.model_file
        try:
            onnx_bytes = onnx_path.read_bytes()
        except OSError as exc:
            raise ModelError(f"model bundle {self.bundle_dir}: cannot read {self.spec.model_file}: {exc.strerror}") from None
        if verify_checksum and hashlib.sha256(onnx_bytes).hexdigest() != self.spec.model_sha256:
            raise ModelError(
                f"model bundle {self.bundle_dir}: {self.spec.model_file} does not match model_sha256 in bundle.json"
            )
        self._session = _make_session(onnx_bytes, threads, providers, self.bundle_dir)
        self._check_io()
        self.detector = self._load_detector(threads, providers, verify_checksum)
        if verify_checksum and self.spec.vocabulary_sha256:
            vocab = self.bundle_dir / self.spec.vocabulary_file
            try:
                digest = hashlib.sha256(vocab.read_bytes()).hexdigest()
            except OSError as exc:
                raise ModelError(f"model bundle {self.bundle_dir}: cannot read {self.spec.vocabulary_file}: {exc.strerror}") from None
            if digest != self.spec.vocabulary_sha256:
                raise ModelError(f"model bundle {self.bundle_dir}: {self.spec.vocabulary_file} does not match "
                                 "vocabulary_sha256 in bundle.json")
        size = self.spec.input.size
        self.input_size = (int(size[1]), int(size[0]))  # Pillow wants (width, height)
        # Normalisation folded into one multiply-add per pixel.
        std = np.asarray(self.spec.input.std, dtype=np.float32)
        self._scale = (1.0 / std).reshape(1, 1, 3)
        self._shift = (-np.asarray(self.spec.input.mean, dtype=np.float32) / std).reshape(1, 1, 3)

    @property
    def version(self) -> str:
        return self.spec.version

    def _load_detector(self, threads: int, providers: Sequence[str], verify_checksum: bool) -> "Detector | None":
        spec = self.spec.detector
        if spec is None:
            return None
        from tagd.detector import Detector

        path = self.bundle_dir / spec.model_file
        try:
            onnx_bytes = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"model bundle {self.bundle_dir}: cannot read {spec.model_file}: {exc.strerror}") from None
        if verify_checksum and hashlib.sha256(onnx_bytes).hexdigest() != spec.model_sha256:
            raise ModelError(f"model bundle {self.bundle_dir}: {spec.model_file} does not match the detector's "
                             "model_sha256 in bundle.json")
        # One photo per run (the graph's batch axis is 1): a second intra-op thread only adds
        # synchronisation (measured: 15 ms of CPU a photo on one thread, 22 on two). tagd.tagger
        # runs it beside the classifier instead, so both cores still work.
        session = _make_session(onnx_bytes, threads or 1, providers, self.bundle_dir)
        return Detector(spec, session, self.bundle_dir)

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        where = f"model bundle {self.bundle_dir}"
        if self.spec.input.name not in inputs:
            raise ModelError(f"{where}: graph has no input {self.spec.input.name!r} (has {sorted(inputs)})")
        for role, name in (("scores", self.spec.outputs.scores), ("embedding", self.spec.outputs.embedding)):
            if name not in outputs:
                raise ModelError(f"{where}: graph has no {role} output {name!r} (has {sorted(outputs)})")
        n_scores = outputs[self.spec.outputs.scores].shape[-1]
        if isinstance(n_scores, int) and n_scores != len(self.spec.labels):
            raise ModelError(f"{where}: scores output has {n_scores} columns, bundle lists {len(self.spec.labels)} labels")
        n_emb = outputs[self.spec.outputs.embedding].shape[-1]
        if isinstance(n_emb, int) and n_emb != self.spec.embedding_dim:
            raise ModelError(f"{where}: embedding output has {n_emb} dims, bundle says {self.spec.embedding_dim}")

    @property
    def short_side(self) -> int:
        """Short side the decoder must deliver for `views()`."""
        return min(self.input_size)

    def views(self, image: "PIL.Image.Image") -> np.ndarray:  # noqa: F821
        """RGB image with short side `short_side` -> (V, H, W, 3) normalised float32 views."""
        width, height = self.input_size
        mode = self.spec.input.resize
        if mode == "squash":
            from PIL import Image

            image = image.resize((width, height), Image.Resampling.BILINEAR)
        # Normalised once, in place, before cutting the crops (which overlap): a third of the
        # arithmetic of normalising the stacked views, 2.1 -> 0.8 ms a photo.
        arr = np.array(image, dtype=np.float32)  # a copy of its own, written in place below
        arr *= self._scale
        arr += self._shift
        if mode == "squash":
            crops = [arr]
        else:
            rows, cols = arr.shape[:2]
            # The short side already equals the input size, so only the long axis moves.
            middle = ((rows - height) // 2, (cols - width) // 2)
            if mode == "center-crop":
                offsets = [middle]
            else:
                offsets = [(0, 0), middle, (rows - height, cols - width)]
            crops = [arr[top:top + height, left:left + width] for top, left in offsets]
        return np.stack(crops)

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) normalised float32 -> (label scores (N, labels), raw embeddings (N, dim))."""
        nchw = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        scores, embedding = self._session.run(
            [self.spec.outputs.scores, self.spec.outputs.embedding], {self.spec.input.name: nchw}
        )
        return scores.astype(np.float32, copy=False), embedding.astype(np.float32, copy=False)


_session_lock = threading.Lock()


def _make_session(onnx_bytes: bytes, threads: int, providers: Sequence[str], where: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # The memory pattern pre-plans one block per input shape; off, the arena reuses buffers
    # across nodes: measured on this model, 164 vs 203 MB at 6 views, 211 vs 307 MB at 12, same
    # speed (299 vs 293 views/s).
    options.enable_mem_pattern = False
    # Decoding threads share the cores with inference: idle ORT workers must not spin.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = set(ort.get_available_providers())
    chosen = [p for p in providers if p in available]
    if not chosen:
        raise ModelError(f"none of the execution providers {list(providers)} is available (have {sorted(available)})")
    skipped = [p for p in providers if p not in available]
    if skipped:
        log.debug("execution providers not in this onnxruntime build, skipped: %s", ", ".join(skipped))
    with _session_lock:
        try:
            session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
            raise ModelError(f"model bundle {where}: onnxruntime cannot load the graph: {str(exc).splitlines()[0]}") from None
    log.info("model session: providers %s, intra-op threads %s", session.get_providers(), threads or "auto")
    return session
