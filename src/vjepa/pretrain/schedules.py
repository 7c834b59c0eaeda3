"""A pretraining run's LR, weight-decay and EMA-momentum schedules, bound to its optimization config (the
pure schedule functions, shared with the probes, are in :mod:`vjepa.optim`).

LR shapes (``optimization.lr_schedule``): ``warmup_cosine`` (V-JEPA; V-JEPA 2's main stage is this with
``final_lr == lr``: warmup, then constant), ``linear_decay`` (V-JEPA 2's cooldown stage, the official
``LinearDecaySchedule``) and ``wsd`` (warmup-stable-decay in one run, the official ``WSDSchedule``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vjepa.optim import cosine_weight_decay, linear_decay_lr, linear_momentum, warmup_cosine_lr, wsd_lr
from vjepa.pretrain.config import OptimizationConfig


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
        warmup = {
            "start_lr": c.start_lr,
            "ref_lr": c.lr,
            "final_lr": c.final_lr,
            "warmup_steps": c.warmup_steps,
        }
        if c.lr_schedule == "wsd":
            decay_steps = int(c.cooldown * c.ipe)
            return wsd_lr(step, **warmup, decay_steps=decay_steps, total_steps=c.schedule_steps)
        return warmup_cosine_lr(step, **warmup, total_steps=c.schedule_steps)

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
