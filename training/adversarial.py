"""Adversarial training of the tagger against a tag-set discriminator.

After Quintanilla, Rawat, Sakryukin, Shah and Kankanhalli, "Adversarial Learning for
Personalized Tag Recommendation" (IEEE Trans. Multimedia, 2020): a discriminator D learns
to tell the tag vectors the tagger predicts from tag sets people actually gave, and the
tagger is trained to fool it as well as to fit each photo's labels. Per-tag losses treat
tags independently; D sees whole tag sets, so fooling it pushes predictions toward
realistic combinations (co-occurring tags together, exclusive ones apart, a sensible
number of tags).

Two details keep D honest:
- real tag sets are 0/1 and predictions are not, so D could win by spotting fractions.
  Both go through the same relaxed-Bernoulli (Gumbel-sigmoid) sampler, real sets after
  label smoothing, so D only sees samples of tag sets and has to judge their structure;
- `conditional=True` also shows D a projection of the photo's embedding, so it judges
  "are these tags right for this photo" rather than "is this a plausible tag set".

The tagger's adversarial term is the non-saturating GAN loss, weighted by `weight` and
switched on after a warm-up, when the plain predictions are already sensible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AdversarialConfig:
    weight: float = 0.1
    conditional: bool = False
    hidden: int = 256
    lr: float = 1e-3
    temperature: float = 0.5
    smoothing: float = 0.05
    warmup: float = 0.3  # share of the training steps before the adversarial term starts


class TagSetDiscriminator(nn.Module):
    def __init__(self, n_tags: int, embedding_dim: int, config: AdversarialConfig) -> None:
        super().__init__()
        self.conditional = config.conditional
        extra = 64 if config.conditional else 0
        self.project = nn.Linear(embedding_dim, extra) if config.conditional else None
        self.net = nn.Sequential(
            nn.Linear(n_tags + extra, config.hidden), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(config.hidden, config.hidden // 2), nn.LeakyReLU(0.2),
            nn.Linear(config.hidden // 2, 1),
        )

    def forward(self, tags: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        if self.project is not None and embedding is not None:
            # The photo conditions D; D must not train the tagger's features through it.
            tags = torch.cat([tags, self.project(embedding.detach())], dim=1)
        return self.net(tags).squeeze(1)


def relaxed_bernoulli(p: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    u = torch.rand(p.shape, generator=generator, device=p.device if generator is None else "cpu").to(p.device)
    u = u.clamp(1e-6, 1 - 1e-6)
    noise = torch.log(u) - torch.log1p(-u)
    return torch.sigmoid((torch.log(p) - torch.log1p(-p) + noise) / temperature)


class Adversary:
    """Owns D and its optimiser; one `step` per tagger step."""

    def __init__(self, n_tags: int, embedding_dim: int, config: AdversarialConfig, seed: int, device: str = "cpu") -> None:
        self.config = config
        self.d = TagSetDiscriminator(n_tags, embedding_dim, config).to(device)
        self.opt = torch.optim.Adam(self.d.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.generator = torch.Generator().manual_seed(seed + 7919)
        self.last_accuracy = float("nan")

    def _smooth(self, y: torch.Tensor) -> torch.Tensor:
        eps = self.config.smoothing
        return y * (1 - 2 * eps) + eps

    def step(self, probs: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor | None) -> torch.Tensor:
        """Train D once on this batch; return the tagger's adversarial loss (to add, weighted)."""
        cfg = self.config
        cond = embedding if cfg.conditional else None
        self.d.train()
        real = relaxed_bernoulli(self._smooth(labels), cfg.temperature, self.generator)
        fake = relaxed_bernoulli(self._smooth(probs.detach()), cfg.temperature, self.generator)
        real_logit, fake_logit = self.d(real, cond), self.d(fake, cond)
        d_loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        self.opt.zero_grad()
        d_loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.last_accuracy = float(((real_logit > 0).float().mean() + (fake_logit < 0).float().mean()) / 2)
        # The tagger's turn: gradients flow through the relaxed sample into the predictions.
        fake = relaxed_bernoulli(self._smooth(probs), cfg.temperature, self.generator)
        for p in self.d.parameters():
            p.requires_grad_(False)
        g_logit = self.d(fake, cond)
        for p in self.d.parameters():
            p.requires_grad_(True)
        return F.softplus(-g_logit).mean()
