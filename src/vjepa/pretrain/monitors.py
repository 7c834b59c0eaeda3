"""Collapse monitors: signs that the encoder maps every clip (or every token) to the same representation.

A JEPA can minimize its loss by predicting a constant; the EMA target and the predictor usually prevent it,
but a bad LR or EMA schedule can let it happen. Every ``monitor_every`` steps the loop computes:

- ``target_std``: per-dimension std of the layer-normed target features over samples and tokens (mean and
  minimum over dimensions). Healthy features have values near 1 (they are layer-normed per token); it falls
  toward 0 when all tokens become alike.
- ``rankme``: the effective rank (RankMe, Garrido et al. 2023: ``exp`` of the entropy of the normalized
  singular values) of clip-pooled target features gathered over the last steps. It is at most
  ``min(#clips, D)`` and falls toward 1 when all clips map to one direction.
- ``pred_std``: the same std for the predictions, relative to the targets'; it falls toward 0 when the
  predictor outputs a constant.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

STD_WARN = 0.05
"""Warn when the mean per-dimension target std falls below this (healthy: about 1)."""
RANK_WARN = 2.0
"""Warn when RankMe falls below this: the pooled features span about one direction. (Healthy values depend on
the data: a few hundred on natural video, about 10 on the 16-class synthetic videos.)"""
PRED_STD_WARN_FRACTION = 0.05
"""Warn when the predictions' std falls below this fraction of the targets'."""


def rankme(features: Tensor, eps: float = 1e-7) -> float:
    """The effective rank of ``features`` ``[M, D]``: ``exp(-sum p_k log p_k)`` with ``p = s / sum(s)``
    over the singular values ``s`` (plus ``eps``, as RankMe)."""
    s = torch.linalg.svdvals(features.detach().double())  # [min(M, D)]
    p = s / s.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def per_dim_std(x: Tensor) -> Tensor:
    """Std over all leading axes of each feature dimension: ``[..., D] -> [D]``."""
    return x.detach().float().reshape(-1, x.shape[-1]).std(dim=0)


@dataclass
class CollapseStats:
    """One monitor evaluation.

    Args:
        target_std_mean: mean over dimensions of the per-dimension target std.
        target_std_min: its minimum over dimensions.
        pred_std_ratio: prediction std / target std (mean over mask settings).
        rankme: effective rank of the pooled target features in the window.
        rankme_max: its maximum possible value ``min(#clips, D)``.
        warnings: human-readable warnings (empty when healthy).
    """

    target_std_mean: float
    target_std_min: float
    pred_std_ratio: float
    rankme: float
    rankme_max: int
    warnings: list[str] = field(default_factory=list)

    def as_metrics(self) -> dict[str, float]:
        return {
            "monitor/target_std_mean": self.target_std_mean,
            "monitor/target_std_min": self.target_std_min,
            "monitor/pred_std_ratio": self.pred_std_ratio,
            "monitor/rankme": self.rankme,
            "monitor/rankme_max": float(self.rankme_max),
        }


class CollapseMonitor:
    """Keeps the clip-pooled target features of recent steps and evaluates the collapse statistics.

    Args:
        window: how many pooled clip features (rows) to keep for RankMe.
    """

    def __init__(self, window: int = 512) -> None:
        self.pooled: deque[Tensor] = deque()
        self.window = window
        self._rows = 0

    def observe(self, pooled: Tensor | None) -> None:
        """Add one step's pooled target features ``[B, D]`` (None: pixel targets, nothing to add)."""
        if pooled is None:
            return
        self.pooled.append(pooled.detach().float().cpu())
        self._rows += pooled.shape[0]
        while self.pooled and self._rows - self.pooled[0].shape[0] >= self.window:
            self._rows -= self.pooled.popleft().shape[0]

    def evaluate(self, targets: list[Tensor], predictions: list[Tensor]) -> CollapseStats:
        """Statistics of one step's targets and predictions (each ``[B, K_tgt, D]`` per mask setting) and
        of the pooled features observed so far."""
        std = torch.cat([per_dim_std(t) for t in targets])  # [settings * D]
        ratios = [
            float(per_dim_std(p).mean() / per_dim_std(t).mean().clamp_min(1e-12))
            for p, t in zip(predictions, targets, strict=True)
        ]
        pred_ratio = sum(ratios) / len(ratios)
        if self.pooled:
            pooled = torch.cat(list(self.pooled))  # [M, D]
            rank, rank_max = rankme(pooled), min(pooled.shape)
        else:
            rank, rank_max = float("nan"), 0
        stats = CollapseStats(float(std.mean()), float(std.min()), pred_ratio, rank, rank_max)
        if stats.target_std_mean < STD_WARN:
            stats.warnings.append(
                f"target features are collapsing: mean per-dimension std {stats.target_std_mean:.4f} "
                f"(< {STD_WARN}; healthy is about 1)"
            )
        if rank_max >= 4 and rank < RANK_WARN:
            stats.warnings.append(
                f"pooled target features are collapsing: RankMe {rank:.2f} of at most {rank_max}"
            )
        if pred_ratio < PRED_STD_WARN_FRACTION:
            stats.warnings.append(
                f"predictions are collapsing: their std is {pred_ratio:.4f} of the targets' "
                f"(< {PRED_STD_WARN_FRACTION})"
            )
        return stats
