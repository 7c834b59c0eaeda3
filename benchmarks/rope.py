"""V-JEPA 2's 3D RoPE: how exact its angles are, and what it costs next to a sin-cos table.

1. Angle error of the RoPE tables built as the official code and transformers build them under bf16 autocast
   (frequencies and angles in the activation dtype) and as vjepa builds them (always fp32), against fp64, for
   head_dim 64 (ViT-L, ViT-H, V-JEPA 2's ViT-g) and the positions of 64-frame clips at 256 and 384 px.
2. Forward time of the same encoder with sin-cos positions and with RoPE (fp32, CPU, this process), timed
   alternately; CPU time (``time.process_time``), the machine is shared.

Usage: ``python benchmarks/rope.py [--model vit_small] [--num-frames 16] [--resolution 128] [--batch 2] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from vjepa.models import build_encoder


def angle_errors(head_dim: int = 64) -> None:
    seg = 2 * ((head_dim // 3) // 2)
    m = seg // 2
    print(f"RoPE angle error, head_dim {head_dim} ({seg} channels per axis, {m} frequencies), radians")
    print(f"{'positions':<28}{'bf16 (official/HF)':>20}{'fp32 (vjepa)':>16}")
    for label, top in (("t <= 31 (64 frames)", 32), ("h, w <= 15 (256 px)", 16), ("h, w <= 23 (384 px)", 24)):
        pos = torch.arange(top, dtype=torch.float64)
        exact = pos[:, None] * (1.0 / 10000 ** (torch.arange(m, dtype=torch.float64) / m))
        omega = torch.arange(m, dtype=torch.bfloat16)
        omega /= m
        omega = 1.0 / 10000**omega
        bf16 = (pos.to(torch.bfloat16)[:, None] * omega).double()
        fp32 = (pos.float()[:, None] * (1.0 / 10000 ** (torch.arange(m, dtype=torch.float32) / m))).double()
        print(
            f"{label:<28}{(bf16 - exact).abs().max().item():>20.4f}{(fp32 - exact).abs().max().item():>16.2e}"
        )


def forward_times(model: str, frames: int, size: int, batch: int, repeats: int) -> None:
    torch.manual_seed(0)
    encoders = {
        scheme: build_encoder(model, num_frames=frames, resolution=size, positions=scheme).eval()
        for scheme in ("sincos", "rope")
    }
    encoders["rope"].load_state_dict(encoders["sincos"].state_dict(), strict=False)  # same weights, no table
    clip = torch.randn(batch, 3, frames, size, size)
    times: dict[str, list[float]] = {k: [] for k in encoders}
    with torch.inference_mode():
        for encoder in encoders.values():
            encoder(clip)  # warm-up
        for _ in range(repeats):
            for name, encoder in encoders.items():
                start = time.process_time()
                encoder(clip)
                times[name].append(time.process_time() - start)
    tokens = encoders["rope"].grid_for(clip).num_tokens
    print(f"\nforward, {model}, clip {batch} x 3 x {frames} x {size}^2 ({tokens} tokens), fp32, CPU seconds")
    print(f"{'positions':<12}{'min':>10}{'median':>10}")
    for name, values in times.items():
        values = sorted(values)
        print(f"{name:<12}{values[0]:>10.3f}{values[len(values) // 2]:>10.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vit_small")
    parser.add_argument("--num-frames", "--frames", type=int, default=16)
    parser.add_argument("--resolution", "--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {torch.get_num_threads()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    angle_errors()
    forward_times(args.model, args.num_frames, args.resolution, args.batch, args.repeats)


if __name__ == "__main__":
    main()
