"""What the packaged model already knows, as features and a starting point for the head.

With a few photos per tag a linear head on the 1280-d embedding learns little (on
coco128-dev, 5-fold, its mean AP stays below the packaged model's). But the packaged model
already scores 216 human tags from ImageNet: its log tag scores are 216 semantic features,
computed from the same embedding through the ImageNet classifier and the packaged
vocabulary, and a trained tag that matches a packaged one ("people" ~ "person") can start
from that tag's score. The head learns corrections on top, which data can overrule.

Everything here is a fixed function of the embedding, so it goes into the exported graph
and tagd needs nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from training.dataset import TagDef

if TYPE_CHECKING:
    from tagd.vocab import Vocabulary

FLOOR = 1e-4  # log of a tag score is taken above this floor: no -inf, and noise below it is noise


@dataclass
class Prior:
    fc_weight: np.ndarray  # (1000, dim) ImageNet classifier
    fc_bias: np.ndarray  # (1000,)
    vocab_matrix: np.ndarray  # (1000, S) packaged vocabulary: tag j sums classes i with M[i, j] = 1
    vocab_weight: np.ndarray  # (S,) the packaged tags' score weights (person x4)
    names: list[str]  # the packaged tags
    index: np.ndarray  # (T,) packaged tag that each trained tag starts from, or -1

    @property
    def matched(self) -> dict[int, str]:
        return {t: self.names[int(j)] for t, j in enumerate(self.index) if j >= 0}

    def tag_scores(self, embedding: np.ndarray) -> np.ndarray:
        """(..., dim) embeddings -> (..., S) the packaged model's tag scores, as tagd computes them."""
        logits = embedding.astype(np.float64) @ self.fc_weight.T.astype(np.float64) + self.fc_bias
        logits -= logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=-1, keepdims=True)
        return np.clip((p @ self.vocab_matrix) * self.vocab_weight, 0.0, 1.0).astype(np.float32)

    def log_scores(self, embedding: np.ndarray) -> np.ndarray:
        """(..., dim) -> (..., S) log tag scores above FLOOR: the head's semantic features."""
        return np.log(np.clip(self.tag_scores(embedding), FLOOR, 1.0)).astype(np.float32)


def match_tag(tag: TagDef, vocab: Vocabulary) -> str | None:
    """The packaged tag a trained tag corresponds to, by name or synonym, as evaluate.py maps."""
    from training.measuring import LABEL_SYNONYMS

    for word in (tag.name, *tag.synonyms):
        for candidate in (word, word.replace("_", " "), word[:-1] if word.endswith("s") and len(word) > 3 else word):
            mapped = LABEL_SYNONYMS.get(candidate)
            if mapped and mapped[0] in vocab:
                return mapped[0]
            canonical = vocab.canonical(candidate)
            if canonical:
                return canonical
    return None


def load_prior(tags: Sequence[TagDef]) -> Prior:
    """Needs the `train` extra (the ImageNet classifier's weights come from the PyTorch wheel)."""
    from tagd.model import Model, float_bundle_dir
    from tagd.tagger import load_vocabulary
    from training.reference import reference_net

    model = Model(float_bundle_dir(), threads=1)
    vocab = load_vocabulary(model)
    if vocab.aggregate != "sum" or vocab.n_labels != 1000:
        raise ValueError("the packaged vocabulary is not a softmax sum over 1000 classes; no prior")
    net = reference_net()
    fc_w = net._fc.weight.detach().cpu().numpy().astype(np.float32)
    fc_b = net._fc.bias.detach().cpu().numpy().astype(np.float32)
    matrix = np.zeros((vocab.n_labels, len(vocab)), dtype=np.float32)
    for j, t in enumerate(vocab.tags):
        matrix[list(t.labels), j] = 1.0
    weight = np.asarray([t.weight for t in vocab.tags], dtype=np.float32)
    index = np.asarray([vocab.names.index(m) if (m := match_tag(t, vocab)) else -1 for t in tags], dtype=np.int64)
    return Prior(fc_w, fc_b, matrix, weight, vocab.names, index)
