"""The V-JEPA objective: predict, from the visible tokens, the layer-normed features an EMA target encoder
computes on the full clip, at the hidden positions. Read top to bottom, it is one training step's maths.

Options beyond the paper (defaults keep its step bit for bit): the teacher can be the EMA copy (paper), a
frozen encoder (e.g. a pixel-target run: SALT) or the online encoder itself (LeJEPA); an anti-collapse
regulariser (variance-covariance or SIGReg, :mod:`vjepa.pretrain.regularizers`) can be added to the loss.

``target="pixels"`` is the VideoMAE-style baseline of the paper's feature-vs-pixel ablation: the same
encoder, predictor and loss, but the predictor's outputs go through a linear head to the pixels of each
masked tubelet, normalized per tubelet and channel; there is no target encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa.masks.base import MaskPair
from vjepa.models.encoder import VideoEncoder
from vjepa.models.layers import init_weights
from vjepa.models.predictor import Predictor
from vjepa.models.tokens import gather_tokens
from vjepa.pretrain.config import RegularizerConfig, TargetKind, TeacherKind
from vjepa.pretrain.regularizers import regularization_terms

PIXEL_NORM_EPS = 1e-6


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
        pooled_targets: ``[B, D]`` target features averaged over all tokens of each clip (no gradient), for
            the collapse monitors; None for pixel targets.
        terms: the regulariser's weighted terms, by name (detached; already included in ``loss``).
        prediction_loss: the prediction loss alone (detached): ``loss`` minus the regulariser's terms.
    """

    loss: Tensor
    mask_losses: list[Tensor]
    pred_std: list[Tensor]
    target_std: list[Tensor]
    predictions: list[Tensor]
    targets: list[Tensor]
    pooled_targets: Tensor | None = None
    terms: dict[str, Tensor] = field(default_factory=dict)
    prediction_loss: Tensor | None = None


class JEPAObjective(nn.Module):
    """Context encoder + predictor (trained) and the teacher (the EMA target encoder, walled off).

    Args:
        encoder: the context encoder; it sees only each mask's context tokens.
        predictor: predicts the target tokens; mask setting ``i`` uses mask token ``i``.
        target_encoder: the teacher of ``ema`` and ``frozen``; it never receives gradients and is never in an
            optimizer group. None for ``target="pixels"`` and ``teacher="online"``.
        loss_exp: 1 gives the paper's L1 loss; the per-element loss is ``|p - t|^loss_exp / loss_exp``.
        target: ``features`` (V-JEPA) or ``pixels`` (the baseline; adds ``pixel_head``).
        teacher: ``ema`` (updated by :meth:`update_target`), ``frozen`` (never updated) or ``online`` (the
            encoder itself on the full clip, with gradient).
        regularizer: an anti-collapse term added to the loss (None or kind ``none``: the paper's loss).
    """

    def __init__(
        self,
        encoder: VideoEncoder,
        predictor: Predictor,
        target_encoder: VideoEncoder | None,
        loss_exp: float = 1.0,
        target: TargetKind = "features",
        teacher: TeacherKind = "ema",
        regularizer: RegularizerConfig | None = None,
    ) -> None:
        super().__init__()
        if loss_exp <= 0:
            raise ValueError(f"loss_exp must be positive, got {loss_exp}")
        if target not in ("features", "pixels"):
            raise ValueError(f"target must be 'features' or 'pixels', got {target!r}")
        if teacher not in ("ema", "frozen", "online"):
            raise ValueError(f"teacher must be 'ema', 'frozen' or 'online', got {teacher!r}")
        needs_teacher = target == "features" and teacher != "online"
        if needs_teacher and target_encoder is None:
            raise ValueError(f"target='features' with teacher={teacher!r} needs a target encoder")
        if not needs_teacher and target_encoder is not None:
            raise ValueError(f"target={target!r} with teacher={teacher!r} takes no target encoder")
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = target_encoder.requires_grad_(False) if target_encoder is not None else None
        self.loss_exp = loss_exp
        self.target = target
        self.teacher = teacher
        self.regularizer = regularizer or RegularizerConfig()
        self.pixel_head: nn.Linear | None = None
        if target == "pixels":
            c = encoder.config
            self.pixel_head = nn.Linear(c.embed_dim, c.in_chans * c.tubelet_size * c.patch_size**2)
            init_weights(self.pixel_head)

    def target_features(self, clips: Tensor) -> Tensor:
        """The teacher on the full clip, then a LayerNorm without affine (eps 1e-5): ``[B, N, D]``, fp32.
        Without gradient, except for the ``online`` teacher (the encoder itself).

        The norm runs in fp32 whatever the teacher computed in, as CUDA autocast runs it, so the L1 loss is
        computed in fp32 on every device and under every strategy (FSDP's bf16 policy included).
        """
        if self.teacher == "online":
            h = self.encoder(clips)  # [B, N, D]
        else:
            assert self.target_encoder is not None
            with torch.no_grad():
                h = self.target_encoder(clips)  # [B, N, D]
        return F.layer_norm(h.float(), (h.shape[-1],))

    @torch.no_grad()
    def target_pixels(self, clips: Tensor) -> Tensor:
        """Each tubelet's pixels, normalized per tubelet and channel: ``[B, N, t * p * p * C]``."""
        c = self.encoder.config
        return normalized_tubelets(clips, c.tubelet_size, c.patch_size)

    def forward(self, clips: Tensor, masks: Sequence[MaskPair], step: int = 0) -> ObjectiveOutput:
        """Args:
        clips: ``[B, 3, T, H, W]``.
        masks: one (context, target) index pair per mask setting, each ``[B, K]``.
        step: the optimizer step (seeds SIGReg's random directions; unused otherwise).
        """
        if not masks:
            raise ValueError("the objective needs at least one mask setting")
        grid = self.encoder.grid_for(clips)
        features = self.target == "features"
        h = self.target_features(clips) if features else self.target_pixels(clips)  # [B, N, D or t*p*p*C]
        targets = [gather_tokens(h, m.target) for m in masks]  # each [B, K_tgt, D or t*p*p*C]
        contexts = self.encoder(clips, [m.context for m in masks])  # each [B, K_ctx, D]
        predictions = [
            self.predictor(z, m.context, m.target, mask_index=i, grid=grid)
            for i, (z, m) in enumerate(zip(contexts, masks, strict=True))
        ]  # each [B, K_tgt, D]
        positions = [(m.context, m.target) for m in masks]
        terms = regularization_terms(
            self.regularizer, contexts, predictions, step, positions, grid.num_tokens
        )
        if self.pixel_head is not None:
            predictions = [self.pixel_head(p) for p in predictions]  # each [B, K_tgt, t*p*p*C]
        mask_losses = [
            torch.mean(torch.abs(p - t) ** self.loss_exp) / self.loss_exp
            for p, t in zip(predictions, targets, strict=True)
        ]
        loss = sum(mask_losses, start=torch.zeros((), device=clips.device)) / len(masks)
        prediction_loss = loss.detach()
        for term in terms.values():
            loss = loss + term
        return ObjectiveOutput(
            loss=loss,
            mask_losses=[x.detach() for x in mask_losses],
            pred_std=[_feature_std(p) for p in predictions],
            target_std=[_feature_std(t) for t in targets],
            predictions=predictions,
            targets=targets,
            pooled_targets=h.detach().mean(dim=1) if self.target == "features" else None,  # [B, D]
            terms={k: v.detach() for k, v in terms.items()},
            prediction_loss=prediction_loss,
        )

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA step after the optimizer step: ``target <- m * target + (1 - m) * online`` (a no-op for the
        ``frozen`` and ``online`` teachers and without a target encoder)."""
        if self.target_encoder is None or self.teacher != "ema":
            return
        target = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_mul_(target, momentum)
        torch._foreach_add_(target, online, alpha=1.0 - momentum)


@torch.no_grad()
def _feature_std(x: Tensor) -> Tensor:
    """Std over samples and tokens of each feature dimension, averaged over dimensions."""
    return x.detach().float().reshape(-1, x.shape[-1]).std(dim=0).mean()


@torch.no_grad()
def normalized_tubelets(
    clips: Tensor, tubelet_size: int, patch_size: int, eps: float = PIXEL_NORM_EPS
) -> Tensor:
    """Cut clips into tubelets in token order (time, row, column) and standardize each tubelet per channel
    (VideoMAE: mean and unbiased std over the tubelet's pixels, ``(x - mean) / (std + eps)``).

    Args:
        clips: ``[B, C, T, H, W]``.
        tubelet_size: frames per tubelet ``t``.
        patch_size: patch side ``p``.

    Returns:
        ``[B, N, t * p * p * C]``, pixels ordered (frame, row, column, channel) within a tubelet.
    """
    b, c, t, h, w = clips.shape
    tt, p = tubelet_size, patch_size
    x = clips.float().reshape(b, c, t // tt, tt, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # [B, T', H', W', t, p, p, C]
    x = x.reshape(b, (t // tt) * (h // p) * (w // p), tt * p * p, c)  # [B, N, t*p*p, C]
    x = (x - x.mean(dim=2, keepdim=True)) / (x.var(dim=2, unbiased=True, keepdim=True).sqrt() + eps)
    return x.flatten(2)  # [B, N, t*p*p*C]
