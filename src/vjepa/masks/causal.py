"""Causal masks, an ablation: see the first time steps, predict all later ones.

The context is every token of the first ``max(1, int(T' * context_fraction))`` time steps and the
target is every token after them. The masks are the same for every sample and draw nothing from the
generator. (The official code only has this as a side effect of ``max_temporal_keep``; a
:class:`~vjepa.masks.multiblock.MultiBlockSetting` with ``max_temporal_keep < 1`` combines both.)
"""

from __future__ import annotations

import numpy as np
import torch

from vjepa.grid import TokenGrid
from vjepa.masks.base import MaskPair


class CausalMasks:
    """Past time steps as context, future ones as target.

    Args:
        grid: the token grid of the clips.
        context_fraction: fraction of the ``T'`` time steps that form the context (at least one, and
            at least one time step must remain to predict).
    """

    def __init__(self, grid: TokenGrid, context_fraction: float = 0.5) -> None:
        if not (0.0 < context_fraction < 1.0):
            raise ValueError(f"CausalMasks context_fraction must be in (0, 1), got {context_fraction!r}")
        self.grid = grid
        self.context_fraction = float(context_fraction)
        self.context_depth = max(1, int(grid.depth * self.context_fraction))
        if self.context_depth >= grid.depth:
            raise ValueError(
                f"CausalMasks with context_fraction {context_fraction} on {grid.depth} time steps leaves "
                "no time step to predict"
            )
        split = self.context_depth * grid.tokens_per_frame
        self._context = torch.arange(split)  # [K_ctx]
        self._target = torch.arange(split, grid.num_tokens)  # [K_tgt]

    def __repr__(self) -> str:
        return f"CausalMasks(grid={self.grid}, context_fraction={self.context_fraction})"

    def __call__(self, batch_size: int, rng: np.random.Generator) -> MaskPair:
        """The masks of one batch (identical rows; ``rng`` is not used).

        Args:
            batch_size: number of samples B.
            rng: unused; accepted so that every strategy is called the same way.

        Returns:
            ``context [B, T_ctx * H'W']`` and ``target [B, (T' - T_ctx) * H'W']`` int64 index tensors.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return MaskPair(
            self._context.expand(batch_size, -1).clone(),  # [B, K_ctx]
            self._target.expand(batch_size, -1).clone(),  # [B, K_tgt]
        )
