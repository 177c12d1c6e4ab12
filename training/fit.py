"""Training the head on cached embeddings (fast mode).

Each step takes a batch of photos, picks for each one of its cached augmentations (as
tagd sees it, or mirrored) and trains on the mean of its view embeddings; scoring then
follows tagd exactly: every view scored on its own, the photo taking each tag's best view.
(Training on the views' mean and scoring at the best view measured better on coco128-dev
than training at the best view, which lets one lucky view carry a whole photo.)

Deterministic for a seed: one torch generator drives batches and augmentation picks,
`torch.manual_seed` the rest, and `torch.use_deterministic_algorithms` is on.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from training.adversarial import Adversary, AdversarialConfig
from training.head import TagHead
from training.losses import make_loss
from training.metrics import mean_ap, per_tag_ap
from training.prior import Prior
from training.progress import Bar

EARLY_STOPPING_MIN = 200
# Below this many photos, the head is trained again on training + validation photos once
# the thresholds are chosen: a fifth more photos is worth more than the small mismatch
# between the thresholds and the refitted head (coco128-dev: mean AP 0.485 -> 0.527).
REFIT_BELOW = 5000


@dataclass
class TrainConfig:
    loss: str = "weighted"
    epochs: int | None = None  # None: enough for `min_steps` optimiser steps, at least 30 epochs
    min_steps: int = 300
    batch_size: int = 256
    lr: float = 0.01
    l2: float = 0.01
    use_prior: bool = True
    adversarial: AdversarialConfig | None = None
    seed: int = 0
    device: str = "cpu"
    patience: int | None = 15  # epochs without a better validation mAP before stopping
    # Keep the epoch with the best validation mAP. None: only when there are at least
    # EARLY_STOPPING_MIN validation photos; on coco128-dev's ~20 per fold it picked noise
    # (mean AP 0.485 with, 0.517 without).
    early_stopping: bool | None = None
    show_progress: bool = True

    def selects_by_validation(self, n_val: int) -> bool:
        return self.early_stopping if self.early_stopping is not None else n_val >= EARLY_STOPPING_MIN

    def epochs_for(self, n_photos: int) -> int:
        if self.epochs is not None:
            return self.epochs
        per_epoch = math.ceil(n_photos / self.batch_size)
        return int(min(500, max(30, math.ceil(self.min_steps / per_epoch))))


@dataclass
class FitResult:
    head: TagHead
    epochs_run: int
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    discriminator_accuracy: float | None = None


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def make_head(train_views: np.ndarray, train_labels: np.ndarray, prior: Prior | None) -> TagHead:
    flat = train_views[:, 0].reshape(-1, train_views.shape[-1])
    return TagHead(train_views.shape[-1], train_labels.shape[1], flat.mean(0), flat.std(0) + 1e-6,
                   prior=prior, prevalence=train_labels.mean(0))


def predict_views(head: TagHead, views: np.ndarray, device: str = "cpu", batch: int = 1024,
                  semantic: torch.Tensor | None = None) -> np.ndarray:
    """(N, V, dim) embeddings -> (N, labels) sigmoid scores, each label at its best view.
    `semantic`: the views' `head.semantic_features`, (N * V, S), when computed already."""
    head.eval()
    n, v, d = views.shape
    out = np.empty((n, head.n_tags), dtype=np.float32)
    flat = views.reshape(n * v, d)
    with torch.no_grad():
        for start in range(0, n * v, batch * v):
            chunk = torch.from_numpy(np.ascontiguousarray(flat[start:start + batch * v])).to(device)
            sem = None if semantic is None else semantic[start:start + batch * v].to(device)
            s = torch.sigmoid(head(chunk, sem)).reshape(-1, v, head.n_tags).amax(dim=1)
            out[start // v:start // v + len(s)] = s.cpu().numpy()
    return out


def train_head(
    train_views: np.ndarray,
    train_labels: np.ndarray,
    config: TrainConfig,
    *,
    prior: Prior | None = None,
    val_views: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    epochs: int | None = None,
) -> FitResult:
    """`train_views`: (N, augmentations, views, dim); `val_views`: (M, views, dim) as tagd sees them."""
    seed_everything(config.seed)
    device = torch.device(config.device)
    head = make_head(train_views, train_labels, prior if config.use_prior else None).to(device)
    x = torch.from_numpy(np.ascontiguousarray(train_views.mean(axis=2)))  # (N, A, dim): views' mean
    y = torch.from_numpy(train_labels.astype(np.float32))
    semantic = val_semantic = None
    if head.has_prior:
        with torch.no_grad():
            semantic = head.semantic_features(x.to(device)).cpu()
            if val_views is not None:
                flat = torch.from_numpy(np.ascontiguousarray(val_views.reshape(-1, val_views.shape[-1])))
                val_semantic = head.semantic_features(flat.to(device)).cpu()
    loss_fn = make_loss(config.loss, y)
    n = x.shape[0]
    total = epochs or config.epochs_for(n)
    steps_per_epoch = math.ceil(n / config.batch_size)
    adversary = None
    if config.adversarial is not None:
        adversary = Adversary(y.shape[1], x.shape[-1], config.adversarial, config.seed, config.device)
    warmup_steps = int((config.adversarial.warmup if config.adversarial else 0) * total * steps_per_epoch)
    if device.type == "cpu":
        # Head steps are tiny matrix products: thread hand-offs cost more than they save
        # (coco128-dev: 1.3 s per fit on 2 threads, 0.55 s on one).
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        return _train_loop(head, x, y, semantic, loss_fn, adversary, total, warmup_steps, config, device,
                           val_views, val_labels, val_semantic)
    finally:
        if device.type == "cpu":
            torch.set_num_threads(previous_threads)


def _train_loop(head: TagHead, x: torch.Tensor, y: torch.Tensor, semantic: torch.Tensor | None, loss_fn,
                adversary: Adversary | None, total: int, warmup_steps: int, config: TrainConfig, device: torch.device,
                val_views: np.ndarray | None, val_labels: np.ndarray | None,
                val_semantic: torch.Tensor | None) -> FitResult:
    opt = torch.optim.Adam(head.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    n, n_aug = x.shape[0], x.shape[1]
    has_val = (val_views is not None and val_labels is not None and val_labels.sum() > 0
               and config.selects_by_validation(len(val_labels)))
    best = (-1.0, 0, copy.deepcopy(head.state_dict()))
    history: list[dict] = []
    step = 0
    with Bar(total, "training head", "epoch", config.show_progress) as bar:
        for epoch in range(1, total + 1):
            head.train()
            order = torch.randperm(n, generator=gen)
            aug = torch.randint(0, n_aug, (n,), generator=gen)
            running = 0.0
            for start in range(0, n, config.batch_size):
                idx = order[start:start + config.batch_size]
                xb = x[idx, aug[idx]].to(device)
                yb = y[idx].to(device)
                logits = head(xb, None if semantic is None else semantic[idx, aug[idx]].to(device))
                loss = loss_fn(logits, yb) + head.penalty(config.l2)
                if adversary is not None and step >= warmup_steps:
                    loss = loss + config.adversarial.weight * adversary.step(torch.sigmoid(logits), yb, xb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                running += float(loss.detach()) * len(idx)
                step += 1
            record = {"epoch": epoch, "loss": running / n}
            if adversary is not None and step > warmup_steps:
                record["d_accuracy"] = adversary.last_accuracy
            if has_val:
                ap = per_tag_ap(predict_views(head, val_views, config.device, semantic=val_semantic), val_labels)
                record["val_map"], _ = mean_ap(ap, val_labels)
                if record["val_map"] > best[0]:
                    best = (record["val_map"], epoch, copy.deepcopy(head.state_dict()))
            history.append(record)
            bar.update(1, **{k: v for k, v in record.items() if k != "epoch"})
            if has_val and config.patience and epoch - best[1] >= config.patience and epoch >= total // 3:
                break
    if has_val:
        head.load_state_dict(best[2])
        best_epoch = best[1]
    else:
        best_epoch = len(history)
    head.eval()
    return FitResult(head, len(history), best_epoch, history,
                     adversary.last_accuracy if adversary is not None else None)
