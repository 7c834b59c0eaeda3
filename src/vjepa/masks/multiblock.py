"""Multi-block 3D masks: the paper's default masking (spec section 3.1).

For one batch and one setting:

1. The block size is drawn once for the whole batch, from three uniforms in this order: a temporal
   scale ``s_t``, a spatial scale ``s_s`` and an aspect ratio ``a`` (height / width, uniform, not
   log-uniform). ``t = max(1, int(T' * s_t))``, ``n = int(H' * W' * s_s)``,
   ``h = min(round(sqrt(n * a)), H')``, ``w = min(round(sqrt(n / a)), W')`` (Python's round, which
   rounds halves to even).
2. Each sample places ``num_blocks`` blocks of that size independently: ``top`` in ``[0, H' - h]``,
   ``left`` in ``[0, W' - w]``, ``start`` in ``[0, T' - t]``, bounds inclusive. Blocks may overlap.
3. The target is the union of the blocks (plus every frame from ``max(1, int(T' * max_temporal_keep))``
   on, when ``max_temporal_keep < 1``); the context is the rest. A sample whose context is empty
   places its blocks again.
4. The lists are cut to the batch minimum (``max_keep`` caps the context) by
   :func:`vjepa.masks.base.pair_from_target`.

:meth:`MultiBlockMasks.__call__` draws from a numpy generator and is vectorized over samples and
blocks. :meth:`MultiBlockMasks.sample_official` consumes torch generators in the exact order of the
official collator, so it regenerates the official masks bit for bit (used to check the fixture).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vjepa.grid import TokenGrid
from vjepa.masks.base import TRUNCATIONS, MaskPair, Truncation, pair_from_target

MAX_RESAMPLE_TRIES = 1000
"""How many times a sample with an empty context places its blocks again before we give up."""


def _as_range(name: str, value: Sequence[float], low: float, high: float | None) -> tuple[float, float]:
    """Check a ``(min, max)`` pair with ``low < min <= max <= high`` and return it as a tuple of floats."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"MultiBlockSetting.{name} must be a (min, max) pair, got {value!r}") from None
    upper = "inf" if high is None else high
    if not (low < lo <= hi and (high is None or hi <= high)):
        raise ValueError(
            f"MultiBlockSetting.{name} must satisfy {low} < min <= max <= {upper}, got {value!r}"
        )
    return (lo, hi)


@dataclass(frozen=True)
class MultiBlockSetting:
    """One multi-block mask setting (one entry of the official config's ``mask:`` list).

    Args:
        num_blocks: blocks placed per sample; the target is their union.
        spatial_scale: ``(min, max)`` fraction of the ``H' x W'`` tokens of a frame a block covers.
        temporal_scale: ``(min, max)`` fraction of the ``T'`` time steps a block spans; ``(1, 1)``
            makes every block a tube through the whole clip.
        aspect_ratio: ``(min, max)`` of a block's height / width, drawn uniformly.
        max_temporal_keep: fraction of the time steps that may be context; every later time step is
            a target. 1.0 (the paper) disables this.
        max_keep: upper bound on the number of context tokens per sample; None for no bound.
    """

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    max_temporal_keep: float = 1.0
    max_keep: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_blocks, bool) or not isinstance(self.num_blocks, int) or self.num_blocks < 1:
            raise ValueError(f"MultiBlockSetting.num_blocks must be an int >= 1, got {self.num_blocks!r}")
        # Lists (e.g. from YAML) are stored as tuples so that settings stay hashable.
        object.__setattr__(self, "spatial_scale", _as_range("spatial_scale", self.spatial_scale, 0.0, 1.0))
        object.__setattr__(self, "temporal_scale", _as_range("temporal_scale", self.temporal_scale, 0.0, 1.0))
        object.__setattr__(self, "aspect_ratio", _as_range("aspect_ratio", self.aspect_ratio, 0.0, None))
        if not (0.0 < float(self.max_temporal_keep) <= 1.0):
            raise ValueError(
                f"MultiBlockSetting.max_temporal_keep must be in (0, 1], got {self.max_temporal_keep!r}"
            )
        if self.max_keep is not None and (
            isinstance(self.max_keep, bool) or not isinstance(self.max_keep, int) or self.max_keep < 1
        ):
            raise ValueError(f"MultiBlockSetting.max_keep must be None or an int >= 1, got {self.max_keep!r}")


SHORT_RANGE = MultiBlockSetting(num_blocks=8, spatial_scale=(0.15, 0.15))
"""The paper's short-range setting: 8 blocks of 15% of a frame each, through all time."""

LONG_RANGE = MultiBlockSetting(num_blocks=2, spatial_scale=(0.7, 0.7))
"""The paper's long-range setting: 2 blocks of 70% of a frame each, through all time."""

PAPER_SETTINGS: tuple[MultiBlockSetting, ...] = (SHORT_RANGE, LONG_RANGE)
"""Both settings, in the official order (short-range first): one mask pair of each per batch."""


class MultiBlockMasks:
    """Multi-block 3D mask generator for one setting (see the module docstring for the algorithm).

    Args:
        grid: the token grid of the clips.
        setting: the block count and the ranges blocks are drawn from.
        truncation: how samples are cut to the batch minimum (``"official"`` or ``"random"``).
    """

    def __init__(
        self,
        grid: TokenGrid,
        setting: MultiBlockSetting = SHORT_RANGE,
        truncation: Truncation = "official",
    ) -> None:
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        self.grid = grid
        self.setting = setting
        self.truncation: Truncation = truncation
        # The number of leading time steps that may be context.
        self.context_depth = max(1, int(grid.depth * setting.max_temporal_keep))
        # Blocks must cover at least one token whatever is drawn: the smallest height comes with the
        # smallest aspect ratio, the smallest width with the largest.
        for u_a in (0.0, 1.0):
            t, h, w = self.block_size(0.0, 0.0, u_a)
            if min(t, h, w) < 1:
                raise ValueError(
                    f"{setting} gives empty blocks ({t}x{h}x{w} tokens) on the {grid.as_tuple()} grid: "
                    "raise spatial_scale"
                )

    def __repr__(self) -> str:
        return f"MultiBlockMasks(grid={self.grid}, setting={self.setting}, truncation={self.truncation!r})"

    def block_size(self, u_t: float, u_s: float, u_a: float) -> tuple[int, int, int]:
        """The ``(t, h, w)`` block size (in tokens) for three uniforms in ``[0, 1]``.

        Args:
            u_t: uniform for the temporal scale.
            u_s: uniform for the spatial scale.
            u_a: uniform for the aspect ratio.
        """
        s = self.setting
        g = self.grid
        temporal = s.temporal_scale[0] + u_t * (s.temporal_scale[1] - s.temporal_scale[0])
        spatial = s.spatial_scale[0] + u_s * (s.spatial_scale[1] - s.spatial_scale[0])
        aspect = s.aspect_ratio[0] + u_a * (s.aspect_ratio[1] - s.aspect_ratio[0])
        t = max(1, int(g.depth * temporal))
        n = int(g.height * g.width * spatial)
        h = min(int(round(math.sqrt(n * aspect))), g.height)
        w = min(int(round(math.sqrt(n / aspect))), g.width)
        return t, h, w

    def __call__(self, batch_size: int, rng: np.random.Generator) -> MaskPair:
        """Draw the masks of one batch.

        Args:
            batch_size: number of samples B.
            rng: the only source of randomness.

        Returns:
            ``context [B, K_ctx]`` and ``target [B, K_tgt]`` int64 index tensors.
        """
        is_target = self.sample_target(batch_size, rng)  # [B, N]
        return pair_from_target(is_target, self.truncation, rng, self.setting.max_keep)

    def sample_target(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """The per-sample target sets before truncation: ``[B, N]`` bool, True = predicted.

        Every row has at least one context (False) token.

        Args:
            batch_size: number of samples B.
            rng: the only source of randomness.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        u_t, u_s, u_a = rng.random(3)
        size = self.block_size(float(u_t), float(u_s), float(u_a))
        is_target = self._place_blocks(size, batch_size, rng)  # [B, N]
        redo = self._empty_context(is_target)  # [B]
        tries = 0
        while redo.any():
            tries += 1
            if tries > MAX_RESAMPLE_TRIES:
                raise RuntimeError(self._cannot_place(size))
            rows = np.flatnonzero(redo)
            is_target[rows] = self._place_blocks(size, rows.size, rng)
            redo[rows] = self._empty_context(is_target[rows])
        return is_target

    def sample_official(self, batch_size: int, generator: torch.Generator, call_index: int) -> MaskPair:
        """Draw one batch's masks with the official collator's random streams, bit-exactly.

        The block size comes from three ``torch.rand(1)`` draws of a fresh generator seeded with
        ``call_index`` (the official per-generator call counter, from 0); the placements come from
        ``generator`` through ``torch.randint(0, hi, (1,))`` draws, ``top``, ``left``, ``start`` per
        block, blocks in order, samples in order, a sample redrawn whole while its context is empty.
        Truncation is the official one. This is a reproduction path, not a fast one.

        Args:
            batch_size: number of samples B.
            generator: the placement stream (the official code uses the global torch generator).
            call_index: the seed of the block-size stream.

        Returns:
            ``context [B, K_ctx]`` and ``target [B, K_tgt]`` int64 index tensors.
        """
        size_gen = torch.Generator().manual_seed(call_index)
        u_t, u_s, u_a = (torch.rand(1, generator=size_gen).item() for _ in range(3))
        t, h, w = size = self.block_size(u_t, u_s, u_a)
        g = self.grid
        rows = []
        for _ in range(batch_size):
            for _ in range(MAX_RESAMPLE_TRIES + 1):
                corners = np.array(
                    [
                        [
                            torch.randint(0, hi, (1,), generator=generator).item()
                            for hi in (g.height - h + 1, g.width - w + 1, g.depth - t + 1)
                        ]
                        for _ in range(self.setting.num_blocks)
                    ]
                )  # [num_blocks, 3]: top, left, start
                row = self._union(size, corners[None, :, 2], corners[None, :, 0], corners[None, :, 1])
                if not self._empty_context(row)[0]:
                    break
            else:
                raise RuntimeError(self._cannot_place(size))
            rows.append(row[0])
        is_target = np.stack(rows)  # [B, N]
        return pair_from_target(is_target, "official", None, self.setting.max_keep)

    def _place_blocks(
        self, size: tuple[int, int, int], batch_size: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Target union of ``num_blocks`` randomly placed blocks per sample: ``[B, N]`` bool."""
        t, h, w = size
        g = self.grid
        shape = (batch_size, self.setting.num_blocks)
        top = rng.integers(0, g.height - h + 1, shape)  # [B, nb]
        left = rng.integers(0, g.width - w + 1, shape)  # [B, nb]
        start = rng.integers(0, g.depth - t + 1, shape)  # [B, nb]
        return self._union(size, start, top, left)

    def _union(
        self, size: tuple[int, int, int], start: np.ndarray, top: np.ndarray, left: np.ndarray
    ) -> np.ndarray:
        """Union of blocks at given corners (each ``[B, nb]``): ``[B, N]`` bool, True = target."""
        t, h, w = size
        g = self.grid
        batch_size, num_blocks = start.shape
        rows = np.arange(g.height)
        cols = np.arange(g.width)
        # Memberships as 0/1 floats, so that "any block covers this token" is a small matrix product.
        in_rows = ((rows >= top[..., None]) & (rows < top[..., None] + h)).astype(np.float32)  # [B, nb, H']
        in_cols = ((cols >= left[..., None]) & (cols < left[..., None] + w)).astype(np.float32)  # [B, nb, W']
        if t == g.depth:  # tubes through all time: the union is the same in every frame
            # frame[b, r, c] = any_k in_rows[b, k, r] & in_cols[b, k, c]
            frame = np.matmul(in_rows.transpose(0, 2, 1), in_cols) > 0  # [B, H', W']
            union = np.broadcast_to(
                frame.reshape(batch_size, 1, g.tokens_per_frame), (batch_size, g.depth, g.tokens_per_frame)
            )
        else:
            steps = np.arange(g.depth)
            in_time = ((steps >= start[..., None]) & (steps < start[..., None] + t)).astype(np.float32)
            in_frame = in_rows[..., :, None] * in_cols[..., None, :]  # [B, nb, H', W']
            in_frame = in_frame.reshape(batch_size, num_blocks, g.tokens_per_frame)  # [B, nb, H'W']
            # union[b, s, p] = any_k in_time[b, k, s] & in_frame[b, k, p]
            union = np.matmul(in_time.transpose(0, 2, 1), in_frame) > 0  # [B, T', H'W']
        union = np.array(union)  # [B, T', H'W'], writable
        if self.context_depth < g.depth:
            union[:, self.context_depth :, :] = True
        return union.reshape(batch_size, g.num_tokens)

    @staticmethod
    def _empty_context(is_target: np.ndarray) -> np.ndarray:
        """``[B, N] -> [B]``: True where a sample has no context token."""
        return is_target.all(axis=1)

    def _cannot_place(self, size: tuple[int, int, int]) -> str:
        return (
            f"{self.setting} on the {self.grid.as_tuple()} grid: blocks of {size[0]}x{size[1]}x{size[2]} tokens "
            f"covered every token in {MAX_RESAMPLE_TRIES} placements in a row; lower num_blocks or the scales"
        )
