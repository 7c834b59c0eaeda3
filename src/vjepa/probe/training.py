"""Training a grid of probe heads: the official recipe (AdamW with default betas and eps, no weight decay on
biases and 1-D tensors, lr cosine to ``final_lr`` without warmup, weight decay cosine to 1e-6, gradient
clipping, loss averaged over views), applied to G heads at once with one lr and weight decay per head.

Every step reads one batch of features, runs the grid once, and updates every head with its own settings:
one ``torch.optim.AdamW`` with two parameter groups per head, gradients clipped head by head.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from vjepa.errors import InvalidArgument
from vjepa.optim import build_optimizer, cosine_value, param_group, set_lr_and_wd, split_decay
from vjepa.precision import Precision, autocast
from vjepa.probe.config import OptimizationSection
from vjepa.probe.heads import HeadGrid
from vjepa.probe.sources import FeatureBatch, FeatureSource, epoch_order
from vjepa.runtime import Runtime, log


def grid_optimizer(grid: HeadGrid) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` (default betas and eps, as the official probes) with two groups per head: the
    decayed parameters and the rest (biases and 1-D tensors, no weight decay); groups ``2g`` and ``2g + 1``
    belong to head ``g``. Fused where PyTorch has the fused kernel (one pass over all heads' parameters)."""
    groups: list[dict[str, Any]] = []
    for g, head in enumerate(grid.heads):
        decay, rest = split_decay(head.named_parameters())
        groups += [
            param_group(decay, f"head{g}", decay=True),
            param_group(rest, f"head{g}_no_wd", decay=False),
        ]
    return build_optimizer(groups, device=next(grid.parameters()).device)


def set_schedule(optimizer: torch.optim.Optimizer, lr: Tensor, weight_decay: Tensor) -> None:
    """Head ``g`` gets ``lr[g]`` and, on its decayed group, ``weight_decay[g]``."""
    for g, (lr_g, wd_g) in enumerate(zip(lr.tolist(), weight_decay.tolist(), strict=True)):
        set_lr_and_wd(optimizer.param_groups[2 * g : 2 * g + 2], lr_g, wd_g)


def clip_per_head(grid: HeadGrid, max_norm: float) -> None:
    """``clip_grad_norm_`` head by head."""
    for head in grid.heads:
        torch.nn.utils.clip_grad_norm_([p for p in head.parameters() if p.grad is not None], max_norm)


def average_gradients(grid: HeadGrid, runtime: Runtime) -> None:
    """Mean of the gradients over ranks (one flat all-reduce)."""
    grads = [p.grad for p in grid.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat.div_(runtime.world_size)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def view_scores(grid: HeadGrid, tokens: Tensor, precision: Precision) -> tuple[Tensor, Tensor]:
    """``(logits [G, B*V, C] float32, probabilities [G, B, C])``: the mean of the softmaxes over views."""
    b, v = tokens.shape[:2]
    with autocast(precision, tokens.device):
        logits = grid(tokens.flatten(0, 1)).float()  # [G, B*V, C]
    probs = logits.softmax(-1).view(logits.shape[0], b, v, -1).mean(2)
    return logits, probs


def grid_step(
    grid: HeadGrid,
    optimizer: torch.optim.Optimizer,
    batch: FeatureBatch,
    lr: Tensor,
    weight_decay: Tensor,
    grad_clip: float | None,
    precision: Precision,
    runtime: Runtime,
) -> Tensor:
    """One step of every head; returns ``[G, 2]``: summed loss and correct view-averaged predictions."""
    v = batch.tokens.shape[1]
    logits, probs = view_scores(grid, batch.tokens, precision)
    targets = batch.labels.repeat_interleave(v)  # [B*V]
    losses = torch.stack([F.cross_entropy(lg, targets) for lg in logits])  # [G], each head's mean
    optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()  # heads share no parameter: each gets its own loss's gradient
    if runtime.distributed:
        average_gradients(grid, runtime)
    if grad_clip is not None:
        clip_per_head(grid, grad_clip)
    set_schedule(optimizer, lr, weight_decay)
    optimizer.step()
    correct = (probs.argmax(-1) == batch.labels).sum(1).float()  # [G]
    return torch.stack([losses.detach() * len(batch.labels), correct], dim=1)


@dataclass
class EpochRecord:
    """Per-head results of one epoch (``[G]`` tensors), identical on every rank.

    Args:
        epoch: 1-based.
        epochs: the epochs planned in all (:func:`planned_epochs`).
        train_loss: mean training loss over the epoch.
        train_top1: training accuracy (%) over the epoch (view-averaged predictions).
        seconds: wall time of the epoch's training steps.
    """

    epoch: int
    epochs: int
    train_loss: Tensor
    train_top1: Tensor
    seconds: float


def train_grid(
    grid: HeadGrid,
    settings: Sequence[tuple[float, float]],
    source: FeatureSource,
    indices: np.ndarray,
    opt: OptimizationSection,
    after_epoch: Callable[[EpochRecord], None],
    *,
    seed: int,
    precision: Precision,
    runtime: Runtime,
) -> None:
    """Train every head on the same batches for :func:`planned_epochs` epochs; ``after_epoch`` sees each
    epoch's record."""
    lr0 = torch.tensor([s[0] for s in settings], dtype=torch.float64)
    wd0 = torch.tensor([s[1] for s in settings], dtype=torch.float64)
    optimizer = grid_optimizer(grid)
    epochs = planned_epochs(opt, len(indices), runtime.world_size)
    total = epochs * steps_per_epoch(opt, len(indices), runtime.world_size)
    step = 0
    grid.train()
    for epoch in range(epochs):
        order = epoch_order(indices, seed, epoch, runtime.rank, runtime.world_size)
        sums = torch.zeros(len(settings), 2, dtype=torch.float64, device=runtime.device)
        start = time.perf_counter()
        for batch in source.batches(order, opt.batch_size, epoch):
            step += 1  # the official schedulers step before the iteration: the first lr is lr(1)
            lr = cosine_value(lr0, opt.final_lr, step, total)
            wd = cosine_value(wd0, opt.final_weight_decay, step, total)
            sums += grid_step(grid, optimizer, batch, lr, wd, opt.grad_clip, precision, runtime).double()
        seen = torch.tensor(float(len(order)), dtype=torch.float64, device=runtime.device)
        if runtime.distributed:
            dist.all_reduce(sums)
            dist.all_reduce(seen)
        sums = (sums / seen.clamp_min(1)).cpu()
        seconds = time.perf_counter() - start
        after_epoch(EpochRecord(epoch + 1, epochs, sums[:, 0].float(), 100 * sums[:, 1].float(), seconds))


def steps_per_epoch(opt: OptimizationSection, num_samples: int, world_size: int) -> int:
    """Optimizer steps of one epoch over ``num_samples`` training samples shared by ``world_size`` ranks."""
    if num_samples < world_size:
        raise InvalidArgument(f"{num_samples} training samples cannot be shared by {world_size} processes")
    return math.ceil((num_samples // world_size) / opt.batch_size)


def planned_epochs(opt: OptimizationSection, num_samples: int, world_size: int) -> int:
    """``max(epochs, ceil(min_steps / steps per epoch))``: small training sets (and label fractions) get
    more epochs, so that every probe takes at least ``min_steps`` optimizer steps."""
    return max(opt.epochs, math.ceil(opt.min_steps / steps_per_epoch(opt, num_samples, world_size)))


def log_epoch(runtime: Runtime, record: EpochRecord, extra: str = "") -> None:
    """One line per epoch: the best head's training loss and accuracy, and the time."""
    best = int(record.train_loss.argmin())
    log(
        runtime,
        f"[epoch {record.epoch}/{record.epochs}] {len(record.train_loss)} head(s): best train loss "
        f"{record.train_loss[best]:.4f}, train top-1 {record.train_top1[best]:.1f}%{extra} "
        f"({record.seconds:.2f} s)",
    )
