"""The V-JEPA objective: predict, from the visible tokens, the layer-normed features an EMA target encoder
computes on the full clip, at the hidden positions. Read top to bottom, it is one training step's maths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa.masks.base import MaskPair
from vjepa.models.encoder import VideoEncoder
from vjepa.models.predictor import Predictor
from vjepa.models.tokens import gather_tokens


@dataclass
class ObjectiveOutput:
    """What one objective evaluation returns.

    Args:
        loss: the scalar to minimize (mean over mask settings).
        mask_losses: the loss of each mask setting (detached).
        pred_std: per mask setting, the std of the predictions over samples and tokens, averaged over
            feature dimensions (detached); falls toward 0 when the predictor collapses.
        target_std: the same for the targets.
        predictions: per mask setting ``[B, K_tgt, D]`` (with gradient).
        targets: per mask setting ``[B, K_tgt, D]`` (no gradient).
    """

    loss: Tensor
    mask_losses: list[Tensor]
    pred_std: list[Tensor]
    target_std: list[Tensor]
    predictions: list[Tensor]
    targets: list[Tensor]


class JEPAObjective(nn.Module):
    """Context encoder + predictor (trained) and the EMA target encoder (frozen, walled off).

    Args:
        encoder: the context encoder; it sees only each mask's context tokens.
        predictor: predicts the target tokens; mask setting ``i`` uses mask token ``i``.
        target_encoder: the EMA copy; it never receives gradients and is never in an optimizer group.
        loss_exp: 1 gives the paper's L1 loss; the per-element loss is ``|p - t|^loss_exp / loss_exp``.
    """

    def __init__(
        self, encoder: VideoEncoder, predictor: Predictor, target_encoder: VideoEncoder, loss_exp: float = 1.0
    ) -> None:
        super().__init__()
        if loss_exp <= 0:
            raise ValueError(f"loss_exp must be positive, got {loss_exp}")
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = target_encoder.requires_grad_(False)
        self.loss_exp = loss_exp

    @torch.no_grad()
    def target_features(self, clips: Tensor) -> Tensor:
        """The target encoder on the full clip, then a LayerNorm without affine (eps 1e-5): ``[B, N, D]``."""
        h = self.target_encoder(clips)  # [B, N, D]
        return F.layer_norm(h, (h.shape[-1],))

    def forward(self, clips: Tensor, masks: Sequence[MaskPair]) -> ObjectiveOutput:
        """Args:
        clips: ``[B, 3, T, H, W]``.
        masks: one (context, target) index pair per mask setting, each ``[B, K]``.
        """
        if not masks:
            raise ValueError("the objective needs at least one mask setting")
        grid = self.encoder.grid_for(clips)
        h = self.target_features(clips)  # [B, N, D]
        targets = [gather_tokens(h, m.target) for m in masks]  # each [B, K_tgt, D]
        contexts = self.encoder(clips, [m.context for m in masks])  # each [B, K_ctx, D]
        predictions = [
            self.predictor(z, m.context, m.target, mask_index=i, grid=grid)
            for i, (z, m) in enumerate(zip(contexts, masks, strict=True))
        ]  # each [B, K_tgt, D]
        mask_losses = [
            torch.mean(torch.abs(p - t) ** self.loss_exp) / self.loss_exp
            for p, t in zip(predictions, targets, strict=True)
        ]
        loss = sum(mask_losses, start=torch.zeros((), device=clips.device)) / len(masks)
        return ObjectiveOutput(
            loss=loss,
            mask_losses=[x.detach() for x in mask_losses],
            pred_std=[_feature_std(p) for p in predictions],
            target_std=[_feature_std(t) for t in targets],
            predictions=predictions,
            targets=targets,
        )

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA step after the optimizer step: ``target <- m * target + (1 - m) * online``."""
        target = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_mul_(target, momentum)
        torch._foreach_add_(target, online, alpha=1.0 - momentum)


@torch.no_grad()
def _feature_std(x: Tensor) -> Tensor:
    """Std over samples and tokens of each feature dimension, averaged over dimensions."""
    return x.detach().float().reshape(-1, x.shape[-1]).std(dim=0).mean()
