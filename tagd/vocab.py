"""The tag vocabulary: human tags, their hierarchy and synonyms, and how model labels map to them.

A bundle's model scores *labels* (ImageNet's 1000 classes for the default model; a trained
model's own tags for a custom one). The vocabulary turns label scores into *tag* scores:
each tag owns a set of labels (its own and every descendant's), and its score is their
summed probability for a softmax model (P(cat) = sum over cat breeds) or their maximum for
independent sigmoid outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tagd.errors import ModelError

VOCAB_FORMAT = "tagd-vocab/1"


@dataclass(frozen=True)
class TagInfo:
    name: str
    parents: tuple[str, ...]
    synonyms: tuple[str, ...]
    labels: tuple[int, ...]
    threshold: float
    weight: float = 1.0


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

    @classmethod
    def load(cls, path: Path, n_labels: int, aggregate: Literal["sum", "max"] = "sum") -> "Vocabulary":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"vocabulary {path}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"vocabulary {path}: unreadable ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != VOCAB_FORMAT:
            raise ModelError(f"vocabulary {path}: not a {VOCAB_FORMAT} file")
        if raw.get("n_labels") != n_labels:
            raise ModelError(f"vocabulary {path}: written for {raw.get('n_labels')} labels, the model has {n_labels}")
        tags = []
        try:
            for item in raw["tags"]:
                labels = tuple(int(i) for i in item["labels"])
                if not labels or min(labels) < 0 or max(labels) >= n_labels:
                    raise ModelError(f"vocabulary {path}: tag {item['name']!r} has label indices outside 0..{n_labels - 1}")
                tags.append(TagInfo(
                    name=str(item["name"]),
                    parents=tuple(item.get("parents", ())),
                    synonyms=tuple(item.get("synonyms", ())),
                    labels=labels,
                    threshold=float(item["threshold"]),
                    weight=float(item.get("weight", 1.0)),
                ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"vocabulary {path}: malformed tag entry ({exc!r})") from None
        names = {t.name for t in tags}
        for tag in tags:
            missing = [p for p in tag.parents if p not in names]
            if missing:
                raise ModelError(f"vocabulary {path}: tag {tag.name!r} has unknown parent {missing[0]!r}")
        return cls(
            tags=tags,
            n_labels=n_labels,
            aggregate=aggregate,
            suggestion_floor=float(raw.get("suggestion_floor", 0.01)),
            max_suggestions=int(raw.get("max_suggestions", 20)),
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
                [label_scores[:, list(t.labels)].max(axis=1) for t in self.tags], axis=1
            )
        return np.clip(scores * self._weights, 0.0, 1.0)

    def select(self, tag_scores: np.ndarray, max_tags: int = 10, min_score: float = 0.0) -> list[ScoredTag]:
        """The tags of one photo whose score clears their threshold, best first.

        Ties (a parent holding exactly its only child's mass) list the more specific tag first.
        """
        keep = np.nonzero((tag_scores >= self._thresholds) & (tag_scores >= min_score))[0]
        depth = {i: len(self.ancestors(self.tags[i].name)) for i in keep}
        order = sorted(keep, key=lambda i: (-round(float(tag_scores[i]), 4), -depth[i], self.tags[i].name))
        return [ScoredTag(self.tags[i].name, round(float(tag_scores[i]), 4)) for i in order[:max_tags]]

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
