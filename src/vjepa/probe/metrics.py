"""Classification metrics from per-sample class scores: top-1/top-5, per-class accuracy, confusion matrix,
a confusion-matrix PNG and a JSON file of everything. Every sample counts once (no per-batch averaging)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vjepa.figures import pyplot
from vjepa.io import atomic_write


@dataclass
class ClassificationMetrics:
    """Accuracies in percent over ``num_samples`` samples.

    Args:
        top1: top-1 accuracy.
        top5: top-5 accuracy (top-C when there are fewer than 5 classes).
        mean_per_class: mean of the per-class accuracies (classes without samples are left out).
        per_class: accuracy of each class, None for classes without samples.
        confusion: ``confusion[true][predicted]`` counts.
        num_samples: samples scored.
    """

    top1: float
    top5: float
    mean_per_class: float
    per_class: list[float | None]
    confusion: list[list[int]]
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classification_metrics(scores: Tensor, labels: Tensor, num_classes: int) -> ClassificationMetrics:
    """Metrics of class scores ``[M, C]`` (probabilities or logits) against ``labels [M]``."""
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0] or scores.shape[1] != num_classes:
        raise ValueError(
            f"scores must be [M, {num_classes}] with labels [M], got {tuple(scores.shape)}, {tuple(labels.shape)}"
        )
    m = labels.shape[0]
    if m == 0:
        raise ValueError("no samples to score")
    labels = labels.long()
    k = min(5, num_classes)
    topk = scores.topk(k, dim=1).indices  # [M, k]
    pred = topk[:, 0]
    top1 = (pred == labels).float().mean().item() * 100
    top5 = (topk == labels[:, None]).any(dim=1).float().mean().item() * 100
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    confusion.index_put_((labels, pred), torch.ones(m, dtype=torch.int64), accumulate=True)
    totals = confusion.sum(dim=1)
    per_class = [
        (confusion[c, c].item() / totals[c].item() * 100) if totals[c] > 0 else None
        for c in range(num_classes)
    ]
    present = [a for a in per_class if a is not None]
    return ClassificationMetrics(
        top1=top1,
        top5=top5,
        mean_per_class=sum(present) / len(present),
        per_class=per_class,
        confusion=confusion.tolist(),
        num_samples=m,
    )


def save_confusion_png(
    confusion: Sequence[Sequence[int]],
    path: str | Path,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> None:
    """Row-normalized confusion matrix as a PNG (matplotlib, Agg backend; no display needed)."""
    plt = pyplot()
    counts = torch.tensor(confusion, dtype=torch.float64)
    rows = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    c = counts.shape[0]
    side = min(4 + 0.25 * c, 40)
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(rows.numpy(), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    if c <= 40:
        names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
        ax.set_xticks(range(c), names, rotation=90)
        ax.set_yticks(range(c), names)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
