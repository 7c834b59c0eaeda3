"""Masks: which tokens the context encoder sees and which the predictor predicts.

``MultiBlockMasks`` is the paper's default (two settings, :data:`PAPER_SETTINGS`); ``RandomTubeMasks``
and ``CausalMasks`` are ablations. ``MaskCollator`` turns dataset samples into a ``MaskedBatch``.
"""

from vjepa.masks.base import TRUNCATIONS, MaskGenerator, MaskPair, Truncation, pair_from_target
from vjepa.masks.causal import CausalMasks
from vjepa.masks.collate import MASK_KINDS, MaskCollator, MaskedBatch, MaskKind, make_mask_generators
from vjepa.masks.multiblock import (
    LONG_RANGE,
    PAPER_SETTINGS,
    SHORT_RANGE,
    MultiBlockMasks,
    MultiBlockSetting,
)
from vjepa.masks.random_tube import RandomTubeMasks

__all__ = [
    "LONG_RANGE",
    "MASK_KINDS",
    "PAPER_SETTINGS",
    "SHORT_RANGE",
    "TRUNCATIONS",
    "CausalMasks",
    "MaskCollator",
    "MaskGenerator",
    "MaskKind",
    "MaskPair",
    "MaskedBatch",
    "MultiBlockMasks",
    "MultiBlockSetting",
    "RandomTubeMasks",
    "Truncation",
    "make_mask_generators",
    "pair_from_target",
]
