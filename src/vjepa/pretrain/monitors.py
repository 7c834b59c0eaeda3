"""Collapse monitors: signs that the encoder maps every clip (or every token) to the same representation.

A JEPA can minimize its loss by predicting a constant; the EMA target and the predictor usually prevent it,
but a bad LR or EMA schedule can let it happen. Every ``monitor_every`` steps the loop computes:

- ``target_std``: per-dimension std of the layer-normed target features over samples and tokens (mean and
  minimum over dimensions). Healthy features have values near 1 (they are layer-normed per token); it falls
  toward 0 when all tokens become alike.
- ``rankme``: the effective rank (RankMe, Garrido et al. 2023: ``exp`` of the entropy of the normalized
  singular values) of clip-pooled target features gathered over the last steps. It is at most
  ``min(#clips, D)`` and falls toward 1 when all clips map to one direction.
- ``pred_std``: the same std for the predictions, relative to the targets'. Recorded, never warned about:
  it starts small (the predictor's initialization, 0.05-0.15 of the targets' in the demo) and a predictor
  that outputs a constant shows in the loss.

A warning needs evidence that holds up: one of the signs (target std near zero, RankMe below 2, RankMe below a
third of its highest value) at ``PATIENCE`` monitor points in a row. It is given once per episode, says what
to try, and is given again only after the signs were gone for ``PATIENCE`` points.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

STD_WARN = 0.05
"""A sign of collapse: the mean per-dimension target std below this (healthy: about 1; 0.55-0.68 in the
demo's healthy runs)."""
RANK_WARN = 2.0
"""A sign of collapse: RankMe below this (the pooled features span about one direction). Healthy values
depend on the data: a few hundred on natural video, 9-12 on the synthetic videos of ``vjepa demo``."""
RANK_DROP = 1 / 3
"""A sign of collapse: RankMe below this fraction of its highest value so far (the demo's healthy runs stay
within 10% of theirs after the window fills)."""
PATIENCE = 3
"""Monitor points in a row a sign must hold before the warning (so never at step 0); the warning is given
once, and again only after the signs were gone for as many points."""
ADVICE = (
    "try a lower optimization.lr, a slower target EMA (optimization.ema closer to 1, e.g. [0.999, 1.0]) or a "
    "regulariser (objective.regularizer=vc or sigreg)"
)


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
    """Keeps the clip-pooled target features of recent steps, evaluates the collapse statistics and warns on
    sustained signs of collapse.

    Args:
        window: how many pooled clip features (rows) to keep for RankMe.
    """

    def __init__(self, window: int = 512) -> None:
        self.pooled: deque[Tensor] = deque()
        self.window = window
        self._rows = 0
        self.best_rank = 0.0  # highest RankMe so far
        self.recent: deque[tuple[int | None, list[str]]] = deque(maxlen=PATIENCE)
        self.warned = False

    def observe(self, pooled: Tensor | None) -> None:
        """Add one step's pooled target features ``[B, D]`` (None: pixel targets, nothing to add)."""
        if pooled is None:
            return
        self.pooled.append(pooled.detach().float().cpu())
        self._rows += pooled.shape[0]
        while self.pooled and self._rows - self.pooled[0].shape[0] >= self.window:
            self._rows -= self.pooled.popleft().shape[0]

    def evaluate(
        self, targets: list[Tensor], predictions: list[Tensor], step: int | None = None
    ) -> CollapseStats:
        """Statistics of one step's targets and predictions (each ``[B, K_tgt, D]`` per mask setting) and
        of the pooled features observed so far; ``warnings`` holds the collapse warning on the point where
        the evidence becomes sustained (see the module docstring)."""
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
        signs = self._signs(stats)
        self.recent.append((step, signs))
        warning = self._episode(signs)
        if warning:
            stats.warnings.append(warning)
        return stats

    def _signs(self, stats: CollapseStats) -> list[str]:
        """The signs of collapse at this point (empty when healthy)."""
        signs = []
        if stats.target_std_mean < STD_WARN:
            signs.append(f"target std {stats.target_std_mean:.4f} (< {STD_WARN}; healthy is about 1)")
        if stats.rankme_max >= 4:
            if stats.rankme < RANK_WARN:
                signs.append(f"RankMe {stats.rankme:.2f} of at most {stats.rankme_max} (< {RANK_WARN})")
            elif stats.rankme < RANK_DROP * self.best_rank:
                signs.append(
                    f"RankMe {stats.rankme:.2f}, below {RANK_DROP:.2f} of its best {self.best_rank:.2f}"
                )
            self.best_rank = max(self.best_rank, stats.rankme)
        return signs

    def _episode(self, signs: list[str]) -> str | None:
        """The warning when the signs have held ``PATIENCE`` points and none was given in this episode."""
        window = list(self.recent)[-PATIENCE:]
        if len(window) == PATIENCE and all(not s for _, s in window):
            self.warned = False  # healthy for PATIENCE points: a new episode may warn again
        if self.warned or len(window) < PATIENCE or not all(s for _, s in window):
            return None
        self.warned = True
        first = window[0][0]
        since = f" since step {first}" if first is not None else f" for {PATIENCE} monitor points"
        return f"representation collapse{since}: {'; '.join(signs)}. To recover, {ADVICE}"
