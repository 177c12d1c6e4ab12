"""The tagger: EfficientNet-Lite0 backbone -> pooled embedding -> multi-label sigmoid head.

`TagHead` maps a 1280-d embedding to one logit per trained tag:

    logit = W · standardise(e) + b                      learned from your photos
          + U · log s(e)  +  a ⊙ log s_match(e)         from the packaged model (training/prior.py)

where s(e) are the packaged model's 216 tag scores. W starts at zero and a at one, so
before training every tag that has a packaged match ranks photos exactly as the packaged
model does. `TaggerNet` puts the backbone in front (for fine-tuning and for export);
`ExportGraph` is what goes into the ONNX file: image -> (sigmoid scores, embedding).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.prior import FLOOR, Prior
from training.reference import reference_net


class TagHead(nn.Module):
    def __init__(self, dim: int, n_tags: int, mean: np.ndarray, std: np.ndarray,
                 prior: Prior | None = None, prevalence: np.ndarray | None = None) -> None:
        super().__init__()
        self.dim, self.n_tags = dim, n_tags
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, dim))
        self.register_buffer("inv_std", 1.0 / torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-6).reshape(1, dim))
        self.linear = nn.Linear(dim, n_tags)
        nn.init.zeros_(self.linear.weight)
        bias = np.zeros(n_tags, dtype=np.float32)
        if prevalence is not None:
            # Tags with no packaged match start at their base rate, the best constant guess.
            p = np.clip(np.asarray(prevalence, dtype=np.float64), 1e-3, 1 - 1e-3)
            bias = np.log(p / (1 - p)).astype(np.float32)
        self.has_prior = prior is not None
        if prior is not None:
            matched = prior.index >= 0
            bias[matched] = 0.0  # sigmoid(log s) ~ s: start at the packaged score itself
            self.register_buffer("fc_weight", torch.as_tensor(prior.fc_weight))
            self.register_buffer("fc_bias", torch.as_tensor(prior.fc_bias))
            self.register_buffer("vocab_matrix", torch.as_tensor(prior.vocab_matrix))
            self.register_buffer("vocab_weight", torch.as_tensor(prior.vocab_weight).reshape(1, -1))
            select = np.zeros((prior.vocab_matrix.shape[1], n_tags), dtype=np.float32)
            for t, j in enumerate(prior.index):
                if j >= 0:
                    select[j, t] = 1.0
            self.register_buffer("select", torch.as_tensor(select))
            self.semantic = nn.Linear(select.shape[0], n_tags, bias=False)
            nn.init.zeros_(self.semantic.weight)
            self.prior_scale = nn.Parameter(torch.ones(n_tags))
        with torch.no_grad():
            self.linear.bias.copy_(torch.as_tensor(bias))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "TagHead":
        """Rebuild a head saved with `torch.save(head.state_dict(), ...)` (a run's head.pt)."""
        dim = state["mean"].shape[1]
        n_tags = state["linear.weight"].shape[0]
        prior = None
        if "select" in state:
            index = np.full(n_tags, -1, dtype=np.int64)
            rows, cols = np.nonzero(state["select"].numpy())
            index[cols] = rows
            prior = Prior(state["fc_weight"].numpy(), state["fc_bias"].numpy(), state["vocab_matrix"].numpy(),
                          state["vocab_weight"].numpy().reshape(-1), [], index)
        head = cls(dim, n_tags, np.zeros(dim, np.float32), np.ones(dim, np.float32), prior=prior)
        head.load_state_dict(state)
        return head.eval()

    def semantic_features(self, embedding: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(embedding @ self.fc_weight.T + self.fc_bias, dim=-1)
        return torch.log(torch.clamp((p @ self.vocab_matrix) * self.vocab_weight, FLOOR, 1.0))

    def forward(self, embedding: torch.Tensor, semantic: torch.Tensor | None = None) -> torch.Tensor:
        """`semantic`: `semantic_features(embedding)` if already computed. They are a fixed
        function of the embedding, so training on cached embeddings computes them once
        instead of running the 1000-class classifier at every step."""
        logits = self.linear((embedding - self.mean) * self.inv_std)
        if self.has_prior:
            l = self.semantic_features(embedding) if semantic is None else semantic
            logits = logits + self.semantic(l) + self.prior_scale * (l @ self.select)
        return logits

    def penalty(self, l2: float) -> torch.Tensor:
        """L2 on what is learned from the photos; the semantic weights are held closer to zero
        because 216 correlated features overfit a few photos faster than the embedding does."""
        out = l2 * self.linear.weight.pow(2).sum()
        if self.has_prior:
            out = out + 10.0 * l2 * self.semantic.weight.pow(2).sum()
        return out


class Backbone(nn.Module):
    """EfficientNet-Lite0 up to the pooled embedding, with its last `trainable` blocks free."""

    def __init__(self, net: nn.Module, trainable: int = 0) -> None:
        super().__init__()
        self.net = net
        self.set_trainable(trainable)

    def set_trainable(self, blocks: int) -> None:
        self.trainable = blocks
        for p in self.net.parameters():
            p.requires_grad_(False)
        if blocks > 0:
            for module in [*self.net._blocks[-blocks:], self.net._conv_head, self.net._bn1]:
                for p in module.parameters():
                    p.requires_grad_(True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        net = self.net
        blocks = list(net._blocks)
        first_free = len(blocks) - self.trainable if self.trainable > 0 else len(blocks)
        # The frozen part runs without building a graph: most of the network, none of the cost.
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable > 0 and first_free == 0):
            x = net._swish(net._bn0(net._conv_stem(image)))
        for idx, block in enumerate(blocks):
            rate = net._global_params.drop_connect_rate
            rate = rate * float(idx) / len(blocks) if rate else rate
            with torch.set_grad_enabled(torch.is_grad_enabled() and idx >= first_free):
                x = block(x, drop_connect_rate=rate)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable > 0):
            x = net._swish(net._bn1(net._conv_head(x)))
        return x.mean(dim=(2, 3))

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        # BatchNorm statistics stay ImageNet's: a CPU batch of 16 photos would only add noise.
        for m in self.net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        # Frozen blocks must compute exactly what the cached embeddings hold: no drop-connect.
        blocks = list(self.net._blocks)
        for block in blocks[: len(blocks) - self.trainable] if self.trainable > 0 else blocks:
            block.eval()
        return self


class TaggerNet(nn.Module):
    def __init__(self, backbone: Backbone, head: TagHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.backbone(image)
        return self.head(embedding), embedding


class ExportGraph(nn.Module):
    """The ONNX graph of a trained bundle: image -> (per-tag sigmoid scores, pooled embedding)."""

    def __init__(self, net: TaggerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.net(image)
        return torch.sigmoid(logits), embedding




def load_backbone(trainable: int = 0) -> Backbone:
    return Backbone(reference_net(), trainable)
