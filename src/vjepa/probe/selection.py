"""Which head of a grid is reported, and whether a head trained at all.

**Not trained.** A head whose training accuracy does not clear the training set's chance level (the share of
its largest class) by a margin has not fit even its training data; its test accuracy is not a result of
the features and is never reported as a number. The margin is 3 binomial standard deviations of chance
accuracy over the training samples (the noise of a head that predicts at random), at least 5 points and at
most half the way from chance to 100%: 5.7 points for 512 samples in 4 balanced classes, 18 points for 51,
25 points for 6 samples in 2 classes.

**Selection.** Each head keeps the epoch with the best top-1 on the selection split (ties: the lower loss)
among the epochs where it had trained (``selection.epochs: best``), or its last epoch (``last``). The
reported head is the trained head with the best selection top-1 (ties: lower selection loss, then the
earlier head of the grid); its accuracy on the test split is the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from vjepa.errors import VjepaError
from vjepa.probe.heads import HeadGrid

MIN_MARGIN = 5.0
"""Smallest margin (accuracy points) above chance for a head to count as trained."""
SIGMAS = 3.0
"""Binomial standard deviations of chance accuracy that a trained head must clear."""

Status = Literal["trained", "not_trained", "no_training"]


class ProbeNotTrainedError(VjepaError):
    """No head of a label fraction trained; the message says what to try and where the metrics are."""


def chance_top1(labels: np.ndarray) -> float:
    """Accuracy (%) of always predicting the most frequent class of ``labels``."""
    counts = np.bincount(np.asarray(labels))
    return 100.0 * counts.max() / counts.sum()


def trained_threshold(labels: np.ndarray) -> float:
    """Training accuracy (%) a head must exceed to count as trained (see the module docstring)."""
    p, n = chance_top1(labels) / 100, len(labels)
    noise = SIGMAS * 100 * math.sqrt(p * (1 - p) / max(n, 1))
    return 100 * p + max(MIN_MARGIN, min(noise, 50 * (1 - p)))


@dataclass
class SplitScores:
    """Per-head ``[G]`` top-1 (%) and mean cross-entropy of the view-averaged predictions on one split."""

    top1: Tensor
    loss: Tensor

    @classmethod
    def of(cls, probs: Tensor, labels: Tensor) -> SplitScores:
        """From probabilities ``[G, M, C]`` and labels ``[M]``."""
        top1 = 100 * (probs.argmax(-1) == labels).float().mean(1)
        picked = probs.gather(2, labels.view(1, -1, 1).expand(probs.shape[0], -1, 1))[..., 0]
        return cls(top1, -picked.clamp_min(1e-12).log().mean(1))


@dataclass
class KeptEpoch:
    """What a head reports: its kept epoch and that epoch's numbers."""

    epoch: int = 0
    train_loss: float = math.nan
    train_top1: float = math.nan
    selection_top1: float = math.nan
    selection_loss: float = math.nan
    trained: bool = False


@dataclass
class HeadKeeper:
    """Keeps, per head, the epoch to report (and its weights, in ``best`` mode).

    Args:
        grid: the heads being trained.
        threshold: training accuracy (%) a head must exceed to count as trained.
        mode: ``best`` (best selection epoch among trained epochs) or ``last``.
    """

    grid: HeadGrid
    threshold: float
    mode: Literal["best", "last"]
    kept: list[KeptEpoch] = field(default_factory=list)
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kept = [KeptEpoch() for _ in range(self.grid.num_grid_heads)]

    def update(self, epoch: int, train_loss: Tensor, train_top1: Tensor, scores: SplitScores | None) -> None:
        """Consider the heads after ``epoch`` (``scores``: their selection scores, None when not scored)."""
        for g, kept in enumerate(self.kept):
            now = KeptEpoch(
                epoch,
                float(train_loss[g]),
                float(train_top1[g]),
                trained=float(train_top1[g]) > self.threshold,
            )
            if scores is not None:
                now.selection_top1, now.selection_loss = float(scores.top1[g]), float(scores.loss[g])
            if self.mode == "last" or (not kept.trained and not now.trained):
                self.kept[g] = now  # last epoch, or nothing trained yet: follow the latest
                self.snapshots.pop(g, None)
            elif now.trained and (not kept.trained or _better(now, kept)):
                self.kept[g] = now
                self.snapshots[g] = {
                    k: v.detach().clone() for k, v in self.grid.heads[g].state_dict().items()
                }

    def set_selection(self, scores: SplitScores) -> None:
        """Selection scores measured after training (``last`` mode)."""
        for g, kept in enumerate(self.kept):
            kept.selection_top1, kept.selection_loss = float(scores.top1[g]), float(scores.loss[g])

    @torch.no_grad()
    def restore(self) -> None:
        """Put every head back to its kept epoch's weights."""
        for g, snap in self.snapshots.items():
            self.grid.heads[g].load_state_dict(snap)


def _better(a: KeptEpoch, b: KeptEpoch) -> bool:
    return (a.selection_top1, -a.selection_loss) > (b.selection_top1, -b.selection_loss)


def select_head(kept: list[KeptEpoch]) -> int | None:
    """The reported head: best selection top-1 among trained heads (ties: lower loss, earlier head)."""
    best: int | None = None
    for g, k in enumerate(kept):
        if k.trained and (best is None or _better(k, kept[best])):
            best = g
    return best
