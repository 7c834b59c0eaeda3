"""AdamW parameter groups and the LR / weight-decay / EMA-momentum schedules, used by pretraining and probes.

Parameter groups: biases and 1-D tensors (LayerNorm weights) get no weight decay, everything else with
``ndim > 1`` is decayed, mask tokens ``[1, 1, d]`` included (the official ``init_opt`` and probes). A group
marked ``wd_exclude`` keeps weight decay 0 whatever the schedule says. Pretraining has four groups
(:func:`param_groups`); a probe grid two per head.

Schedules: pure functions of the 0-based optimizer step. They reproduce the official schedulers exactly,
including their offsets: the official LR and WD schedulers are stepped at the START of each iteration with a
counter incremented first, so iteration ``k`` uses counter ``s = k + 1``; the EMA momentum generator yields its
first value to iteration 0, so iteration ``k`` uses ``m_k``. Resuming at step ``k`` needs nothing but ``k``.
LR shapes: ``warmup_cosine`` (V-JEPA; V-JEPA 2's main stage is this with ``final_lr == lr``), ``linear_decay``
(V-JEPA 2's cooldown, the official ``LinearDecaySchedule``) and ``wsd`` (the official ``WSDSchedule``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

WD_EXCLUDE = "wd_exclude"

T = TypeVar("T", float, Tensor)

# ---------------------------------------------------------------------------------------------- groups


def split_decay(named: Iterable[tuple[str, nn.Parameter]]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(decayed, excluded)`` trainable parameters: biases and 1-D tensors are excluded from weight decay."""
    decayed, excluded = [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        (excluded if ("bias" in name or p.ndim == 1) else decayed).append(p)
    return decayed, excluded


def param_group(params: list[nn.Parameter], name: str, *, decay: bool) -> dict[str, Any]:
    """One AdamW group; without ``decay`` its weight decay is 0 for good (``wd_exclude``)."""
    if decay:
        return {"params": params, "name": name, WD_EXCLUDE: False}
    return {"params": params, "name": name, WD_EXCLUDE: True, "weight_decay": 0.0}


def param_groups(encoder: nn.Module, predictor_parts: Iterable[nn.Module]) -> list[dict]:
    """The four official pretraining groups, as the official ``init_opt``: encoder weights, predictor weights
    (scheduled weight decay), then encoder and predictor biases and 1-D tensors (no weight decay). The target
    encoder is never in a group.

    Args:
        encoder: the context encoder.
        predictor_parts: the predictor and anything trained with it (the pixel head of ``target: pixels``).
    """
    enc_decay, enc_plain = split_decay(encoder.named_parameters())
    pred_decay, pred_plain = split_decay(
        (n, p) for part in predictor_parts for n, p in part.named_parameters()
    )
    return [
        param_group(enc_decay, "encoder", decay=True),
        param_group(pred_decay, "predictor", decay=True),
        param_group(enc_plain, "encoder_no_wd", decay=False),
        param_group(pred_plain, "predictor_no_wd", decay=False),
    ]


def build_optimizer(
    groups: list[dict],
    *,
    device: torch.device,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over ``groups`` (LR and weight decay 0 until a schedule sets them); the fused kernel where the
    device has one (CUDA, CPU), else ``foreach``.

    Args:
        groups: from :func:`param_groups` or :func:`param_group`.
        device: where the parameters live.
        betas: AdamW betas (PyTorch's defaults, as the official probes).
        eps: AdamW epsilon.
    """
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=0.0, betas=betas, eps=eps, weight_decay=0.0, fused=fused)


def set_lr_and_wd(groups: torch.optim.Optimizer | Iterable[dict], lr: float, weight_decay: float) -> None:
    """Write a step's LR into every group of ``groups`` (an optimizer, or a slice of its ``param_groups``) and
    its weight decay into those without ``wd_exclude``."""
    if isinstance(groups, torch.optim.Optimizer):
        groups = groups.param_groups
    for group in groups:
        group["lr"] = lr
        if not group.get(WD_EXCLUDE, False):
            group["weight_decay"] = weight_decay


# -------------------------------------------------------------------------------------------- schedules


def cosine(start: T, end: float, progress: float) -> T:
    """``end + (start - end) * (1 + cos(pi * progress)) / 2``: ``start`` at progress 0, ``end`` at 1;
    ``start`` is a float or a tensor of values (one per probe head)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_value(start: T, end: float, step: int, total: int) -> T:
    """The probes' schedules (the official ones with warmup 0): :func:`cosine` at ``step / total``, held at
    ``end`` after ``total``."""
    return cosine(start, end, min(step / max(1, total), 1.0))


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
    return max(final_lr, cosine(ref_lr, final_lr, (s - warmup_steps) / max(1, total_steps - warmup_steps)))


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
    wd = cosine(ref_wd, final_wd, (step + 1) / total_steps)
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
