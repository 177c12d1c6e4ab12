"""The tag vocabulary: human tags, their hierarchy and synonyms, and how model labels map to them.

A bundle's model scores *labels* (ImageNet's 1000 classes for the default model; a trained
model's own tags for a custom one). The vocabulary turns label scores into *tag* scores:
each tag owns a set of labels (its own and every descendant's), and its score is their
summed probability for a softmax model (P(cat) = sum over cat breeds) or their maximum for
independent sigmoid outputs.

A format-2 vocabulary (v2 bundles) also maps the detector's classes onto tags (a tag's
detector score is its best class's) and calibrates each tag: its fused score is the
probability that the tag is right, a logistic function of the classifier's evidence (its
score against the tag's own classifier threshold, in log-odds) and the detector's. The
hierarchy then holds both ways: a `capped` tag is never more likely than its parent (a beagle
is a dog: where the detector is sure there is no dog, no breed is written), and a parent is at
least as likely as its other children (a rocket is a vehicle, though the detector knows only
COCO's eight vehicles).

A third piece of evidence guards against the detector's guesses on what it was never taught:
it knows 80 kinds of things and calls a macaque a dog and a heron a person. The classifier
knows a thousand; where it is confident of a *rival* (a tag under the tag's `rival_root`, such
as "animal", that is neither the tag nor its ancestor or descendant: a monkey for "dog", any
animal for "person"), the calibration's `rival` weight lowers the tag's probability.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tagd.errors import ModelError

VOCAB_FORMATS = ("tagd-vocab/1", "tagd-vocab/2")
_EPS = 1e-4


@dataclass(frozen=True)
class TagInfo:
    name: str
    parents: tuple[str, ...]
    synonyms: tuple[str, ...]
    labels: tuple[int, ...]
    threshold: float
    weight: float = 1.0
    # Format 2: the detector's classes for this tag, where the classifier's own decision flips
    # (the log-odds origin of its evidence), and the calibration (bias, classifier, detector).
    detector_labels: tuple[int, ...] = ()
    classifier_threshold: float | None = None
    calibration: tuple[float, float, float, float] | None = None  # bias, classifier, detector, rival
    rival_root: str | None = None  # rivals are the classifier's tags under this one (not the tag's kin)
    capped: bool = False  # never more likely than its parent (a breed: the detector knows its parent whole)


@dataclass(frozen=True)
class ScoredTag:
    name: str
    score: float
    source: str = "model"


@dataclass
class Vocabulary:
    tags: list[TagInfo]
    n_labels: int
    aggregate: Literal["sum", "max"] = "sum"
    n_detector_labels: int = 0  # format 2
    suggestion_floor: float = 0.01
    max_suggestions: int = 20
    _index: dict[str, int] = field(init=False, repr=False)
    _matrix: np.ndarray = field(init=False, repr=False)
    _thresholds: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {t.name: i for i, t in enumerate(self.tags)}
        self._matrix = np.zeros((self.n_labels, len(self.tags)), dtype=np.float32)
        for j, tag in enumerate(self.tags):
            self._matrix[list(tag.labels), j] = 1.0
        self._weights = np.asarray([t.weight for t in self.tags], dtype=np.float32)
        self._thresholds = np.asarray([t.threshold for t in self.tags], dtype=np.float32)
        self._synonyms = {s.casefold(): t.name for t in self.tags for s in (t.name, *t.synonyms)}
        # `written`'s steps, shallow tags first so each sees its parents settled: per depth and
        # per parent slot (a tag may have several parents), the (children, parents) index pairs.
        self._depth = np.asarray([len(self.ancestors(t.name)) for t in self.tags], dtype=np.int64)
        self._path_steps = []
        for depth in range(1, int(self._depth.max(initial=0)) + 1):
            for slot in range(max((len(t.parents) for t in self.tags), default=0)):
                pairs = [(j, self._index[t.parents[slot]]) for j, t in enumerate(self.tags)
                         if self._depth[j] == depth and len(t.parents) > slot]
                if pairs:
                    self._path_steps.append(tuple(np.asarray(x, dtype=np.intp) for x in zip(*pairs)))
        self.fused = any(t.calibration is not None for t in self.tags)
        if self.fused:
            self._detector_matrix = np.zeros((max(1, self.n_detector_labels), len(self.tags)), dtype=np.float32)
            for j, tag in enumerate(self.tags):
                self._detector_matrix[list(tag.detector_labels), j] = 1.0
            cal = np.asarray([t.calibration or (0.0, 1.0, 0.0, 0.0) for t in self.tags], dtype=np.float64)
            self._bias, self._w_classifier, self._w_detector, self._w_rival = cal.T
            self._has_classifier = np.asarray([bool(t.labels) for t in self.tags])
            self._has_detector = np.asarray([bool(t.detector_labels) for t in self.tags])
            self._classifier_origin = np.asarray([_logit(t.classifier_threshold or t.threshold) for t in self.tags])
            # Caps parents first (each sees its parent already capped), lifts children first.
            depth = {t.name: len(self.ancestors(t.name)) for t in self.tags}
            order = sorted(enumerate(self.tags), key=lambda x: depth[x[1].name])
            self._caps = [(j, self._index[t.parents[0]]) for j, t in order if t.parents and t.capped]
            self._lifts = [(j, self._index[t.parents[0]]) for j, t in reversed(order) if t.parents and not t.capped]
            self._rivals = [(j, np.asarray(self.rivals(t.name), dtype=np.intp)) for j, t in enumerate(self.tags)
                            if t.rival_root]
        # Each detector class's own tag: the narrowest one holding it ("dining table" -> table).
        self.detector_tags: list[str] = []
        for label in range(self.n_detector_labels):
            holders = [t for t in self.tags if label in t.detector_labels]
            self.detector_tags.append(min(holders, key=lambda t: len(t.detector_labels)).name if holders else "")

    @classmethod
    def load(cls, path: Path, n_labels: int, aggregate: Literal["sum", "max"] = "sum",
             n_detector_labels: int = 0) -> "Vocabulary":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"vocabulary {path}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"vocabulary {path}: unreadable ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") not in VOCAB_FORMATS:
            raise ModelError(f"vocabulary {path}: not a {' or '.join(VOCAB_FORMATS)} file")
        if raw.get("n_labels") != n_labels:
            raise ModelError(f"vocabulary {path}: written for {raw.get('n_labels')} labels, the model has {n_labels}")
        fused = raw["format"] == "tagd-vocab/2"
        if fused and raw.get("n_detector_labels", 0) != n_detector_labels:
            raise ModelError(f"vocabulary {path}: written for {raw.get('n_detector_labels')} detector labels, "
                             f"the bundle's detector has {n_detector_labels}")
        tags = []
        try:
            for item in raw["tags"]:
                labels = tuple(int(i) for i in item["labels"])
                detector = tuple(int(i) for i in item.get("detector_labels", ())) if fused else ()
                if (labels and (min(labels) < 0 or max(labels) >= n_labels)) or (not labels and not detector):
                    raise ModelError(f"vocabulary {path}: tag {item['name']!r} has label indices outside 0..{n_labels - 1}")
                if detector and (min(detector) < 0 or max(detector) >= n_detector_labels):
                    raise ModelError(f"vocabulary {path}: tag {item['name']!r} has detector labels outside "
                                     f"0..{n_detector_labels - 1}")
                calibration = item.get("calibration") if fused else None
                rival_root = item.get("rival_root") if fused else None
                tags.append(TagInfo(
                    name=str(item["name"]),
                    parents=tuple(item.get("parents", ())),
                    synonyms=tuple(item.get("synonyms", ())),
                    labels=labels,
                    threshold=float(item["threshold"]),
                    weight=float(item.get("weight", 1.0)),
                    detector_labels=detector,
                    classifier_threshold=float(item["classifier_threshold"]) if fused and labels else None,
                    calibration=(float(calibration["bias"]), float(calibration["classifier"]),
                                 float(calibration["detector"]), float(calibration.get("rival", 0.0)))
                    if calibration else (0.0, 1.0, 0.0, 0.0) if fused else None,
                    rival_root=str(rival_root) if rival_root else None,
                    capped=bool(item.get("capped", False)) if fused else False,
                ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"vocabulary {path}: malformed tag entry ({exc!r})") from None
        names = {t.name for t in tags}
        for tag in tags:
            missing = [p for p in tag.parents if p not in names]
            if missing:
                raise ModelError(f"vocabulary {path}: tag {tag.name!r} has unknown parent {missing[0]!r}")
            if tag.rival_root and tag.rival_root not in names:
                raise ModelError(f"vocabulary {path}: tag {tag.name!r} has unknown rival_root {tag.rival_root!r}")
        return cls(
            tags=tags,
            n_labels=n_labels,
            aggregate=aggregate,
            suggestion_floor=float(raw.get("suggestion_floor", 0.01)),
            max_suggestions=int(raw.get("max_suggestions", 20)),
            n_detector_labels=n_detector_labels if fused else 0,
        )

    def __len__(self) -> int:
        return len(self.tags)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> TagInfo:
        return self.tags[self._index[name]]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tags]

    def canonical(self, word: str) -> str | None:
        """The tag a word or synonym stands for ("couch" -> "sofa"), or None."""
        return self._synonyms.get(word.casefold())

    def ancestors(self, name: str) -> list[str]:
        """Parents first, then their parents; each once."""
        out: list[str] = []
        frontier = list(self[name].parents)
        while frontier:
            parent = frontier.pop(0)
            if parent not in out:
                out.append(parent)
                frontier.extend(self[parent].parents)
        return out

    def path(self, name: str) -> str:
        """Hierarchical keyword as Lightroom writes it: `animal|cat`."""
        chain = [name]
        tag = self[name]
        while tag.parents:
            chain.append(tag.parents[0])
            tag = self[tag.parents[0]]
        return "|".join(reversed(chain))

    def tag_scores(self, label_scores: np.ndarray) -> np.ndarray:
        """(N, labels) -> (N, tags) scores in [0, 1]."""
        label_scores = np.asarray(label_scores, dtype=np.float32)
        if self.aggregate == "sum":
            scores = label_scores @ self._matrix
        else:
            scores = np.stack(
                [label_scores[:, list(t.labels)].max(axis=1) if t.labels else np.zeros(len(label_scores))
                 for t in self.tags], axis=1
            )
        return np.clip(scores * self._weights, 0.0, 1.0)

    def rivals(self, name: str) -> list[int]:
        """The tags whose confident classifier evidence speaks against `name`: those under its
        rival_root (the root included) with classifier classes, not `name`'s ancestors or descendants."""
        tag = self[name]
        if not tag.rival_root:
            return []
        kin = {name, *self.ancestors(name)}
        out = []
        for j, other in enumerate(self.tags):
            lineage = {other.name, *self.ancestors(other.name)}
            if other.labels and tag.rival_root in lineage and other.name not in kin and name not in lineage:
                out.append(j)
        return out

    def evidence(self, classifier_scores: np.ndarray, detector_scores: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the calibration weighs, each (N, tags) in log-odds: the classifier's tag score
        against the tag's classifier threshold (x_c; 0 without classifier classes), the
        detector's best class for the tag (x_d; 0 without detector classes, or without a
        detector run), and the most confident rival's x_c where above its own threshold (x_r)."""
        c = np.clip(np.asarray(classifier_scores, dtype=np.float64), _EPS, 1 - _EPS)
        relative = _logit(c) - self._classifier_origin
        x_c = np.where(self._has_classifier, relative, 0.0)
        if detector_scores is None:  # a v2 vocabulary run without its detector: classifier only
            x_d = np.zeros_like(x_c)
        else:
            d = np.asarray(detector_scores, dtype=np.float32)
            per_tag = (d[:, :, None] * self._detector_matrix[None]).max(axis=1)  # scores are >= 0: max of the mask
            x_d = np.where(self._has_detector, _logit(np.clip(per_tag.astype(np.float64), _EPS, 1 - _EPS)), 0.0)
        x_r = np.zeros_like(x_c)
        for j, rivals in self._rivals:
            if len(rivals):
                x_r[:, j] = np.maximum(0.0, relative[:, rivals].max(axis=1))
        return x_c, x_d, x_r

    def fuse(self, classifier_scores: np.ndarray, detector_scores: np.ndarray | None) -> np.ndarray:
        """(N, tags) classifier tag scores and (N, detector labels) detector scores -> (N, tags)
        calibrated probabilities. A format-1 vocabulary returns the classifier scores."""
        if not self.fused:
            return classifier_scores
        x_c, x_d, x_r = self.evidence(classifier_scores, detector_scores)
        z = self._bias + self._w_classifier * x_c + self._w_detector * x_d + self._w_rival * x_r
        return self.cap(0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)

    def cap(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, tags) made consistent with the hierarchy, in place: capped tags no more likely
        than their parent, other parents at least as likely as their children."""
        for child, parent in self._caps:
            probabilities[:, child] = np.minimum(probabilities[:, child], probabilities[:, parent])
        for child, parent in self._lifts:
            probabilities[:, parent] = np.maximum(probabilities[:, parent], probabilities[:, child])
        return probabilities

    def written(self, tag_scores: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
        """Which tags are written, (tags,) or (N, tags) booleans: those whose score clears their
        threshold (`thresholds`: the vocabulary's, or one per tag or per photo and tag) and whose
        parents are written too.

        A tag is written with its whole path (`vehicle|boat|ship`), so a child may not assert a
        parent that stays below the parent's own threshold: an uncalibrated "ship" at a low bar
        would otherwise make a boat that the boat's calibration does not believe in, and that
        `tagd find boat` returns. Such a tag stays a suggestion."""
        limit = self._thresholds if thresholds is None else thresholds
        ok = np.asarray(tag_scores >= limit)
        for children, parents in self._path_steps:
            ok[..., children] &= ok[..., parents]
        return ok

    def select(self, tag_scores: np.ndarray, max_tags: int = 10, min_score: float = 0.0) -> list[ScoredTag]:
        """The tags of one photo that are `written`, best first.

        Ties (a parent holding exactly its only child's mass) list the more specific tag first.
        """
        keep = np.nonzero(self.written(tag_scores) & (tag_scores >= min_score))[0]
        return [ScoredTag(self.tags[i].name, round(float(tag_scores[i]), 4))
                for i in self.ranked(keep, tag_scores, max_tags)]

    def ranked(self, keep: np.ndarray, tag_scores: np.ndarray, max_tags: int) -> list[int]:
        """Of the written tags `keep` (indices), the best `max_tags`, best first; ties list the
        more specific tag first. Which tags make the cut is decided parents first, so that it
        never falls between a child and the parent it ties with."""
        score = {int(i): round(float(tag_scores[i]), 4) for i in keep}
        kept = sorted(score, key=lambda i: (-score[i], self._depth[i], self.tags[i].name))[:max_tags]
        return sorted(kept, key=lambda i: (-score[i], -self._depth[i], self.tags[i].name))

    def suggest(self, tag_scores: np.ndarray, exclude: set[str], limit: int | None = None) -> list[ScoredTag]:
        """Weaker candidates: score >= the vocabulary's suggestion floor, best first."""
        limit = self.max_suggestions if limit is None else limit
        order = np.argsort(-tag_scores, kind="stable")
        out = []
        for i in order:
            if tag_scores[i] < self.suggestion_floor or len(out) >= limit:
                break
            if self.tags[i].name not in exclude:
                out.append(ScoredTag(self.tags[i].name, round(float(tag_scores[i]), 4)))
        return out


def _logit(p: float | np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))
