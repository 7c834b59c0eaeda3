"""bf16 on CPU: the fast paths compute the same maps, and a bf16 run follows the fp32 loss curve."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pretrain_helpers import make_trainer, tiny_config
from vjepa.models.layers import attention
from vjepa.models.patch_embed import PatchEmbed3D
from vjepa.precision import autocast
from vjepa.pretrain.step import train_step


def test_patch_embedding_under_cpu_autocast_is_the_convolution():
    torch.manual_seed(0)
    embed = PatchEmbed3D(3, 64, patch_size=16, tubelet_size=2)
    x = torch.randn(2, 3, 4, 32, 48)
    reference = embed.proj(x).flatten(2).transpose(1, 2)  # [B, N, D] fp32 convolution
    assert torch.equal(embed(x), reference)  # fp32: the convolution itself
    with autocast("bf16", torch.device("cpu")):
        fast = embed(x)
    assert fast.dtype == torch.bfloat16 and fast.shape == reference.shape
    torch.testing.assert_close(fast.float(), reference, rtol=0.02, atol=0.02)


def test_attention_under_cpu_autocast_runs_in_fp32():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 16) for _ in range(3))
    assert torch.equal(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    with autocast("bf16", torch.device("cpu")):
        out = attention(qb, kb, vb)
    assert out.dtype == torch.bfloat16
    exact = F.scaled_dot_product_attention(qb.float(), kb.float(), vb.float())
    assert torch.equal(out, exact.bfloat16())  # fp32 maths on the bf16 inputs, rounded once


def test_bf16_run_follows_the_fp32_loss_curve():
    torch.set_num_threads(1)
    curves = {}
    for precision in ("fp32", "bf16"):
        config = tiny_config(["optimization.epochs=2", f"runtime.precision={precision}"])
        trainer, batches = make_trainer(config)
        curves[precision] = [train_step(trainer, [next(batches)], s).loss for s in range(10)]
    for a, b in zip(curves["fp32"], curves["bf16"], strict=True):
        assert abs(a - b) < 0.02 * a, curves


def test_patch_embedding_matmul_path_drops_remainders_like_the_convolution():
    embed = PatchEmbed3D(3, 8, patch_size=4, tubelet_size=2)
    x = torch.randn(1, 3, 5, 10, 9)  # remainders along every axis
    reference = embed(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = embed(x)
    assert fast.shape == reference.shape == (1, 2 * 2 * 2, 8)
    torch.testing.assert_close(fast.float(), reference, atol=0.05, rtol=0.05)
