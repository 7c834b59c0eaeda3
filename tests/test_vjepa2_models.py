"""V-JEPA 2 models: the 3D RoPE layout written out from the official code, the named models, and the same
features as V-JEPA 1 encoders (masks, layers, images, activation checkpointing) with RoPE."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vjepa.errors import InvalidArgument
from vjepa.grid import TokenGrid
from vjepa.models import VJEPA2_MODELS, VideoEncoder, build_encoder, build_predictor
from vjepa.models.registry import EncoderConfig, canonical_name, encoder_config
from vjepa.models.rope import grid_positions, rope_segment, rope_tables
from vjepa.models.tokens import gather_tokens
from vjepa.summary import count_encoder_parameters


def rotate_written_out(x: torch.Tensor, pos: tuple[int, int, int]) -> torch.Tensor:
    """The official rotation of one head vector ``x`` [dh] of a token at (t, h, w), channel by channel in fp64:
    segment a (t, h, w) covers channels [a*seg, (a+1)*seg); channel c of a segment has the angle
    pos_a * omega[c mod seg/2] (frequencies repeated, not interleaved); pairs (2j, 2j+1) rotate together."""
    dh = x.numel()
    seg = 2 * ((dh // 3) // 2)
    m = seg // 2
    omega = [1.0 / 10000 ** (i / m) for i in range(m)]
    x = x.double()
    out = x.clone()
    for a in range(3):
        for j in range(seg // 2):
            c0, c1 = a * seg + 2 * j, a * seg + 2 * j + 1
            ang0, ang1 = pos[a] * omega[(2 * j) % m], pos[a] * omega[(2 * j + 1) % m]
            out[c0] = x[c0] * math.cos(ang0) - x[c1] * math.sin(ang0)
            out[c1] = x[c1] * math.cos(ang1) + x[c0] * math.sin(ang1)
    return out  # channels >= 3 * seg unchanged


@pytest.mark.parametrize("head_dim", [64, 88, 24, 16])
def test_rope_matches_the_official_formula_channel_by_channel(head_dim):
    g = torch.Generator().manual_seed(0)
    positions = [(0, 0, 0), (1, 2, 3), (7, 15, 11), (31, 23, 5)]
    x = torch.randn(1, 1, len(positions), head_dim, generator=g)  # [B, heads, K, dh]
    tables = rope_tables(torch.tensor(positions, dtype=torch.float32), head_dim)
    rotated = tables.rotate(x)[0, 0]
    for k, pos in enumerate(positions):
        torch.testing.assert_close(
            rotated[k].double(), rotate_written_out(x[0, 0, k], pos), atol=2e-5, rtol=0
        )
    seg = rope_segment(head_dim)
    assert torch.equal(rotated[:, 3 * seg :], x[0, 0, :, 3 * seg :])  # the rest is not rotated, bit for bit


def test_rope_segments_and_the_repeated_frequency_quirk():
    assert (rope_segment(64), rope_segment(88), rope_segment(16)) == (20, 28, 4)  # L, H, g (1408/22): 64
    tables = rope_tables(torch.tensor([[1.0, 0.0, 0.0]]), 64)
    angles = torch.atan2(tables.sin[0, 0, 0, :20].abs(), tables.cos[0, 0, 0, :20])  # angles in (0, 1]
    omega = 1.0 / 10000 ** (torch.arange(10) / 10)
    torch.testing.assert_close(angles, torch.cat([omega, omega]), atol=1e-6, rtol=0)  # w0..w9, w0..w9
    assert not torch.allclose(angles, omega.repeat_interleave(2), atol=1e-3)  # not w0, w0, w1, w1, ...
    # So a pair (2j, 2j+1) turns by two different angles: not a rotation, the norm changes (which is also why
    # the attention scores are not exactly a function of relative positions); the last 4 channels are left.
    x = torch.randn(1, 1, 1, 64, generator=torch.Generator().manual_seed(0))
    y = rope_tables(torch.tensor([[3.0, 5.0, 7.0]]), 64).rotate(x)
    assert abs(y[..., :60].norm() - x[..., :60].norm()) > 1e-3 and torch.equal(y[..., 60:], x[..., 60:])


def test_grid_positions_are_time_major_row_column():
    layout = TokenGrid(2, 3, 4)
    pos = grid_positions(torch.arange(24), layout)
    t, h, w = torch.meshgrid(torch.arange(2), torch.arange(3), torch.arange(4), indexing="ij")
    assert torch.equal(pos, torch.stack([t, h, w], -1).reshape(24, 3).float())


def test_rope_tables_stay_fp32_under_bf16_autocast():
    encoder = VideoEncoder(tiny_rope_config())
    grid = TokenGrid(2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = encoder.rope_for(grid)
    outside = encoder.rope_for(grid)
    assert inside.cos.dtype == torch.float32 and torch.equal(inside.cos, outside.cos)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = encoder(clip)
    with torch.no_grad():
        ref = encoder(clip)
    assert out.dtype == torch.bfloat16 and (out.float() - ref).abs().max() < 0.1


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights ~ N(0, 0.1^2) (LayerNorm weights 1 + N(0, 0.1^2)) so that attention is far from uniform."""
    g = torch.Generator().manual_seed(seed)
    norms = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if id(p) in norms else 0.0))
    return model


def tiny_rope_config(**changes) -> EncoderConfig:
    base = EncoderConfig(
        embed_dim=48, depth=2, num_heads=2, num_frames=4, resolution=32, patch_size=8, positions="rope"
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("name", list(VJEPA2_MODELS))
def test_vjepa2_models_by_name(name):
    with torch.device("meta"):
        encoder = build_encoder(name)
        predictor = build_predictor(encoder)
    c, preset = encoder.config, VJEPA2_MODELS[name]
    assert c.positions == "rope" and c.resolution == preset.resolution and encoder.pos_embed is None
    assert "pos_embed" not in encoder.state_dict() and "predictor_pos_embed" not in predictor.state_dict()
    assert c.num_heads == (
        22 if "giant" in name else 16
    )  # official vit_giant_xformers: 22 heads (head_dim 64)
    assert sum(p.numel() for p in encoder.parameters()) == count_encoder_parameters(name)
    p = predictor.config
    assert (p.predictor_embed_dim, p.depth, p.num_heads, p.num_mask_tokens) == (384, 12, 12, 10)
    assert canonical_name(name.replace("vit_", "vit").replace("_", "-")) == name  # e.g. vjepa2-vitl


def test_vjepa2_giant_mlp_and_384():
    assert encoder_config("vjepa2_vit_giant").mlp_ratio == 48 / 11
    assert encoder_config("vjepa2-vitg-384").resolution == 384
    assert encoder_config("vit_large", positions="rope").num_heads == 16
    with pytest.raises(InvalidArgument, match="unknown V-JEPA 2 model"):
        encoder_config("vjepa2_vit_small")
    with pytest.raises(InvalidArgument, match="positions"):
        dataclasses.replace(tiny_rope_config(), positions="learned")


def test_positions_come_from_the_mask_indices():
    """The indices carry the positions, not the order in the sequence: permuting the kept indices permutes
    the output. Every frame of the clip is the same, so only the positions tell frame 0's tokens from frame 1's."""
    torch.manual_seed(0)
    encoder = randomize(VideoEncoder(tiny_rope_config())).eval()
    clip = torch.randn(2, 3, 1, 32, 32).expand(-1, -1, 4, -1, -1)  # grid 2 x 4 x 4, frames identical
    frame0, frame1 = torch.arange(16).expand(2, -1), torch.arange(16, 32).expand(2, -1)
    with torch.no_grad():
        a = encoder(clip, frame0)
        perm = torch.randperm(16)
        torch.testing.assert_close(encoder(clip, frame0[:, perm]), a[:, perm], atol=1e-5, rtol=0)
        assert (encoder(clip, frame1) - a).abs().max() > 1e-3  # same tokens, other positions


def test_masked_rope_encode_equals_blocks_on_gathered_tokens_with_their_tables():
    torch.manual_seed(0)
    encoder = VideoEncoder(tiny_rope_config()).eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    keep = torch.tensor([[0, 2, 5, 7, 20], [1, 3, 4, 6, 31]])
    grid = encoder.grid_for(clip)
    with torch.no_grad():
        masked = encoder(clip, [keep, keep[:, :3]])
        ref = encoder.run_blocks(gather_tokens(encoder.embed(clip), keep), rope=encoder.rope_for(grid, keep))
    torch.testing.assert_close(masked[0], ref, atol=0, rtol=0)
    assert masked[1].shape == (2, 3, 48)
    with pytest.raises(ValueError, match="RoPE tables"):
        encoder.run_blocks(encoder.embed(clip))


def test_rope_layers_images_and_activation_checkpointing():
    torch.manual_seed(0)
    encoder = VideoEncoder(tiny_rope_config())
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        layers = encoder(clip, layers=[0, -1])
        torch.testing.assert_close(layers[-1], encoder(clip))
        image = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(encoder(image), encoder(image.unsqueeze(2).expand(-1, -1, 4, -1, -1)))
    grads = []
    for checkpointed in (False, True):
        encoder.zero_grad()
        encoder.grad_checkpointing = checkpointed
        encoder(clip, torch.tensor([[0, 1, 9, 30]] * 2)).square().mean().backward()
        grads.append([p.grad.clone() for p in encoder.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_rope_grid_config_reads_indices_on_the_built_grid():
    """At the built resolution the two layouts agree; at another one they differ (transformers' placement)."""
    torch.manual_seed(0)
    clip_pos = randomize(VideoEncoder(tiny_rope_config())).eval()
    config_pos = VideoEncoder(tiny_rope_config(rope_grid="config")).eval()
    config_pos.load_state_dict(clip_pos.state_dict())
    with torch.no_grad():
        native = torch.randn(1, 3, 4, 32, 32)
        torch.testing.assert_close(clip_pos(native), config_pos(native), atol=0, rtol=0)
        other = torch.randn(1, 3, 4, 48, 48)
        assert (clip_pos(other) - config_pos(other)).abs().max() > 1e-3


def test_rope_predictor_uses_its_mask_token_and_target_positions():
    torch.manual_seed(0)
    encoder = VideoEncoder(tiny_rope_config())
    predictor = build_predictor(encoder, predictor_embed_dim=32, depth=2, num_heads=2, num_mask_tokens=3)
    assert predictor.predictor_pos_embed is None and predictor.config.positions == "rope"
    randomize(predictor)
    ctx, tgt = torch.tensor([[0, 1, 2, 5]]), torch.tensor([[3, 4, 30]])
    z = torch.randn(1, 4, 48)
    with torch.no_grad():
        out = predictor(z, ctx, tgt, mask_index=1)
        assert out.shape == (1, 3, 48)
        torch.testing.assert_close(predictor(z, ctx, tgt, mask_index=4), out)  # taken modulo the token count
        assert (predictor(z, ctx, tgt, mask_index=0) - out).abs().max() > 1e-4
        moved = predictor(z, ctx, torch.tensor([[3, 4, 31]]), mask_index=1)
    assert (moved[:, 2] - out[:, 2]).abs().max() > 1e-4  # the moved target, and through attention the others


def test_vjepa1_defaults_are_unchanged():
    c = encoder_config("vit_large")
    assert (c.positions, c.resolution, c.num_heads) == ("sincos", 224, 16)
    assert encoder_config("vit_giant").num_heads == 16
    predictor = build_predictor(c)
    assert (predictor.config.num_heads, predictor.config.num_mask_tokens) == (16, 2)
