"""Probe training speed: epochs/s of an lr x weight-decay grid of attentive heads on cached features.

Times, in this single process, one training epoch over ``--samples`` feature sets of ``--tokens`` tokens of
width D (in memory, as a feature cache in the page cache), batch 16, with:

- ``separate``: G official attentive probes, each with its own AdamW, trained one after the other on each
  batch (how ``vjepa eval`` trained a grid before the head grids);
- ``grid``: the same G heads as one :class:`~vjepa.probe.heads.AttentiveGrid` (one pass per step for all
  heads, attention taken in token space) and one fused AdamW;
- ``grid, linear``: G average-pooling heads on mean-pooled features (what the linear readout trains on).

CPU seconds (``time.process_time``) are reported beside wall seconds: they are the fair measure on a shared
machine. Usage: ``python benchmarks/probe_grid.py [--samples 400] [--tokens 256] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from vjepa.probe.attentive import AttentiveClassifier
from vjepa.probe.heads import AttentiveGrid, LinearGrid
from vjepa.probe.linear import LinearClassifier
from vjepa.probe.sources import FeatureBatch
from vjepa.probe.training import grid_optimizer, grid_step
from vjepa.runtime import Runtime

CPU = Runtime(torch.device("cpu"))
BATCH = 16


def batches(tokens: torch.Tensor, labels: torch.Tensor):
    for s in range(0, len(labels), BATCH):
        i = torch.arange(s, min(s + BATCH, len(labels)))
        yield FeatureBatch(i, tokens[i], labels[i], torch.ones(len(i), dtype=torch.bool))


def epoch_separate(models, opts, tokens, labels) -> None:
    for b in batches(tokens, labels):
        x = b.tokens.flatten(0, 1)
        for model, opt in zip(models, opts, strict=True):
            loss = F.cross_entropy(model(x), b.labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()


def epoch_grid(grid, opt, tokens, labels) -> None:
    g = grid.num_grid_heads
    lr = torch.full((g,), 1e-3, dtype=torch.float64)
    wd = torch.full((g,), 0.01, dtype=torch.float64)
    for b in batches(tokens, labels):
        grid_step(grid, opt, b, lr, wd, 1.0, "fp32", CPU)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one call after one warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 192])
    parser.add_argument("--grids", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.1f}"
    )
    print(f"# one epoch: {args.samples} samples x {args.tokens} tokens, batch {BATCH}, 4 classes")
    print(
        "| D | heads | readout | epochs/s (CPU) | CPU s / epoch | wall s / epoch | CPU ms per sample and head |"
    )
    print("|---|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for d in args.widths:
        tokens = torch.randn(args.samples, 1, args.tokens, d, generator=g)
        labels = torch.randint(0, 4, (args.samples,), generator=g)
        pooled = tokens.mean(dim=2, keepdim=True)  # [M, 1, 1, D]
        heads = d // 64
        for num in args.grids:
            models = [AttentiveClassifier(d, heads, 4) for _ in range(num)]
            opts = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in models]
            grid = AttentiveGrid(AttentiveClassifier(d, heads, 4), num)
            gopt = grid_optimizer(grid)
            lgrid = LinearGrid(LinearClassifier(d, 4, standardize=True), num)
            lopt = grid_optimizer(lgrid)
            rows = [
                ("separate", partial(epoch_separate, models, opts, tokens, labels)),
                ("grid", partial(epoch_grid, grid, gopt, tokens, labels)),
                ("grid, linear", partial(epoch_grid, lgrid, lopt, pooled, labels)),
            ]
            for name, fn in rows:
                wall, cpu = timed(fn, args.repeats)
                per = 1e3 * cpu / (args.samples * num)
                print(
                    f"| {d} | {num} | {name} | {1 / cpu:.2f} | {cpu:.2f} | {wall:.2f} | {per:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
