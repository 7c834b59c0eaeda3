"""Architecture: named sizes, shapes, masking semantics, resampled positions, images, intermediate layers."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from vjepa.errors import InvalidArgument
from vjepa.models import (
    MODEL_SIZES,
    EncoderConfig,
    VideoEncoder,
    build_encoder,
    build_predictor,
    encoder_config,
)
from vjepa.models.tokens import gather_tokens
from vjepa.summary import count_encoder_parameters

# Reference spec §1.1: trainable parameters without the frozen position table (p=16, tubelet 2, RGB).
SPEC_PARAMS = {
    "vit_tiny": 5_633_856,
    "vit_small": 21_884_544,
    "vit_base": 86_236_416,
    "vit_large": 303_885_312,
    "vit_huge": 631_648_000,
    "vit_giant": 1_012_173_952,
}


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", list(MODEL_SIZES))
def test_named_size_builds_with_spec_parameter_count(name):
    with torch.device("meta"):  # full size, no memory
        encoder = build_encoder(name)
    assert trainable(encoder) == count_encoder_parameters(name)
    if name in SPEC_PARAMS:
        assert trainable(encoder) == SPEC_PARAMS[name]
    size = MODEL_SIZES[name]
    assert encoder.blocks[0].mlp.fc1.out_features == int(size.embed_dim * size.mlp_ratio)
    assert not any(n == "pos_embed" for n, _ in encoder.named_parameters())  # a buffer, never trained


def test_giant_and_gigantic_mlp_widths():
    assert int(1408 * MODEL_SIZES["vit_giant"].mlp_ratio) == 6144
    assert MODEL_SIZES["vit_gigantic"].mlp_ratio == 4.0 and MODEL_SIZES["vit_gigantic"].patch_size == 14


@pytest.mark.parametrize("name", list(MODEL_SIZES))
def test_every_size_runs_forward_and_backward_at_tiny_resolution(name):
    """Full width, heads, MLP and patch of each size; depth cut to 2 for the large ones to keep CI fast."""
    cfg = encoder_config(name, num_frames=4, resolution=2 * MODEL_SIZES[name].patch_size)
    if cfg.depth > 12:
        cfg = dataclasses.replace(cfg, depth=2)
    encoder = VideoEncoder(cfg)
    clip = torch.randn(2, 3, 4, cfg.resolution, cfg.resolution)
    out = encoder(clip)
    assert out.shape == (2, 2 * 2 * 2, cfg.embed_dim)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


def tiny_config(**changes) -> EncoderConfig:
    return dataclasses.replace(
        EncoderConfig(embed_dim=32, depth=2, num_heads=2, num_frames=4, resolution=32), **changes
    )


def test_masked_encode_equals_gather_of_embedding_run_on_kept_tokens():
    torch.manual_seed(0)
    encoder = VideoEncoder(tiny_config()).eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    keep = torch.tensor([[0, 2, 5, 7], [1, 3, 4, 6]])
    with torch.no_grad():
        masked = encoder(clip, keep)
        reference = encoder.run_blocks(gather_tokens(encoder.embed(clip), keep))
        assert masked.shape == (2, 4, 32)
        torch.testing.assert_close(masked, reference, rtol=0, atol=0)
        # a list of masks gives one output per mask, each as if run alone
        outs = encoder(clip, [keep, keep[:, :2]])
        torch.testing.assert_close(outs[0], masked, rtol=0, atol=0)
        torch.testing.assert_close(outs[1], encoder(clip, keep[:, :2]), rtol=0, atol=0)


def test_images_are_repeated_along_time():
    encoder = VideoEncoder(tiny_config()).eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        from_image = encoder(image)
        from_clip = encoder(image.unsqueeze(2).repeat(1, 1, 4, 1, 1))
    torch.testing.assert_close(from_image, from_clip)


def test_other_clip_sizes_resample_the_position_table():
    encoder = VideoEncoder(tiny_config()).eval()
    with torch.no_grad():
        assert encoder(torch.randn(1, 3, 8, 48, 64)).shape == (1, 4 * 3 * 4, 32)
        # the built size uses the stored table as is
        tokens = encoder.embed(torch.zeros(1, 3, 4, 32, 32))
        bias = encoder.patch_embed.proj.bias
        torch.testing.assert_close(tokens, encoder.pos_embed + bias)


def test_intermediate_layers_are_normed_block_outputs():
    encoder = VideoEncoder(tiny_config(depth=3)).eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        layers = encoder(clip, layers=[0, -1])
        assert len(layers) == 2
        torch.testing.assert_close(layers[1], encoder(clip))
        x = encoder.embed(clip)
        torch.testing.assert_close(layers[0], encoder.norm(encoder.blocks[0](x)))
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        encoder(clip, layers=[3])


def test_activation_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    encoder = VideoEncoder(tiny_config())
    clip = torch.randn(2, 3, 4, 32, 32)
    encoder(clip).sum().backward()
    plain = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()
    encoder.grad_checkpointing = True
    encoder(clip).sum().backward()
    for a, p in zip(plain, encoder.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_predictor_has_one_mask_token_per_setting_and_predicts_target_positions():
    torch.manual_seed(0)
    encoder = VideoEncoder(tiny_config())
    predictor = build_predictor(
        encoder, predictor_embed_dim=16, depth=2, num_mask_tokens=3, zero_init_mask_tokens=False
    )
    assert len(predictor.mask_tokens) == 3
    clip = torch.randn(2, 3, 4, 32, 32)
    ctx_idx = torch.tensor([[0, 1, 2], [3, 4, 5]])
    tgt_idx = torch.tensor([[3, 4, 6, 7], [0, 1, 6, 7]])
    context = encoder(clip, ctx_idx)
    preds = [predictor(context, ctx_idx, tgt_idx, mask_index=i) for i in range(3)]
    assert all(p.shape == (2, 4, 32) for p in preds)
    assert not torch.allclose(preds[0], preds[1])  # different mask tokens
    sum(p.sum() for p in preds).backward()
    assert all(t.grad is not None for t in predictor.mask_tokens)


class _WholeBlock(torch.nn.Module):
    """A block that computes every row and then drops the first ``first_query``: the plain way."""

    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x, rope=None, first_query=0):
        return self.block(x, rope)[:, first_query:]


@pytest.mark.parametrize("positions", ["sincos", "rope"])
@pytest.mark.parametrize("checkpointed", [False, True])
def test_predictor_last_block_computes_only_the_target_rows(positions, checkpointed):
    """The last block runs its queries, projection and MLP on the target rows only; predictions and every
    gradient equal those of the whole block's outputs cut to the target rows."""
    torch.manual_seed(0)
    config = tiny_config(embed_dim=48, num_heads=2, patch_size=8, positions=positions)
    encoder = VideoEncoder(config)
    fast = build_predictor(encoder, predictor_embed_dim=24, depth=2, num_heads=2, zero_init_mask_tokens=False)
    plain = copy.deepcopy(fast)
    plain.predictor_blocks[-1] = _WholeBlock(plain.predictor_blocks[-1])
    fast.grad_checkpointing = plain.grad_checkpointing = checkpointed
    g = torch.Generator().manual_seed(1)
    order = torch.stack([torch.randperm(32, generator=g) for _ in range(2)])  # 2 x 4 x 4 tokens
    ctx_idx, tgt_idx = order[:, :8], order[:, 8:30]  # [2, 8], [2, 22]
    context = torch.randn(2, 8, 48, requires_grad=True)
    outputs, grads = [], []
    for predictor in (fast, plain):
        out = predictor(context, ctx_idx, tgt_idx)  # [2, 22, 48]
        outputs.append(out)
        inputs = [context, *predictor.parameters()]  # mask tokens of other settings get None
        grads.append(torch.autograd.grad(out.square().sum(), inputs, allow_unused=True))
    assert outputs[0].shape == (2, 22, 48)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-6, atol=1e-6)
    assert [g is None for g in grads[0]] == [g is None for g in grads[1]]
    unused = len(fast.mask_tokens) - 1  # only mask token 0 is used
    assert sum(g is not None for g in grads[0]) == 1 + len(list(fast.parameters())) - unused
    for fast_grad, plain_grad in zip(*grads, strict=True):  # the context's, then every parameter's
        torch.testing.assert_close(fast_grad, plain_grad, rtol=1e-5, atol=1e-6)


def test_config_validation_names_the_field():
    with pytest.raises(InvalidArgument, match="not divisible by num_heads"):
        EncoderConfig(embed_dim=30, depth=1, num_heads=4)
    with pytest.raises(InvalidArgument, match="depth must be a positive integer"):
        EncoderConfig(embed_dim=32, depth=0, num_heads=4)
    with pytest.raises(InvalidArgument, match="unknown model size 'vit_enormous'"):
        build_encoder("vit_enormous")
    with pytest.raises(InvalidArgument, match=r"unknown encoder config key\(s\) \['heads'\]"):
        EncoderConfig.from_dict({"embed_dim": 32, "depth": 1, "heads": 4})


@pytest.mark.parametrize("alias", ["large", "vit_large", "ViT-L", "vit-l"])
def test_size_aliases(alias):
    assert encoder_config(alias).embed_dim == 1024
