"""The evaluation report of a training run: markdown, JSON and PNG plots.

Plots need matplotlib (part of the `train` extra); without it the report says so and the
figures are all still in the markdown and JSON.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from training.metrics import Evaluation, precision_recall_curve

log = logging.getLogger(__name__)


def plot_per_tag_ap(ev: Evaluation, path: Path, min_positives: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(t, a, p) for t, a, p in zip(ev.tags, ev.ap, ev.positives) if p >= 1 and not np.isnan(a)]
    rows.sort(key=lambda r: r[1])
    if len(rows) > 60:  # the best and worst 30 say more than an unreadable wall of bars
        rows = rows[:30] + rows[-30:]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.22 * len(rows) + 1)))
    colours = ["#4c72b0" if p >= min_positives else "#b0b0b0" for _, _, p in rows]
    ax.barh([f"{t} ({p})" for t, _, p in rows], [a for _, a, _ in rows], color=colours)
    ax.axvline(ev.mean_ap, color="#c44e52", linestyle="--", label=f"mean AP {ev.mean_ap:.3f}")
    ax.set_xlim(0, 1)
    note = f"; grey: fewer than {min_positives} positives, not in the mean" if min_positives > 1 else ""
    ax.set_xlabel(f"average precision (test photos{note})")
    ax.set_title("Per-tag AP (positives in brackets)")
    ax.legend(loc="lower right")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pr_curves(tags: Sequence[str], scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray,
                   path: Path, most: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    recall, precision = precision_recall_curve(scores.reshape(-1), labels.reshape(-1) > 0)
    ax.step(recall, precision, where="post", color="black", linewidth=2, label="all tags (micro)")
    pred = scores >= thresholds.reshape(1, -1)
    y = labels > 0
    tp = (pred & y).sum()
    ax.plot([tp / max(1, y.sum())], [tp / max(1, pred.sum())], "o", color="black", markersize=7)
    frequent = np.argsort(-y.sum(0), kind="stable")[:most]
    for j in frequent:
        if y[:, j].sum() == 0:
            continue
        r, p = precision_recall_curve(scores[:, j], y[:, j])
        line, = ax.step(r, p, where="post", linewidth=1, label=f"{tags[j]} ({int(y[:, j].sum())})")
        tpj = (pred[:, j] & y[:, j]).sum()
        ax.plot([tpj / y[:, j].sum()], [tpj / max(1, pred[:, j].sum())], "o", color=line.get_color(), markersize=4)
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall on test photos (dots: calibrated thresholds)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["loss"] for h in history], label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if any("val_map" in h for h in history):
        ax2 = ax.twinx()
        ax2.plot([h["epoch"] for h in history if "val_map" in h], [h["val_map"] for h in history if "val_map" in h],
                 color="#c44e52", label="validation mAP")
        ax2.set_ylabel("validation mAP")
    ax.set_title("Training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(out: Path, ev: Evaluation, scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray,
                history: list[dict], min_positives: int) -> list[str]:
    """PNG files written (names relative to `out`); empty, with a log line, without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_per_tag_ap(ev, plots / "per_tag_ap.png", min_positives)
    plot_pr_curves(ev.tags, scores, labels, thresholds, plots / "pr_curves.png")
    written = ["plots/per_tag_ap.png", "plots/pr_curves.png"]
    if history:
        plot_history(history, plots / "training.png")
        written.append("plots/training.png")
    return written


def markdown(*, title: str, data_lines: list[str], settings: dict, split: dict[str, int], ev: Evaluation,
             thresholds: np.ndarray, train_positives: np.ndarray, plots: list[str], bundle_dir: Path | None,
             version: str | None, extra: list[str] = (), min_positives: int = 1, evaluated_on: str = "test") -> str:
    at = ev.at_thresholds
    lines = [f"# {title}", "", "## Data", ""]
    lines += [f"- {l}" for l in data_lines]
    lines.append(f"- split: {split.get('train', 0)} train, {split.get('val', 0)} validation, {split.get('test', 0)} test photos")
    lines += ["", "## Settings", ""]
    lines += [f"- {k}: {v}" for k, v in settings.items()]
    lines += [
        "", f"## Results on the {evaluated_on} photos", "",
        "| measure | value |", "|---|---|",
        f"| mean AP ({ev.mean_ap_tags} tags with >= {min_positives} positives) | **{ev.mean_ap:.4f}** |",
        f"| F1@3 (precision@3 / recall@3) | {ev.f1_at_3:.4f} ({ev.precision_at_3:.3f} / {ev.recall_at_3:.3f}) |",
        f"| at the calibrated thresholds: micro precision / recall / F1 | {at['precision']:.3f} / {at['recall']:.3f} / {at['f1']:.3f} |",
        f"| macro F1 (tags with positives) | {at['macro_f1']:.3f} |",
        f"| coverage (photos with >= 1 correct tag) | {at['coverage']:.3f} |",
        f"| tags written per photo | {at['tags_per_photo']:.2f} |",
        "",
    ]
    lines += list(extra)
    if plots:
        lines += [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    lines += ["## Per tag", "", "| tag | train positives | test positives | AP | threshold |", "|---|---|---|---|---|"]
    order = sorted(range(len(ev.tags)), key=lambda j: (-ev.positives[j], ev.tags[j]))
    for j in order:
        ap = "" if np.isnan(ev.ap[j]) else f"{ev.ap[j]:.3f}"
        lines.append(f"| {ev.tags[j]} | {int(train_positives[j])} | {ev.positives[j]} | {ap} | {thresholds[j]:.3f} |")
    if bundle_dir is not None:
        lines += ["", "## Use it", "", f"Bundle `{bundle_dir}` (version `{version}`):", "", "```sh",
                  f"tagd tag --model {bundle_dir} ~/Pictures", "```", "",
                  f"or set `model.path = \"{bundle_dir}\"` in `~/.config/tagd/config.toml`."]
    return "\n".join(lines) + "\n"


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else float(o)) + "\n")
