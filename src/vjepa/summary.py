"""Terminal output for the small informational commands (``vjepa models``, ``vjepa encode``)."""

from __future__ import annotations

import time

import torch

from vjepa.checkpoint import load_pretrained
from vjepa.models import MODEL_SIZES, VJEPA2_MODELS, VideoEncoder, build_encoder, encoder_config
from vjepa.runtime import log_precision, setup


def trainable_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_encoder_parameters(name: str) -> int:
    """Trainable parameters of a named size (or V-JEPA 2 model), counted from the config without allocating the
    model (heads and positions do not change the count)."""
    size = MODEL_SIZES[VJEPA2_MODELS[name].size if name in VJEPA2_MODELS else name]
    d, hidden, p = size.embed_dim, int(size.embed_dim * size.mlp_ratio), size.patch_size
    per_block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (hidden * d + hidden) + (d * hidden + d)
    return (3 * 2 * p * p * d + d) + size.depth * per_block + 2 * d


def print_model_table(num_frames: int = 16, resolution: int = 224) -> None:
    print(
        f"{'name':<14}{'width':>7}{'depth':>7}{'heads':>7}{'mlp':>7}{'patch':>7}{'tokens':>8}{'params':>15}"
    )
    for name, size in MODEL_SIZES.items():
        cfg = encoder_config(name, num_frames=num_frames, resolution=resolution)
        hidden = int(size.embed_dim * size.mlp_ratio)
        print(
            f"{name:<14}{size.embed_dim:>7}{size.depth:>7}{size.num_heads:>7}{hidden:>7}{size.patch_size:>7}"
            f"{cfg.grid.num_tokens:>8}{count_encoder_parameters(name):>15,}"
        )
    print(f"\nV-JEPA 2 (3D RoPE, no position table; tokens of {num_frames} frames at the native size)")
    print(f"{'name':<22}{'size':>6}{'width':>7}{'depth':>7}{'heads':>7}{'tokens':>8}{'params':>15}")
    for name in VJEPA2_MODELS:
        cfg = encoder_config(name, num_frames=num_frames)
        print(
            f"{name:<22}{cfg.resolution:>6}{cfg.embed_dim:>7}{cfg.depth:>7}{cfg.num_heads:>7}"
            f"{cfg.grid.num_tokens:>8}{count_encoder_parameters(name):>15,}"
        )


def encode_demo_clip(
    *,
    model: str = "vit_tiny",
    checkpoint: str | None = None,
    which: str = "target_encoder",
    num_heads: int | None = None,
    num_frames: int = 16,
    resolution: int = 224,
    batch_size: int = 2,
    seed: int = 0,
    precision: str = "auto",
    threads: int | None = None,
) -> torch.Tensor:
    """Build or load an encoder, encode a generated clip (smooth moving noise) on the CPU, print what
    happened. ``precision`` is ``auto | fp32 | bf16`` (see :func:`vjepa.precision.resolve_precision`);
    ``threads`` the CPU threads (None: the default of :func:`vjepa.runtime.configure_threads`)."""
    runtime = setup("cpu", threads, precision)
    if checkpoint:
        encoder: VideoEncoder = load_pretrained(checkpoint, num_heads=num_heads).encoder(which)  # type: ignore[arg-type]
        what = f"{which} of {checkpoint}"
    else:
        encoder = build_encoder(model, num_frames=num_frames, resolution=resolution)
        what = f"{model} (random init)"
    encoder.eval()
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(batch_size, 3, 1, resolution, resolution, generator=g)
    clip = torch.cat(
        [torch.roll(base, shifts=2 * t, dims=-1) for t in range(num_frames)], dim=2
    )  # [B,3,T,H,W]
    start = time.perf_counter()
    with torch.inference_mode(), runtime.autocast():
        tokens = encoder(clip)
    seconds = time.perf_counter() - start
    grid = encoder.config.token_grid(num_frames, resolution)
    print(f"encoder: {what}, {trainable_parameters(encoder):,} parameters")
    log_precision(None, runtime.decision)  # type: ignore[arg-type]
    print(runtime.threads.describe())  # type: ignore[union-attr]
    print(
        f"clip {tuple(clip.shape)} -> tokens {tuple(tokens.shape)} (grid {grid.as_tuple()}) in {seconds:.2f} s"
    )
    return tokens
