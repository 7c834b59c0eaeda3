"""Draws: the unit of sampling. A draw is one position of the run's sample stream.

The sampler yields `DrawKey(draw, index, padded)`: `draw` is the unique global position (epoch offset, rank
and position in the epoch folded in), `index` the record to load. Every random choice made for a sample
(clip window, crop, flip, the replacement of a bad file) comes from generators seeded by (seed, draw), so a
sample does not depend on which worker made it or when, ranks never share a stream, and resuming at a draw
reproduces the samples exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Purposes of the per-draw generators (kept distinct so streams never overlap).
LOAD_STREAM = 1
REPLACE_STREAM = 2


class DrawKey(NamedTuple):
    """What a dataset receives from the sampler.

    Args:
        draw: unique global position of this draw in the run (>= 0).
        index: record index to load.
        padded: True for the duplicates a distributed sampler adds to even out ranks; evaluation metrics
            must not count them.
    """

    draw: int
    index: int
    padded: bool = False


def as_draw_key(key: DrawKey | int) -> DrawKey:
    """Accept plain integer indices too (then the draw is the index), so datasets work without our sampler."""
    if isinstance(key, DrawKey):
        return key
    if isinstance(key, tuple):
        return DrawKey(*key)
    i = int(key)
    return DrawKey(i, i, False)


def draw_rng(seed: int, draw: int, attempt: int, stream: int) -> np.random.Generator:
    """The generator for one purpose of one attempt of one draw.

    Args:
        seed: the run's data seed (>= 0).
        draw: the global draw position.
        attempt: 0 for the first record tried, k for the k-th replacement.
        stream: LOAD_STREAM or REPLACE_STREAM.
    """
    return np.random.default_rng([seed, draw, attempt, stream])
