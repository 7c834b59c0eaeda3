"""One optimizer step of pretraining, written to read like the algorithm:

1. the step's LR and weight decay from the schedules (pure functions of the step);
2. for each of ``accumulation_steps`` micro-batches: the objective (target encoder on the full clip,
   context encoder + predictor per mask setting) under autocast, and ``backward`` of ``loss / accum``
   (gradients are all-reduced by DDP on the last micro-batch only);
3. the loss is averaged over ranks; a NaN or infinite loss stops the run before the weights change;
4. gradient norms of the encoder and of the predictor, each clipped at ``clip_grad`` once the epoch exceeds
   ``warmup`` (official);
5. AdamW step, then the EMA update of the target encoder with the step's momentum.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vjepa.errors import VjepaError
from vjepa.masks import MaskedBatch
from vjepa.optim import set_lr_and_wd
from vjepa.precision import autocast
from vjepa.pretrain.distributed import gradient_sync, plain_tensor
from vjepa.pretrain.objective import ObjectiveOutput
from vjepa.pretrain.setup import Trainer


class TrainingDiverged(VjepaError):
    """The loss became NaN or infinite (a learning rate or a config the user can change); the message names the step and the last good checkpoint."""


@dataclass
class StepResult:
    """What one optimizer step reports.

    Args:
        loss: the loss averaged over micro-batches and ranks.
        mask_losses: the same per mask setting.
        lr: the step's learning rate.
        weight_decay: the step's weight decay.
        momentum: the EMA momentum applied after the step.
        grad_norm_encoder: the encoder's gradient norm before clipping.
        grad_norm_predictor: the predictor's (with the pixel head) gradient norm before clipping.
        clipped: whether clipping was active.
        output: the last micro-batch's objective output (for the monitors), detached.
        prediction_loss: the prediction loss alone (``loss`` without the regulariser's terms).
        terms: the regulariser's weighted terms by name, averaged like ``loss`` (empty without one).
    """

    loss: float
    mask_losses: list[float]
    lr: float
    weight_decay: float
    momentum: float
    grad_norm_encoder: float
    grad_norm_predictor: float
    clipped: bool
    output: ObjectiveOutput
    prediction_loss: float = float("nan")
    terms: dict[str, float] = field(default_factory=dict)


def train_step(trainer: Trainer, micro_batches: Sequence[MaskedBatch], step: int) -> StepResult:
    """One optimizer step over ``micro_batches`` (already on the device); see the module docstring.

    Args:
        trainer: models, optimizer, schedules.
        micro_batches: ``accumulation_steps`` batches of this rank.
        step: the 0-based step (selects the schedules' values).

    Raises:
        TrainingDiverged: the loss is NaN or infinite (the weights are left unchanged).
    """
    s = trainer.schedules
    lr, wd, momentum = s.lr(step), s.weight_decay(step), s.momentum(step)
    set_lr_and_wd(trainer.optimizer, lr, wd)
    values, out = _forward_backward(trainer, micro_batches, step)
    if not math.isfinite(values[0]):
        raise TrainingDiverged(f"step {step}: the loss is {values[0]}")
    num_masks, num_terms = len(out.mask_losses), len(out.terms)

    clipping = s.clipping(step)
    max_norm = s.config.clip_grad if clipping else None
    norm_enc = _grad_norm(trainer.objective.encoder.parameters(), max_norm)
    norm_pred = _grad_norm((p for part in trainer.predictor_parts for p in part.parameters()), max_norm)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.objective.update_target(momentum)
    return StepResult(
        loss=values[0],
        mask_losses=values[1 : 1 + num_masks],
        lr=lr,
        weight_decay=wd,
        momentum=momentum,
        grad_norm_encoder=float(norm_enc),
        grad_norm_predictor=float(norm_pred),
        clipped=clipping,
        output=_detached(out),
        prediction_loss=values[-1] if out.terms else values[0],
        terms=dict(zip(out.terms, values[1 + num_masks : 1 + num_masks + num_terms], strict=True)),
    )


def _forward_backward(
    trainer: Trainer, micro_batches: Sequence[MaskedBatch], step: int
) -> tuple[list[float], ObjectiveOutput]:
    """Forward and backward of every micro-batch; returns the losses ``[loss, *mask losses, *terms
    (, prediction loss)]`` averaged over micro-batches and ranks, and the last micro-batch's output."""
    n = len(micro_batches)
    loss_sum: Tensor | None = None
    out: ObjectiveOutput | None = None
    for i, batch in enumerate(micro_batches):
        with gradient_sync(trainer.model, enabled=i == n - 1):
            with autocast(trainer.precision, trainer.runtime.device):
                out = trainer.model(batch.clips, batch.masks, step=step)
            (out.loss / n).backward()
        parts = [out.loss.detach(), *out.mask_losses, *out.terms.values()]
        if out.terms:
            parts.append(out.prediction_loss)
        losses = torch.stack([x.float() for x in parts])  # [1 + M + terms (+ 1)]
        loss_sum = losses if loss_sum is None else loss_sum + losses
    assert loss_sum is not None and out is not None
    losses = loss_sum / n
    if trainer.runtime.distributed:
        dist.all_reduce(losses)
        losses /= trainer.runtime.world_size
    return losses.tolist(), out


def _grad_norm(params: Iterator[nn.Parameter], max_norm: float | None) -> Tensor:
    """The total gradient norm; with ``max_norm``, also clip to it."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)  # torch >= 2.6
    if max_norm is None and get_total_norm is not None:
        return plain_tensor(get_total_norm([p.grad for p in params], foreach=True))
    # Before torch 2.6, clipping to an infinite norm computes the same norm and scales by exactly 1.
    limit = math.inf if max_norm is None else max_norm
    return plain_tensor(torch.nn.utils.clip_grad_norm_(params, limit, foreach=True))


def _detached(out: ObjectiveOutput) -> ObjectiveOutput:
    return ObjectiveOutput(
        loss=out.loss.detach(),
        mask_losses=out.mask_losses,
        pred_std=out.pred_std,
        target_std=out.target_std,
        predictions=[p.detach() for p in out.predictions],
        targets=[t.detach() for t in out.targets],
        pooled_targets=out.pooled_targets,
        terms=out.terms,
        prediction_loss=out.prediction_loss,
    )
