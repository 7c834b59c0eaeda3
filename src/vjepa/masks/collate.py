"""Batch of samples -> :class:`MaskedBatch`: stacked clips plus one mask pair per mask setting.

The masks of a batch are drawn from ``numpy.random.default_rng([seed, first_draw])``, where
``first_draw`` is the global position (given by the sampler) of the batch's first sample in the run.
They therefore depend only on the run seed and the batch position: not on which DataLoader worker
builds the batch nor when, and a resumed run draws exactly the masks it would have drawn. (The official
collator seeds from a counter shared between workers, so its masks depend on worker scheduling.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from vjepa.grid import TokenGrid
from vjepa.masks.base import MaskGenerator, MaskPair, Truncation
from vjepa.masks.causal import CausalMasks
from vjepa.masks.multiblock import PAPER_SETTINGS, MultiBlockMasks, MultiBlockSetting
from vjepa.masks.random_tube import RandomTubeMasks

MaskKind = Literal["multiblock", "random_tube", "causal"]
MASK_KINDS: tuple[MaskKind, ...] = ("multiblock", "random_tube", "causal")


class Sample(Protocol):
    """What the collator reads from a dataset item."""

    clip: Tensor  # [3, T, H, W] float, or [num_clips, 3, T, H, W]
    label: int
    draw: int  # global position of this draw in the run


@dataclass
class MaskedBatch:
    """A batch ready for a pretraining step.

    With multi-clip samples (``C`` clips per video) the clips are flattened sample-major
    (video 0's clips, then video 1's, ...), and ``labels`` and every mask row are repeated per clip,
    so the clips of one video share its masks.

    Args:
        clips: ``[B*C, 3, T, H, W]`` float.
        labels: ``[B*C]`` int64, the label of each clip's video.
        masks: one :class:`MaskPair` per mask setting, each ``[B*C, K]``.
        draws: ``[B]`` int64, the sampler's global draw position of each sample.
    """

    clips: Tensor  # [B*C, 3, T, H, W]
    labels: Tensor  # [B*C] int64
    masks: list[MaskPair]  # one per mask setting: context [B*C, K_ctx], target [B*C, K_tgt]
    draws: Tensor  # [B] int64

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MaskedBatch:
        """The same batch on ``device``.

        Args:
            device: where the tensors go.
            non_blocking: passed to :meth:`torch.Tensor.to` (overlaps copies from pinned memory).
        """
        return MaskedBatch(
            clips=self.clips.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            masks=[m.to(device, non_blocking=non_blocking) for m in self.masks],
            draws=self.draws.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> MaskedBatch:
        """The same batch in page-locked memory (the DataLoader calls this when ``pin_memory=True``)."""
        return MaskedBatch(
            clips=self.clips.pin_memory(),
            labels=self.labels.pin_memory(),
            masks=[m.pin_memory() for m in self.masks],
            draws=self.draws.pin_memory(),
        )


class MaskCollator:
    """DataLoader ``collate_fn``: stacks samples and draws one mask pair per generator.

    Args:
        generators: one mask generator per mask setting, called in order on the same numpy generator.
        seed: the run seed; with the first sample's ``draw`` it seeds the batch's masks.
    """

    def __init__(self, generators: Sequence[MaskGenerator], seed: int) -> None:
        if len(generators) == 0:
            raise ValueError("MaskCollator needs at least one mask generator")
        grids = {g.grid for g in generators}
        if len(grids) != 1:
            raise ValueError(f"all mask generators must share one token grid, got {sorted(map(str, grids))}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.generators = list(generators)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"MaskCollator(generators={self.generators}, seed={self.seed})"

    def rng(self, first_draw: int) -> np.random.Generator:
        """The numpy generator of the batch whose first sample has global draw ``first_draw``.

        Args:
            first_draw: global position of the batch's first draw.
        """
        if first_draw < 0:
            raise ValueError(f"draw positions must be >= 0, got {first_draw}")
        return np.random.default_rng([self.seed, int(first_draw)])

    def masks(self, batch_size: int, first_draw: int) -> list[MaskPair]:
        """The masks of one batch, one pair per generator, each ``[batch_size, K]``.

        Args:
            batch_size: number of samples (videos, not clips).
            first_draw: global position of the batch's first draw.
        """
        rng = self.rng(first_draw)
        return [generator(batch_size, rng) for generator in self.generators]

    def __call__(self, samples: Sequence[Sample]) -> MaskedBatch:
        """Collate a list of samples (see :class:`Sample`) into a :class:`MaskedBatch`.

        Args:
            samples: items with ``.clip`` (``[3,T,H,W]`` or ``[C,3,T,H,W]``), ``.label`` and ``.draw``.
        """
        if len(samples) == 0:
            raise ValueError("cannot collate an empty batch")
        shapes = {tuple(s.clip.shape) for s in samples}
        if len(shapes) != 1:
            raise ValueError(f"all clips of a batch must have one shape, got {sorted(shapes)}")
        clips = torch.stack([s.clip for s in samples])  # [B, 3, T, H, W] or [B, C, 3, T, H, W]
        if clips.ndim == 5:
            clips_per_sample = 1
        elif clips.ndim == 6:
            clips_per_sample = clips.shape[1]
            clips = clips.flatten(0, 1)  # [B*C, 3, T, H, W], sample-major
        else:
            raise ValueError(f"a sample's clip must be [3,T,H,W] or [C,3,T,H,W], got {shapes.pop()}")
        labels = torch.tensor([s.label for s in samples], dtype=torch.int64)  # [B]
        draws = torch.tensor([s.draw for s in samples], dtype=torch.int64)  # [B]
        masks = self.masks(len(samples), int(draws[0]))
        if clips_per_sample > 1:
            labels = labels.repeat_interleave(clips_per_sample)  # [B*C]
            masks = [m.repeat_interleave(clips_per_sample) for m in masks]  # each [B*C, K]
        return MaskedBatch(clips=clips, labels=labels, masks=masks, draws=draws)


def make_mask_generators(
    kind: MaskKind,
    grid: TokenGrid,
    settings: Sequence[MultiBlockSetting] | Sequence[float] | None = None,
    truncation: Truncation = "official",
) -> list[MaskGenerator]:
    """The mask generators of a run: one per setting, in order.

    Args:
        kind: ``"multiblock"`` (the paper), ``"random_tube"`` or ``"causal"``.
        grid: the token grid of the clips.
        settings: per kind, a sequence of ``MultiBlockSetting`` (default ``PAPER_SETTINGS``), of
            random-tube masking ratios (default ``(0.9,)``), or of causal context fractions
            (default ``(0.5,)``).
        truncation: how multi-block masks are cut to the batch minimum. Random-tube and causal masks
            have equal counts across the batch, so truncation never changes them.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {kind!r}")
    if kind == "multiblock":
        multiblock = PAPER_SETTINGS if settings is None else tuple(settings)
        bad = [s for s in multiblock if not isinstance(s, MultiBlockSetting)]
        if bad:
            raise TypeError(f"multiblock settings must be MultiBlockSetting instances, got {bad!r}")
        generators: list[MaskGenerator] = [MultiBlockMasks(grid, s, truncation) for s in multiblock]
    else:
        values = ((0.9,) if kind == "random_tube" else (0.5,)) if settings is None else tuple(settings)
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            meaning = "masking ratios" if kind == "random_tube" else "context fractions"
            raise TypeError(f"{kind} settings must be numbers ({meaning}), got {bad!r}")
        if kind == "random_tube":
            generators = [RandomTubeMasks(grid, float(v)) for v in values]
        else:
            generators = [CausalMasks(grid, float(v)) for v in values]
    if not generators:
        raise ValueError("at least one mask setting is needed")
    return generators
