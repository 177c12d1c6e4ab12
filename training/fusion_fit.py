"""Fit the calibration that fuses the classifier's and the detector's evidence into one
probability per tag (the `calibration` of a format-2 vocabulary; tagd.vocab.Vocabulary.fuse).

For a tag t on a photo the evidence (tagd.vocab.Vocabulary.evidence, the one definition the
runtime uses too) is x_c, the classifier's tag score as log-odds against the tag's own
classifier threshold (0 where the classifier has no class for t); x_d, the detector's best
class score for t as log-odds (0 where it has none); and x_r, the most confident of the tag's
rivals (a monkey for "dog": tagd.vocab). The fused score is

    P(t) = sigmoid(b_g + delta_t + w_c,g * x_c + w_d,g * x_d + w_r,g * x_r)

with one set of weights per group g (tags both models know; tags only the detector knows)
and a per-tag offset delta_t, shrunk towards 0 (ridge) so that a tag with few labelled photos
keeps its group's calibration. Tags only the classifier knows keep (0, 1, 0, 0): their decision
is exactly the classifier's, as before the detector (no labelled photos say otherwise).

The labels are a photo's COCO categories mapped to tags (and, up the hierarchy, to their
ancestors), and on photos from outside COCO also the vocabulary tags a person gave them: only
tags with detector classes are fitted, since only those have labels for every photo.
Pure numpy; Newton's method on the penalised log-likelihood (a few hundred parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-4
GROUPS = ("both", "detector")
FEATURES = 3  # x_c, x_d, x_r
PRIOR = (0.0, 1.0, 1.0, 0.0)  # bias, w_c, w_d, w_r: each model's own decision, rivals ignored
TAG_WEIGHT_RIDGE = 8.0


@dataclass(frozen=True)
class Evidence:
    """Per photo x tag: the three log-odds features, which tags are fitted, and the truth."""

    x_c: np.ndarray  # (N, T)
    x_d: np.ndarray  # (N, T)
    x_r: np.ndarray  # (N, T)
    truth: np.ndarray  # (N, T) bool
    group: np.ndarray  # (T,) index into GROUPS, -1 for tags not fitted

    @property
    def features(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x_c, self.x_d, self.x_r


def subset(ev: Evidence, rows: np.ndarray) -> Evidence:
    return Evidence(ev.x_c[rows], ev.x_d[rows], ev.x_r[rows], ev.truth[rows], ev.group)


def concatenate(*parts: Evidence) -> Evidence:
    return Evidence(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("x_c", "x_d", "x_r", "truth")),
                    parts[0].group)


def groups(has_classifier: np.ndarray, has_detector: np.ndarray) -> np.ndarray:
    return np.where(has_detector & has_classifier, 0, np.where(has_detector, 1, -1))


def fit(ev: Evidence, rows: np.ndarray | None = None, ridge: float = 2.0, weight_ridge: float = 1.0,
        tag_weight_ridge: float = TAG_WEIGHT_RIDGE, iterations: int = 100) -> np.ndarray:
    """(T, 4) calibration (bias, classifier, detector and rival weights) per tag, fitted on the
    photos `rows` (all by default). Unfitted tags get (0, 1, 0, 0)."""
    rows = np.arange(len(ev.truth)) if rows is None else rows
    tags = np.nonzero(ev.group >= 0)[0]
    n_groups = len(GROUPS)
    # Parameters: per group (bias, w_c, w_d, w_r); one bias offset per fitted tag; one offset of
    # each of the classifier's and the detector's weights per fitted tag (the classifier is
    # reliable for "animal" or "clothing", a proxy for "person"), shrunk harder.
    width = 1 + FEATURES
    n = width * n_groups + 3 * len(tags)
    prior = np.zeros(n)
    for g in range(n_groups):
        prior[width * g: width * (g + 1)] = PRIOR
    theta = prior.copy()
    columns = [f[np.ix_(rows, tags)].ravel() for f in ev.features]
    ys = ev.truth[np.ix_(rows, tags)].ravel().astype(np.float64)
    group_of = np.tile(ev.group[tags], len(rows))
    which = np.tile(np.arange(len(tags)), len(rows))
    # Design matrix, sparse in spirit: 4 group columns + 1 tag column per row.
    x = np.zeros((len(ys), n))
    for g in range(n_groups):
        mask = group_of == g
        x[mask, width * g] = 1.0
        for k, column in enumerate(columns):
            x[mask, width * g + 1 + k] = column[mask]
    x[np.arange(len(ys)), width * n_groups + which] = 1.0
    x[np.arange(len(ys)), width * n_groups + len(tags) + which] = columns[0]
    x[np.arange(len(ys)), width * n_groups + 2 * len(tags) + which] = columns[1]
    # Ridge towards the prior: the per-tag offsets towards 0 (`ridge`), the group weights
    # towards PRIOR more lightly; on photos the detector was trained on, its evidence
    # separates the classes almost perfectly and unpenalised weights would run off to infinity.
    penalty = np.full(n, ridge)
    penalty[:width * n_groups] = weight_ridge
    penalty[width * n_groups + len(tags):] = tag_weight_ridge

    def loss(t: np.ndarray) -> float:
        z = x @ t
        return float(np.sum(np.logaddexp(0.0, z) - ys * z) + 0.5 * np.sum(penalty * (t - prior) ** 2))

    current = loss(theta)
    for _ in range(iterations):
        p = _sigmoid(x @ theta)
        gradient = x.T @ (p - ys) + penalty * (theta - prior)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-4:  # Newton with step halving: the loss never goes up
            candidate = theta - scale * step
            value = loss(candidate)
            if value <= current:
                break
            scale /= 2
        else:
            break
        theta, previous, current = candidate, current, value
        if previous - current < 1e-9:
            break
    out = np.tile([0.0, 1.0, 0.0, 0.0], (len(ev.group), 1))
    for k, t in enumerate(tags):
        g = ev.group[t]
        out[t] = theta[width * g: width * (g + 1)]
        out[t, 0] += theta[width * n_groups + k]
        out[t, 1] += theta[width * n_groups + len(tags) + k]
        out[t, 2] += theta[width * n_groups + 2 * len(tags) + k]
    return np.round(out, 4)


def apply(ev: Evidence, calibration: np.ndarray) -> np.ndarray:
    """(N, T) fused probabilities, before the hierarchy cap (tagd.vocab applies that)."""
    return _sigmoid(calibration[:, 0] + calibration[:, 1] * ev.x_c + calibration[:, 2] * ev.x_d
                    + calibration[:, 3] * ev.x_r)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|
