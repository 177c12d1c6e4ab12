"""Fine-tune mode: the head trained on cached embeddings first, then the top backbone blocks
trained together with it on augmented photos.

Starting from the trained head (linear probe, then fine-tune) keeps the first fine-tuning
steps from wrecking the pretrained features with a random head's gradients. BatchNorm
statistics stay frozen (small CPU batches) and only the last `blocks` MBConv blocks plus the
final 1x1 convolution learn, with a learning rate ten times lower than the head's.

On 2 CPU cores a step of 16 photos takes a few seconds, so this mode is for a GPU
(`--device cuda`) or for patient people; the fast mode is the default.
"""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from training.adversarial import Adversary
from training.augment import AugmentConfig, random_view
from training.fit import TrainConfig, seed_everything
from training.head import TaggerNet
from training.losses import make_loss
from training.metrics import mean_ap, per_tag_ap
from training.progress import Bar


@dataclass
class FinetuneConfig:
    blocks: int = 2
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-4  # backbone; the head gets 10x
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    decode_short_side: int = 256  # decoded a little larger than the input, so crops keep detail


def _views_for_tagd(paths: Sequence[Path]) -> list[np.ndarray]:
    from tagd.decode import load_rgb
    from tagd.model import Model, float_bundle_dir

    model = Model(float_bundle_dir(), threads=1)
    return [model.views(load_rgb(p, model.short_side)) for p in paths]


def embed_views(net: TaggerNet, paths: Sequence[Path], device: str, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Photos as tagd sees them (three views) through the network: ((N, labels) best-view sigmoid
    scores, (N, 3, dim) view embeddings)."""
    net.eval()
    scores, embs = [], []
    with torch.no_grad():
        for start in range(0, len(paths), batch):
            views = _views_for_tagd(paths[start:start + batch])
            x = torch.from_numpy(np.ascontiguousarray(np.concatenate(views).transpose(0, 3, 1, 2))).to(device)
            logits, emb = net(x)
            n = len(views)
            scores.append(torch.sigmoid(logits).reshape(n, 3, -1).amax(dim=1).cpu().numpy())
            embs.append(emb.reshape(n, 3, -1).cpu().numpy())
    return np.concatenate(scores), np.concatenate(embs)


def finetune(
    net: TaggerNet,
    train_paths: Sequence[Path],
    train_labels: np.ndarray,
    train_config: TrainConfig,
    config: FinetuneConfig,
    *,
    val_paths: Sequence[Path] = (),
    val_labels: np.ndarray | None = None,
) -> tuple[TaggerNet, list[dict]]:
    from tagd.decode import load_rgb
    from tagd.errors import ReadError

    seed_everything(train_config.seed)
    device = torch.device(train_config.device)
    net.backbone.set_trainable(config.blocks)
    net.to(device)
    y = torch.from_numpy(train_labels.astype(np.float32))
    loss_fn = make_loss(train_config.loss, y)
    backbone_params = [p for p in net.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([
        {"params": backbone_params, "lr": config.lr, "weight_decay": 1e-4},
        {"params": list(net.head.parameters()), "lr": config.lr * 10, "weight_decay": 0.0},
    ])
    adversary = None
    if train_config.adversarial is not None:
        adversary = Adversary(y.shape[1], net.head.dim, train_config.adversarial, train_config.seed, train_config.device)
    n = len(train_paths)
    steps_per_epoch = math.ceil(n / config.batch_size)
    has_val = val_labels is not None and len(val_paths) > 0 and train_config.selects_by_validation(len(val_paths))
    best = (-1.0, copy.deepcopy(net.state_dict()))
    history: list[dict] = []
    size = 224

    def load(i: int, epoch: int) -> np.ndarray | None:
        rng = np.random.default_rng([train_config.seed, epoch, i])
        try:
            image = load_rgb(train_paths[i], config.decode_short_side)
        except ReadError:
            return None
        return random_view(image, size, rng, config.augment)

    with ThreadPoolExecutor(2, thread_name_prefix="finetune-decode") as pool, \
            Bar(config.epochs * steps_per_epoch, "fine-tuning", "step", train_config.show_progress) as bar:
        for epoch in range(1, config.epochs + 1):
            net.train()
            order = np.random.default_rng([train_config.seed, epoch]).permutation(n)
            running = 0.0
            for start in range(0, n, config.batch_size):
                idx = order[start:start + config.batch_size]
                arrays = list(pool.map(lambda i: load(int(i), epoch), idx))
                keep = [k for k, a in enumerate(arrays) if a is not None]
                if not keep:
                    bar.update(1)
                    continue
                x = torch.from_numpy(np.stack([arrays[k].transpose(2, 0, 1) for k in keep])).to(device)
                yb = y[idx[keep]].to(device)
                logits, emb = net(x)
                loss = loss_fn(logits, yb) + net.head.penalty(train_config.l2)
                if adversary is not None and epoch > 1:
                    loss = loss + train_config.adversarial.weight * adversary.step(torch.sigmoid(logits), yb, emb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                running += float(loss.detach()) * len(keep)
                bar.update(1, loss=float(loss.detach()))
            record: dict = {"epoch": epoch, "loss": running / max(1, n)}
            if has_val:
                scores, _ = embed_views(net, val_paths, train_config.device)
                record["val_map"], _ = mean_ap(per_tag_ap(scores, val_labels), val_labels)
                if record["val_map"] > best[0]:
                    best = (record["val_map"], copy.deepcopy(net.state_dict()))
            history.append(record)
    if has_val:
        net.load_state_dict(best[1])
    net.eval()
    return net, history
