"""LR, weight-decay and EMA-momentum schedules: pure functions of the 0-based optimizer step.

They reproduce the official schedulers exactly, including their offsets: the official LR and WD schedulers
are stepped at the START of each iteration with a counter incremented first, so iteration ``k`` uses
counter ``s = k + 1``; the EMA momentum generator yields its first value to iteration 0, so iteration ``k``
uses ``m_k``. Resuming at step ``k`` therefore needs nothing but ``k``.

LR shapes (``optimization.lr_schedule``): ``warmup_cosine`` (V-JEPA; V-JEPA 2's main stage is this with
``final_lr == lr``: warmup, then constant), ``linear_decay`` (V-JEPA 2's cooldown stage, the official
``LinearDecaySchedule``) and ``wsd`` (warmup-stable-decay in one run, the official ``WSDSchedule``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vjepa.pretrain.config import OptimizationConfig


def warmup_cosine_lr(
    step: int, *, start_lr: float, ref_lr: float, final_lr: float, warmup_steps: int, total_steps: int
) -> float:
    """The LR of iteration ``step``: linear warmup from ``start_lr`` to ``ref_lr``, then cosine to ``final_lr``.

    Args:
        step: 0-based iteration (the official counter is ``step + 1``).
        start_lr: LR at counter 0.
        ref_lr: LR at the end of warmup.
        final_lr: floor of the cosine phase.
        warmup_steps: ``int(warmup_epochs * ipe)``.
        total_steps: ``int(ipe_scale * epochs * ipe)``; the cosine phase lasts ``total_steps - warmup_steps``.
    """
    s = step + 1
    if s < warmup_steps:
        return start_lr + (s / max(1, warmup_steps)) * (ref_lr - start_lr)
    progress = (s - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(final_lr, final_lr + (ref_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def linear_decay_lr(step: int, *, ref_lr: float, final_lr: float, total_steps: int) -> float:
    """The LR of iteration ``step`` of a cooldown: linear from ``ref_lr`` (counter 0) to ``final_lr`` at counter
    ``total_steps`` (official ``LinearDecaySchedule``; with ``ipe_scale > 1`` the run stops before the end).

    Args:
        step: 0-based iteration (the official counter is ``step + 1``).
        ref_lr: LR at counter 0.
        final_lr: LR at counter ``total_steps``.
        total_steps: ``int(ipe_scale * epochs * ipe)``.
    """
    s = step + 1
    return ref_lr + (s / max(1, total_steps)) * (final_lr - ref_lr)


def wsd_lr(
    step: int,
    *,
    start_lr: float,
    ref_lr: float,
    final_lr: float,
    warmup_steps: int,
    decay_steps: int,
    total_steps: int,
) -> float:
    """Warmup-stable-decay (official ``WSDSchedule``): linear warmup from ``start_lr`` to ``ref_lr``, constant,
    then linear to ``final_lr`` over the last ``decay_steps`` of ``total_steps``.

    Args:
        step: 0-based iteration (the official counter is ``step + 1``).
        start_lr: LR at counter 0.
        ref_lr: LR of the stable phase.
        final_lr: LR at counter ``total_steps``.
        warmup_steps: ``int(warmup * ipe)``.
        decay_steps: ``int(cooldown * ipe)``.
        total_steps: ``int(ipe_scale * epochs * ipe)``.
    """
    s = step + 1
    stable_end = total_steps - decay_steps
    if s < warmup_steps:
        return start_lr + (s / max(1, warmup_steps)) * (ref_lr - start_lr)
    if s < stable_end:
        return ref_lr
    return ref_lr + ((s - stable_end) / max(1, decay_steps)) * (final_lr - ref_lr)


def cosine_weight_decay(step: int, *, ref_wd: float, final_wd: float, total_steps: int) -> float:
    """The weight decay of iteration ``step``: cosine from ``ref_wd`` (counter 0) to ``final_wd``.

    Args:
        step: 0-based iteration (the official counter is ``step + 1``).
        ref_wd: value at counter 0.
        final_wd: value at ``total_steps`` (the paper's WD increases: 0.04 -> 0.4).
        total_steps: ``int(ipe_scale * epochs * ipe)``.
    """
    s = step + 1
    progress = s / total_steps
    wd = final_wd + (ref_wd - final_wd) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(final_wd, wd) if final_wd <= ref_wd else min(final_wd, wd)


def linear_momentum(step: int, *, start: float, end: float, ipe: int, epochs: int, ipe_scale: float) -> float:
    """The EMA momentum of iteration ``step``: ``start + step * (end - start) / (ipe * epochs * ipe_scale)``.

    Args:
        step: 0-based iteration (the first iteration uses ``start``).
        start: momentum at step 0.
        end: momentum at step ``ipe * epochs * ipe_scale`` (never reached when ``ipe_scale > 1``).
        ipe: iterations per epoch.
        epochs: epochs.
        ipe_scale: schedule length factor (the official denominator is this float product, not truncated).
    """
    return start + step * (end - start) / (ipe * epochs * ipe_scale)


@dataclass(frozen=True)
class Schedules:
    """The three schedules of a run, bound to its optimization config.

    Args:
        config: the optimization section.
    """

    config: OptimizationConfig

    def lr(self, step: int) -> float:
        c = self.config
        if c.lr_schedule == "linear_decay":
            return linear_decay_lr(step, ref_lr=c.lr, final_lr=c.final_lr, total_steps=c.schedule_steps)
        if c.lr_schedule == "wsd":
            return wsd_lr(
                step,
                start_lr=c.start_lr,
                ref_lr=c.lr,
                final_lr=c.final_lr,
                warmup_steps=c.warmup_steps,
                decay_steps=int(c.cooldown * c.ipe),
                total_steps=c.schedule_steps,
            )
        return warmup_cosine_lr(
            step,
            start_lr=c.start_lr,
            ref_lr=c.lr,
            final_lr=c.final_lr,
            warmup_steps=c.warmup_steps,
            total_steps=c.schedule_steps,
        )

    def weight_decay(self, step: int) -> float:
        c = self.config
        return cosine_weight_decay(
            step, ref_wd=c.weight_decay, final_wd=c.final_weight_decay, total_steps=c.schedule_steps
        )

    @property
    def start_momentum(self) -> float:
        """``ema[0]``, or the momentum whose time constant is ``ema_horizon`` of the schedule's steps."""
        c = self.config
        if c.ema_horizon is None:
            return c.ema[0]
        return max(0.0, 1.0 - 1.0 / (c.ema_horizon * c.ipe * c.epochs * c.ipe_scale))

    def momentum(self, step: int) -> float:
        c = self.config
        return linear_momentum(
            step, start=self.start_momentum, end=c.ema[1], ipe=c.ipe, epochs=c.epochs, ipe_scale=c.ipe_scale
        )

    def initial_weight_share(self, steps: int) -> float:
        """The weight of the initial parameters in the EMA target after ``steps`` updates: the product of the
        momenta (the target is ``prod(m) * theta_0 + sum_k c_k * theta_k``). The paper's schedule brings it to
        ~0 within its first few thousand steps; 0.998 over a 220-step run (ipe_scale 1.25) leaves 0.77."""
        return math.exp(sum(math.log(max(self.momentum(k), 1e-300)) for k in range(steps)))

    def clipping(self, step: int) -> bool:
        """Whether gradients are clipped at ``step``: the official code clips once the 0-based epoch
        ``step // ipe`` exceeds ``warmup`` (from step 12,300 in the paper's recipe), if ``clip_grad`` is set."""
        c = self.config
        return c.clip_grad is not None and step // c.ipe > c.warmup
