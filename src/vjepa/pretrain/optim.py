"""The official AdamW parameter groups, and setting a step's LR and weight decay on them.

Four groups, as the official ``init_opt``: encoder weights, predictor weights (scheduled weight decay),
then encoder and predictor biases and 1-D tensors (LayerNorm weights) with no weight decay. Everything else
with ``ndim > 1`` is decayed, mask tokens ``[1, 1, d]`` included. The target encoder is never in a group.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

WD_EXCLUDE = "wd_exclude"


def _split(named: Iterable[tuple[str, nn.Parameter]]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    decayed, excluded = [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        (excluded if ("bias" in name or p.ndim == 1) else decayed).append(p)
    return decayed, excluded


def param_groups(encoder: nn.Module, predictor_parts: Iterable[nn.Module]) -> list[dict]:
    """The four official groups.

    Args:
        encoder: the context encoder.
        predictor_parts: the predictor and anything trained with it (the pixel head of ``target: pixels``).
    """
    enc_decay, enc_plain = _split(encoder.named_parameters())
    pred_named = [(n, p) for part in predictor_parts for n, p in part.named_parameters()]
    pred_decay, pred_plain = _split(pred_named)
    return [
        {"params": enc_decay, "name": "encoder", WD_EXCLUDE: False},
        {"params": pred_decay, "name": "predictor", WD_EXCLUDE: False},
        {"params": enc_plain, "name": "encoder_no_wd", WD_EXCLUDE: True, "weight_decay": 0.0},
        {"params": pred_plain, "name": "predictor_no_wd", WD_EXCLUDE: True, "weight_decay": 0.0},
    ]


def build_optimizer(
    groups: list[dict], *, betas: tuple[float, float], eps: float, device: torch.device
) -> torch.optim.AdamW:
    """AdamW over ``groups``; the fused kernel where the device has one (CUDA, CPU), else ``foreach``.

    Args:
        groups: from :func:`param_groups`.
        betas: AdamW betas.
        eps: AdamW epsilon.
        device: where the parameters live.
    """
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=0.0, betas=betas, eps=eps, weight_decay=0.0, fused=fused)


def set_lr_and_wd(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Write the step's LR into every group and its weight decay into the groups without ``wd_exclude``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if not group.get(WD_EXCLUDE, False):
            group["weight_decay"] = weight_decay
