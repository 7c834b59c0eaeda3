"""Time one full V-JEPA training step and compare its FLOP rate with a plain matmul's on the same device.

A step is exactly what ``vjepa.pretrain.step.train_step`` does (on the trainer ``vjepa.pretrain.setup.build_trainer``
builds from the ``tiny_cpu`` recipe at the benchmark's sizes): the target encoder on the full clips, the
context encoder and the predictor forward and backward for every mask setting (the paper's two multi-block
settings), gradient clipping of the encoder and the predictor, AdamW, the EMA update.

FLOPs per step are counted from the architecture and the step's actual mask sizes: every matmul of the
patch embedding, the blocks (qkv, attention scores and values, proj, MLP) and the predictor's in/out
projections, 2 FLOPs per multiply-add; backward = 2x forward (the patch embedding needs no input gradient:
1x). LayerNorm, GELU, softmax, AdamW and EMA are not counted (they are a few % of the total), so the
achieved rate is "model FLOP/s" as in MFU.

Like the ``vjepa`` command, it sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads unless the environment
chooses a wait policy (the header prints which). The CPU seconds per step (all threads of the process) are
steadier than wall time on a machine shared with other jobs.

Each (model, precision) runs in its own subprocess, so the peak memory (CPU: peak RSS of the process; CUDA:
``max_memory_allocated``) is that configuration's own.

The header prints what decides ``precision: auto`` (:func:`vjepa.precision.resolve_precision`): torch's CPU
kernels, the bf16 instruction sets the CPU reports, the oneDNN ISA limit, the matmul probe, and the resolved
choice, so that the rule can be checked against the measured step times on any machine. Force an AVX2
laptop's kernels on an AVX512 machine with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``.

Examples::

    python benchmarks/train_step.py                                   # vit_tiny 8x112x112, batch 8, CPU, 2 threads
    python benchmarks/train_step.py --models tiny small base --precision fp32 bf16 auto
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/train_step.py   # an AVX2-only CPU
    python benchmarks/train_step.py --device cuda --models large --num-frames 16 --resolution 224 --batch 24 \\
        --pred-depth 12 --pred-width 384 --precision bf16 --activation-checkpointing both
"""

from __future__ import annotations

from vjepa.threads import set_thread_env_defaults, wait_policy

set_thread_env_defaults()  # as the vjepa command does, before torch loads (OMP_WAIT_POLICY)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from trainer import (  # noqa: E402  (benchmarks/trainer.py)
    COMPARISON_SIZES,
    add_size_arguments,
    batch_pool,
    sizes_from,
    step_config,
    step_trainer,
)
from vjepa.models.registry import EncoderConfig, PredictorConfig  # noqa: E402
from vjepa.precision import cpu_bf16_speedup, cpu_bf16_support, resolve_precision  # noqa: E402
from vjepa.pretrain.step import train_step  # noqa: E402
from vjepa.runtime import Runtime, resolve_device  # noqa: E402

# --------------------------------------------------------------------------------------------- FLOP count


def block_flops(tokens: int, width: int, hidden: int, queries: int | None = None) -> int:
    """Forward matmul FLOPs of one transformer block on ``tokens`` tokens (per sample), of which ``queries``
    (None: all) have their outputs computed (the predictor's last block: the target tokens only)."""
    q = tokens if queries is None else queries
    qkv = 2 * tokens * 3 * width * width
    rest = 2 * q * (width * width + 2 * width * hidden)  # attention projection and MLP
    attention = 2 * 2 * q * tokens * width  # q k^T and attn v
    return qkv + rest + attention


def encoder_flops(cfg: EncoderConfig, tokens: int) -> int:
    """Forward FLOPs of the blocks on ``tokens`` tokens (per sample)."""
    return cfg.depth * block_flops(tokens, cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio))


def patch_embed_flops(cfg: EncoderConfig, num_tokens: int) -> int:
    return 2 * num_tokens * cfg.in_chans * cfg.tubelet_size * cfg.patch_size**2 * cfg.embed_dim


def predictor_flops(cfg: PredictorConfig, k_ctx: int, k_tgt: int) -> int:
    d, hidden = cfg.predictor_embed_dim, int(cfg.predictor_embed_dim * cfg.mlp_ratio)
    n = k_ctx + k_tgt
    blocks = (cfg.depth - 1) * block_flops(n, d, hidden) + block_flops(n, d, hidden, queries=k_tgt)
    return 2 * k_ctx * cfg.embed_dim * d + blocks + 2 * k_tgt * d * cfg.embed_dim


def step_flops(
    enc: EncoderConfig, pred: PredictorConfig, batch: int, n: int, masks: list[tuple[int, int]]
) -> int:
    """Model FLOPs of one step: target forward, patch embedding (forward + weight gradient), and per mask
    setting the context encoder and the predictor forward + backward (3x forward).

    Args:
        enc: encoder architecture.
        pred: predictor architecture.
        batch: clips per step.
        n: tokens per clip.
        masks: ``(K_ctx, K_tgt)`` per mask setting.
    """
    target = encoder_flops(enc, n) + patch_embed_flops(enc, n)
    context = 2 * patch_embed_flops(enc, n)  # shared by the mask settings; no input gradient
    for k_ctx, k_tgt in masks:
        context += 3 * (encoder_flops(enc, k_ctx) + predictor_flops(pred, k_ctx, k_tgt))
    return batch * (target + context)


# ----------------------------------------------------------------------------------------------- matmul


def matmul_rate(device: torch.device, dtype: torch.dtype, seconds: float = 1.5) -> float:
    """FLOP/s of a plain square matmul (the device's practical peak for this dtype)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
        if device.type == "cuda" and reps % 10:
            continue
        _sync(device)
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------- step


@dataclass
class Setting:
    model: str
    precision: str
    activation_checkpointing: bool


def build(args: argparse.Namespace, setting: Setting, device: torch.device):
    """The trainer ``vjepa pretrain`` builds for this setting (:func:`vjepa.pretrain.setup.build_trainer`)."""
    sizes = sizes_from(args, setting.model)
    overrides = [
        f"runtime.device={device.type}",
        f"runtime.precision={setting.precision}",
        f"runtime.activation_checkpointing={str(setting.activation_checkpointing).lower()}",
        f"runtime.compile={str(args.compile).lower()}",
    ]
    config = step_config(sizes, args.steps + args.warmup, overrides)
    trainer = step_trainer(config, Runtime(device))
    return trainer, config, config.token_grid


def run_one(args: argparse.Namespace, setting: Setting) -> dict:
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    trainer, config, grid = build(args, setting, device)
    pool = batch_pool(config, trainer)  # a few distinct CPU batches, cycled (mask sizes differ between them)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, cpu_times, flops = [], [], []
    for i in range(args.warmup + args.steps):
        batch = pool[i % len(pool)].to(device)
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        train_step(trainer, [batch], i)
        _sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
            sizes = [(m.context.shape[1], m.target.shape[1]) for m in batch.masks]
            flops.append(step_flops(trainer.objective.encoder.config, trainer.objective.predictor.config,
                                    args.batch, grid.num_tokens, sizes))  # fmt: skip
    if args.profile:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            train_step(trainer, [batch], args.warmup + args.steps)
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=25), file=sys.stderr)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times.sort()
    median = times[len(times) // 2]
    return {
        "model": setting.model,
        "precision": setting.precision,
        "activation_checkpointing": setting.activation_checkpointing,
        "step_s": median,
        "step_s_min": times[0],
        "cpu_s": sorted(cpu_times)[len(cpu_times) // 2],
        "gflop_per_step": sum(flops) / len(flops) / 1e9,
        "peak_mem_gib": peak / 2**30,
    }


def print_precision_header(device: torch.device) -> None:
    """What decides ``precision: auto`` here, and its choice."""
    if device.type == "cpu":
        s = cpu_bf16_support()
        print(f"# CPU: torch kernels {s.torch_kernels} (ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '-')}), "
              f"bf16 instructions {'+'.join(s.bf16_flags) or 'none'}, oneDNN ISA limit "
              f"{s.onednn_isa_limit or 'none'}: native bf16 {'yes' if s.native else 'no'} ({s.reason})")  # fmt: skip
        print(f"# bf16 matmul probe: {cpu_bf16_speedup():.2f}x fp32's speed (CPU time)")
    decision = resolve_precision("auto", device)
    print(f"# precision auto -> {decision.precision}: {decision.reason}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny"], help="encoder sizes (tiny small base large ...)")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["auto", "fp32", "bf16"])
    p.add_argument("--activation-checkpointing", choices=["off", "on", "both"], default="off")
    add_size_arguments(p, COMPARISON_SIZES, model=False)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--steps", type=int, default=10, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoders and the predictor")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of one step")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one setting, print JSON
    args = p.parse_args()

    if args.one is not None:
        model, precision, ac = args.one.split(",")
        print(json.dumps(run_one(args, Setting(model, precision, ac == "1"))))
        return

    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    resolved = {prec: resolve_precision(prec, device).precision for prec in args.precision}
    rates = {
        prec: matmul_rate(device, torch.float32 if resolved[prec] == "fp32" else torch.bfloat16)
        for prec in args.precision
    }
    print_header(args, device, rates)
    print_table(args, resolved, rates)
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


def print_header(args: argparse.Namespace, device: torch.device, rates: dict[str, float]) -> None:
    """The machine, the workload, the matmul rates and what decides ``precision: auto``."""
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    policy, source = wait_policy()
    print(f"# device: {device.type} ({name}), threads {torch.get_num_threads()}, OpenMP wait policy {policy} "
          f"({source}), torch {torch.__version__}, load average at start {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"# clips {args.num_frames}x{args.resolution}x{args.resolution}, batch {args.batch}, predictor depth {args.pred_depth} "
          f"width {args.pred_width}, paper multi-block masks (2 settings); median of {args.steps} steps")  # fmt: skip
    for prec, rate in rates.items():
        print(f"# plain matmul {prec}: {rate / 1e9:.1f} GFLOP/s")
    print_precision_header(device)
    sys.stdout.flush()


def print_table(args: argparse.Namespace, resolved: dict[str, str], rates: dict[str, float]) -> None:
    """One row per (model, precision, activation checkpointing), each measured in its own subprocess."""
    acs = {"off": [False], "on": [True], "both": [False, True]}[args.activation_checkpointing]
    # an emulated bf16 matmul (a CPU without native bf16) is no peak to compare with: on AVX2 kernels its 2048^2
    # rate was 0.4 GFLOP/s, 15x below a whole bf16 step's model FLOP rate
    emulated = args.device == "cpu" and not cpu_bf16_support().native
    print("| model | precision | act. ckpt | step (s), median | min | CPU s/step | GFLOP/step | achieved TFLOP/s | "
          "% of matmul | peak mem (GiB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = sys.argv[1:]
    for model in args.models:
        for prec in args.precision:
            for ac in acs:
                cmd = [sys.executable, os.path.abspath(__file__), *base, "--one", f"{model},{prec},{int(ac)}"]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"| {model} | {prec} | {ac} | failed: {done.stderr.strip().splitlines()[-1]} |")
                    continue
                if args.profile:
                    print(done.stderr, file=sys.stderr)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                shown = prec if prec != "auto" else f"auto -> {resolved[prec]}"
                achieved = r["gflop_per_step"] * 1e9 / r["step_s"]
                share = (
                    "bf16 emulated"
                    if emulated and resolved[prec] == "bf16"
                    else f"{100 * achieved / rates[prec]:.1f}"
                )
                print(f"| {model} | {shown} | {'on' if ac else 'off'} | {r['step_s']:.3f} | {r['step_s_min']:.3f} | "
                      f"{r['cpu_s']:.3f} | {r['gflop_per_step']:.1f} | "
                      f"{achieved / 1e12:.3f} | {share} | {r['peak_mem_gib']:.2f} |",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
