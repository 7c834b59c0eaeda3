"""Time multi-block mask generation per batch, against a naive per-sample loop.

    python benchmarks/masks.py [--runs 300]

Prints one row per (batch size, grid, setting, truncation, implementation): the median milliseconds
to draw one batch's masks (index tensors included), on one thread.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch

from vjepa.grid import TokenGrid
from vjepa.masks import LONG_RANGE, PAPER_SETTINGS, SHORT_RANGE, MaskPair, MultiBlockMasks, MultiBlockSetting
from vjepa.masks.base import Truncation


def naive_multiblock(
    grid: TokenGrid,
    setting: MultiBlockSetting,
    truncation: Truncation,
    batch_size: int,
    rng: np.random.Generator,
) -> MaskPair:
    """The straightforward way: a Python loop over samples and blocks, one volume per sample."""
    u_t, u_s, u_a = rng.random(3)
    s = setting
    t = max(1, int(grid.depth * (s.temporal_scale[0] + u_t * (s.temporal_scale[1] - s.temporal_scale[0]))))
    n = int(grid.tokens_per_frame * (s.spatial_scale[0] + u_s * (s.spatial_scale[1] - s.spatial_scale[0])))
    a = s.aspect_ratio[0] + u_a * (s.aspect_ratio[1] - s.aspect_ratio[0])
    h = min(int(round(math.sqrt(n * a))), grid.height)
    w = min(int(round(math.sqrt(n / a))), grid.width)
    contexts, targets = [], []
    for _ in range(batch_size):
        while True:
            visible = np.ones(grid.as_tuple(), dtype=bool)  # [T', H', W']
            for _ in range(s.num_blocks):
                top = int(rng.integers(0, grid.height - h + 1))
                left = int(rng.integers(0, grid.width - w + 1))
                start = int(rng.integers(0, grid.depth - t + 1))
                visible[start : start + t, top : top + h, left : left + w] = False
            if visible.any():
                break
        flat = visible.reshape(-1)
        contexts.append(np.flatnonzero(flat))
        targets.append(np.flatnonzero(~flat))
    k_ctx = min(len(c) for c in contexts)
    if s.max_keep is not None:
        k_ctx = min(k_ctx, s.max_keep)
    k_tgt = min(len(c) for c in targets)

    def cut(lists: list[np.ndarray], k: int) -> torch.Tensor:
        if truncation == "official":
            rows = [x[:k] for x in lists]
        else:
            rows = [np.sort(rng.choice(x, size=k, replace=False)) for x in lists]
        return torch.from_numpy(np.stack(rows).astype(np.int64))  # [B, k]

    return MaskPair(cut(contexts, k_ctx), cut(targets, k_tgt))


def draw_fast(gens: Sequence[MultiBlockMasks], batch_size: int, rng: np.random.Generator) -> list[MaskPair]:
    return [g(batch_size, rng) for g in gens]


def draw_naive(
    grid: TokenGrid,
    settings: Sequence[MultiBlockSetting],
    truncation: Truncation,
    batch_size: int,
    rng: np.random.Generator,
) -> list[MaskPair]:
    return [naive_multiblock(grid, s, truncation, batch_size, rng) for s in settings]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="timed batches per row")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    cases = [
        (64, TokenGrid(8, 14, 14)),  # 16 x 224 x 224 clips
        (24, TokenGrid(8, 14, 14)),  # the official per-GPU batch at 224
        (10, TokenGrid(8, 24, 24)),  # the official per-GPU batch at 384
    ]
    named = {"short": (SHORT_RANGE,), "long": (LONG_RANGE,), "paper (both)": PAPER_SETTINGS}
    header = f"| {'batch':>5} | {'grid':>8} | {'setting':<12} | {'truncation':<10} | {'vectorized ms':>13} | {'naive loop ms':>13} | {'speed-up':>8} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for batch_size, grid in cases:
        for name, settings in named.items():
            if batch_size != 64 and name != "paper (both)":
                continue
            for truncation in ("official", "random"):
                gens = [MultiBlockMasks(grid, s, truncation) for s in settings]
                fast = median_ms(partial(draw_fast, gens, batch_size, np.random.default_rng(0)), args.runs)
                naive = median_ms(
                    partial(draw_naive, grid, settings, truncation, batch_size, np.random.default_rng(0)),
                    max(10, args.runs // 10),
                )
                size = "x".join(map(str, grid.as_tuple()))
                print(
                    f"| {batch_size:>5} | {size:>8} | {name:<12} | {truncation:<10} | {fast:>13.3f} | {naive:>13.3f} | {naive / fast:>7.1f}x |"
                )


if __name__ == "__main__":
    main()
