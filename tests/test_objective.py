"""The objective: gradients reach encoder and predictor only; the target is walled off; EMA maths."""

from __future__ import annotations

import copy

import numpy as np
import torch

from vjepa.grid import TokenGrid
from vjepa.masks import PAPER_SETTINGS, MultiBlockMasks
from vjepa.models import EncoderConfig, VideoEncoder, build_predictor
from vjepa.pretrain.objective import JEPAObjective


def tiny_objective() -> JEPAObjective:
    torch.manual_seed(0)
    encoder = VideoEncoder(EncoderConfig(embed_dim=32, depth=2, num_heads=2, num_frames=4, resolution=64))
    predictor = build_predictor(encoder, predictor_embed_dim=16, depth=1, num_heads=2)
    return JEPAObjective(encoder, predictor, copy.deepcopy(encoder))


def paper_masks(batch_size: int, seed: int = 0):
    grid = TokenGrid(2, 4, 4)
    rng = np.random.default_rng(seed)
    return [MultiBlockMasks(grid, s)(batch_size, rng) for s in PAPER_SETTINGS]


def test_gradients_reach_every_online_parameter_and_no_target_parameter():
    objective = tiny_objective()
    out = objective(torch.randn(3, 3, 4, 64, 64), paper_masks(3))
    out.loss.backward()
    for name, p in objective.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in objective.predictor.named_parameters():
        assert p.grad is not None, name
    assert all(p.grad is None and not p.requires_grad for p in objective.target_encoder.parameters())
    assert len(out.mask_losses) == 2 and len(out.pred_std) == 2 and len(out.target_std) == 2
    assert torch.allclose(out.loss.detach(), sum(out.mask_losses) / 2)
    assert all(not t.requires_grad for t in out.targets)


def test_targets_are_layer_normed_without_affine():
    objective = tiny_objective()
    h = objective.target_features(torch.randn(2, 3, 4, 64, 64))
    torch.testing.assert_close(h.mean(-1), torch.zeros(2, 32), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.var(-1, unbiased=False), torch.ones(2, 32), atol=1e-3, rtol=0)


def test_targets_are_fp32_when_the_teacher_computes_in_bf16():
    """FSDP's bf16 parameter policy runs the teacher with bf16 weights; CPU autocast would keep the final norm
    in bf16 (CUDA autocast runs it in fp32). The targets are normalized in fp32 on every device."""
    objective = tiny_objective()
    clips = torch.randn(2, 3, 4, 64, 64)
    objective.target_encoder.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = objective.target_features(clips.bfloat16())
    assert h.dtype == torch.float32
    torch.testing.assert_close(h.var(-1, unbiased=False), torch.ones(2, 32), atol=1e-3, rtol=0)


def test_ema_update_matches_reference_formula():
    objective = tiny_objective()
    with torch.no_grad():
        for p in objective.encoder.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in objective.target_encoder.parameters()]
    online = [p.clone() for p in objective.encoder.parameters()]
    objective.update_target(0.998)
    for t0, o, t1 in zip(before, online, objective.target_encoder.parameters(), strict=True):
        torch.testing.assert_close(t1, 0.998 * t0 + (1 - 0.998) * o, rtol=0, atol=1e-7)


def test_loss_exp_two_is_half_squared_error():
    objective = tiny_objective()
    objective.loss_exp = 2.0
    out = objective(torch.randn(2, 3, 4, 64, 64), paper_masks(2))
    expected = sum(((p - t) ** 2).mean() / 2 for p, t in zip(out.predictions, out.targets, strict=True)) / 2
    torch.testing.assert_close(out.loss, expected)
