"""Multi-label losses that handle class imbalance.

Most tags are absent from most photos, so a plain BCE is dominated by easy negatives and
learns to say "no" to rare tags.

- `weighted` (default): BCE with each tag's positives weighted by sqrt(negatives/positives),
  capped at 10 — the square root and the cap keep a tag with three photos from being
  fitted to those three alone;
- `asymmetric`: ASL (Ridnik et al., ICCV 2021): easy negatives are focused away
  (gamma_neg = 4) and very confident negatives are dropped (probability margin 0.05);
  positives keep the plain log loss (gamma_pos = 0);
- `bce`: plain BCE, for comparison.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LOSSES = ("weighted", "asymmetric", "bce")
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def positive_weights(labels: torch.Tensor, cap: float = 10.0) -> torch.Tensor:
    pos = labels.sum(0)
    neg = labels.shape[0] - pos
    return torch.sqrt(neg.clamp(min=1.0) / pos.clamp(min=1.0)).clamp(max=cap)


def asymmetric_loss(logits: torch.Tensor, target: torch.Tensor, gamma_neg: float = 4.0,
                    gamma_pos: float = 0.0, margin: float = 0.05) -> torch.Tensor:
    p = torch.sigmoid(logits)
    p_neg = (p - margin).clamp(min=0.0)
    pos = target * F.logsigmoid(logits) * (1.0 - p).pow(gamma_pos)
    neg = (1.0 - target) * torch.log((1.0 - p_neg).clamp(min=1e-8)) * p_neg.pow(gamma_neg)
    return -(pos + neg).sum(dim=1).mean() / target.shape[1]


def make_loss(kind: str, train_labels: torch.Tensor) -> Loss:
    if kind == "bce":
        return lambda logits, target: F.binary_cross_entropy_with_logits(logits, target)
    if kind == "weighted":
        weights = positive_weights(train_labels)
        return lambda logits, target: F.binary_cross_entropy_with_logits(logits, target, pos_weight=weights.to(logits.device))
    if kind == "asymmetric":
        return asymmetric_loss
    raise ValueError(f"unknown loss {kind!r} (one of {', '.join(LOSSES)})")
