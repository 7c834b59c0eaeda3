"""Random-tube masks (spec section 3.2), an ablation of the paper: the same random spatial positions
are visible in every time step.

Each sample keeps ``int(H' * W' * (1 - ratio))`` spatial positions chosen uniformly without
replacement; those positions in every time step form the context, every other token is a target.
All samples have the same counts, so no truncation ever happens.
"""

from __future__ import annotations

import numpy as np

from vjepa.grid import TokenGrid
from vjepa.masks.base import MaskPair, pair_from_target


class RandomTubeMasks:
    """Random spatial positions, tiled over time, as context; the rest as target.

    Args:
        grid: the token grid of the clips.
        ratio: fraction of each frame's positions that are masked (targets); the paper's ablation uses 0.9.
    """

    def __init__(self, grid: TokenGrid, ratio: float = 0.9) -> None:
        if not (0.0 <= ratio < 1.0):
            raise ValueError(f"RandomTubeMasks ratio must be in [0, 1), got {ratio!r}")
        self.grid = grid
        self.ratio = float(ratio)
        self.num_keep = int(grid.tokens_per_frame * (1.0 - self.ratio))
        if not (1 <= self.num_keep < grid.tokens_per_frame):
            raise ValueError(
                f"RandomTubeMasks ratio {ratio} keeps {self.num_keep} of the {grid.tokens_per_frame} positions "
                "of a frame: it must keep at least one and mask at least one"
            )

    def __repr__(self) -> str:
        return f"RandomTubeMasks(grid={self.grid}, ratio={self.ratio})"

    def __call__(self, batch_size: int, rng: np.random.Generator) -> MaskPair:
        """Draw the masks of one batch.

        Args:
            batch_size: number of samples B.
            rng: the only source of randomness.

        Returns:
            ``context [B, T' * num_keep]`` and ``target [B, N - T' * num_keep]`` int64 index tensors.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        g = self.grid
        keys = rng.random((batch_size, g.tokens_per_frame))  # [B, H'W']
        kept = np.argpartition(keys, self.num_keep - 1, axis=1)[:, : self.num_keep]  # [B, num_keep]
        frame_target = np.ones((batch_size, g.tokens_per_frame), dtype=bool)  # [B, H'W']
        np.put_along_axis(frame_target, kept, False, axis=1)
        is_target = np.broadcast_to(frame_target[:, None, :], (batch_size, g.depth, g.tokens_per_frame))
        return pair_from_target(is_target.reshape(batch_size, g.num_tokens))
