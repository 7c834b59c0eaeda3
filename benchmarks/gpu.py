"""The GPU numbers of docs/distributed.md in one command: training-step time, clips/s, peak memory and model
FLOPs utilisation of ViT-L 16x224 and ViT-g 16x256 under DDP and FSDP (bf16 autocast, SDPA attention),
activation checkpointing off/on, ``torch.compile`` off/on, then the data pipeline's clips/s per worker.

A step is exactly ``vjepa.pretrain.step.train_step`` (target encoder on the full clips; context encoder and
predictor forward and backward for the paper's two multi-block mask settings; clipping; AdamW; EMA) on the
trainer ``vjepa.pretrain.setup.build_trainer`` builds, models placed as ``vjepa pretrain`` places them. The models run on every GPU
of the machine under one ``torchrun`` (DDP and FSDP even on a single GPU: a process group of one), with the
paper's predictor (depth 12, width 384) and random clips (no decoding in the timed loop). Model FLOPs are
counted from the architecture and each step's mask sizes (``benchmarks/train_step.py``: matmuls only, 2 per
multiply-add, backward = 2x forward); MFU divides the achieved rate of one GPU by its dense bf16 peak (H100 /
H200: 989 TFLOP/s; ``--peak-tflops`` for others). The data rows time one decoding worker
(``benchmarks/data.py``: H.264 sources, 16 frames of 224 crops) per CPU second.

Usage::

    python benchmarks/gpu.py                  # on a CUDA machine: the whole table (not yet run on one)
    python benchmarks/gpu.py --grid full      # every combination (longer)
    python benchmarks/gpu.py --memory         # the computed memory of model states per GPU (no GPU needed)
    python benchmarks/gpu.py --smoke          # a seconds-long CPU run of the same code (tests use it)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the FLOP count of train_step.py and the sources of data.py: one copy each

from data import CLIP, CROP, make_source, time_dataset  # noqa: E402
from trainer import StepSizes, batch_pool, step_config, step_trainer  # noqa: E402
from vjepa.data.datasets import VideoClipDataset  # noqa: E402
from vjepa.data.index import VideoRecord  # noqa: E402
from vjepa.data.transforms import max_useful_short_side  # noqa: E402
from vjepa.models import build_encoder, build_predictor  # noqa: E402
from vjepa.pretrain.distributed import FSDP_MIN_TORCH_NAME, fsdp_supported  # noqa: E402
from vjepa.pretrain.step import train_step  # noqa: E402
from vjepa.runtime import finish, setup, teardown  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "L40S": 362.0}


@dataclass(frozen=True)
class Workload:
    """One model at one clip shape and per-GPU batch."""

    model: str
    num_frames: int
    resolution: int
    batch: int
    pred_depth: int = 12
    pred_width: int = 384

    @property
    def label(self) -> str:
        return f"{self.model} {self.num_frames}x{self.resolution}"


@dataclass(frozen=True)
class Setting:
    work: Workload
    strategy: str  # ddp | fsdp
    activation_checkpointing: bool
    compile: bool


def workloads(args: argparse.Namespace) -> list[Workload]:
    if args.smoke:
        return [Workload("vit_tiny", 8, 64, 2, pred_depth=1, pred_width=96)]
    return [
        Workload("vit_large", 16, 224, args.batch_large),
        Workload("vit_giant", 16, 256, args.batch_giant),
    ]


def strategies() -> tuple[str, ...]:
    """Both, except on a torch older than vjepa's FSDP needs (the header line says so)."""
    return ("ddp", "fsdp") if fsdp_supported() else ("ddp",)


def settings(args: argparse.Namespace) -> list[Setting]:
    """The default grid: both strategies with activation checkpointing off and on, and torch.compile with
    checkpointing off; ``full``: every combination. ``--smoke`` never compiles (CPU compilers are slow).

    Every eager row comes before every compiled one: compilation time is the least predictable part, so
    a run cut short by ``--budget-s`` (or by a machine's time limit) still has the whole eager table."""
    out = []
    for comp in (False, True):
        for work in workloads(args):
            for strategy in strategies():
                for ac in (False, True):
                    if comp and (args.smoke or (args.grid == "default" and ac)):
                        continue
                    out.append(Setting(work, strategy, ac, comp))
    return out


def over_budget(deadline: float, device: torch.device) -> bool:
    """Whether the time budget is spent, agreed by every rank (one rank skipping a setting that the others
    run would hang their collectives)."""
    late = torch.tensor([float(time.time() > deadline)], device=device)
    dist.all_reduce(late, op=dist.ReduceOp.MAX)
    return bool(late.item())


# ------------------------------------------------------------------------------------------------ worker


def run_setting(setting: Setting, steps: int, warmup: int, runtime) -> dict:
    """Time ``steps`` training steps (after ``warmup``) of one setting on this process group."""
    # train_step.py sets this process's OpenMP wait policy when imported: only in the worker, as before
    from train_step import step_flops

    w, device = setting.work, runtime.device
    sizes = StepSizes(w.model, w.num_frames, w.resolution, w.batch, w.pred_depth, w.pred_width)
    overrides = [
        f"runtime.device={device.type}",
        "runtime.precision=bf16",
        f"runtime.activation_checkpointing={str(setting.activation_checkpointing).lower()}",
        f"runtime.compile={str(setting.compile).lower()}",
        f"runtime.strategy={setting.strategy}",
    ]
    config = step_config(sizes, steps + warmup, overrides)  # no warmup: clipping on
    fsdp = setting.strategy == "fsdp"
    trainer = step_trainer(config, runtime, shard=fsdp, ddp=not fsdp)
    encoder, predictor = trainer.objective.encoder, trainer.objective.predictor
    grid = config.token_grid
    pool = batch_pool(config, trainer, seed=runtime.rank)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, flops = [], []
    for i in range(warmup + steps):
        batch = pool[i % len(pool)].to(device)
        _sync(device)
        start = time.perf_counter()
        train_step(trainer, [batch], i)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            masks = [(m.context.shape[1], m.target.shape[1]) for m in batch.masks]
            flops.append(step_flops(encoder.config, predictor.config, w.batch, grid.num_tokens, masks))
    times.sort()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else float("nan")
    step_s = times[len(times) // 2]
    return {
        "step_s": step_s,
        "clips_s": w.batch * runtime.world_size / step_s,
        "tflops_per_gpu": sum(flops) / len(flops) / step_s / 1e12,
        "peak_gib": peak / 2**30,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args: argparse.Namespace) -> None:
    """One rank of the torchrun group: every setting in turn; rank 0 prints one JSON line per setting."""
    runtime = setup("cpu" if args.smoke else "cuda", threads=1 if args.smoke else None)  # joins the group
    device = runtime.device
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    if not dist.is_initialized():  # setup() joins groups of 2+; the DDP/FSDP rows need a group of one too
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    for setting in settings(args):
        if over_budget(args.deadline, device):
            if runtime.is_main:
                skipped = {"error": f"skipped: the {args.budget_s:.0f} s budget (--budget-s) is spent"}
                print("RESULT " + json.dumps({**asdict(setting), **skipped}), flush=True)
            continue
        try:
            result = run_setting(setting, args.steps, args.warmup, runtime)
        except torch.OutOfMemoryError:
            result = {"error": "out of memory"}
        except RuntimeError as err:  # e.g. a compiler failure: report it and go on with the next setting
            result = {"error": str(err).strip().splitlines()[0][:120] if str(err).strip() else "RuntimeError"}
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if setting.compile:
            torch._dynamo.reset()
        if runtime.is_main:
            print("RESULT " + json.dumps({**asdict(setting), **result}), flush=True)
    finish(runtime)
    teardown()


# ---------------------------------------------------------------------------------------------- launcher


def launch(args: argparse.Namespace, peak_tflops: float | None) -> None:
    """Run the workers under torchrun and print their rows as they arrive."""
    nproc = 1 if args.smoke else (args.nproc or torch.cuda.device_count())
    forwarded = [a for a in sys.argv[1:] if a != "--worker"]
    deadline = time.time() + args.budget_s  # the workers start no setting after it
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(Path(__file__).resolve()), "--worker", f"--deadline={deadline}", *forwarded]  # fmt: skip
    print("| model | batch/GPU | strategy | act. ckpt | compile | step (s) | clips/s (all GPUs) | TFLOP/s per GPU "
          "| MFU | peak mem (GiB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.smoke else None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RESULT "):
                print(_row(json.loads(line[len("RESULT ") :]), peak_tflops), flush=True)
    if proc.returncode:
        raise SystemExit(f"the benchmark workers failed (exit {proc.returncode})")


def _row(r: dict, peak_tflops: float | None) -> str:
    w = r["work"]
    head = (f"| {w['model']} {w['num_frames']}x{w['resolution']} | {w['batch']} | {r['strategy']} | "
            f"{'on' if r['activation_checkpointing'] else 'off'} | {'on' if r['compile'] else 'off'} |")  # fmt: skip
    if "error" in r:
        return f"{head} {r['error']} | | | | |"
    mfu = f"{100 * r['tflops_per_gpu'] / peak_tflops:.1f} %" if peak_tflops else "n/a"
    peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] == r["peak_gib"] else "n/a"  # NaN on CPU
    return (f"{head} {r['step_s']:.3f} | {r['clips_s']:.1f} | {r['tflops_per_gpu']:.3g} | {mfu} | "
            f"{peak} |")  # fmt: skip


def data_rows(smoke: bool) -> None:
    """Clips per CPU-second of one decoding worker (what one DataLoader worker delivers)."""
    torch.set_num_threads(1)
    seconds, clips = (2, 3) if smoke else (10, 40)
    sources = ((240, 320),) if smoke else ((240, 320), (720, 1280))
    print()
    print("| data source (H.264) | pipeline | clips/s per worker (CPU time) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for height, width in sources:
            records = []
            for k in range(2):
                path = Path(tmp) / f"{width}x{height}_{k}.mp4"
                make_source(path, height, width, int(seconds * 30), seed=k)
                records.append(VideoRecord(str(path), 0))
            shrink = max_useful_short_side(CROP)
            ds = VideoClipDataset(records, CLIP, CROP, seed=0, max_short_side=shrink)
            rate = time_dataset(ds, clips)
            print(
                f"| {width}x{height} | 16 frames, step 4, crop 224 (max_short_side auto) | {rate.cpu:.1f} |"
            )


# ------------------------------------------------------------------------------------------------ memory


def memory_table(gpus: tuple[int, ...] = (8, 64)) -> None:
    """Bytes of the model states per GPU, computed from the parameter counts (activations come on top: the
    benchmark measures them)."""
    print("| model | encoder params | predictor params | DDP: states per GPU | "
          + " | ".join(f"FSDP on {n} GPUs" for n in gpus) + " |")  # fmt: skip
    print("|---|---|---|---|" + "---|" * len(gpus))
    for name, frames, size in (("vit_large", 16, 224), ("vit_huge", 16, 224), ("vit_giant", 16, 256),
                               ("vit_gigantic", 16, 256)):  # fmt: skip
        with torch.device("meta"):
            encoder = build_encoder(name, num_frames=frames, resolution=size)
            predictor = build_predictor(encoder)
        pe = sum(p.numel() for p in encoder.parameters())
        pp = sum(p.numel() for p in predictor.parameters())
        block = sum(p.numel() for p in encoder.blocks[0].parameters())
        # fp32 encoder + target + predictor weights (4 B), fp32 gradients (4 B) and AdamW moments (8 B) of
        # the trained ones; DDP adds its fp32 gradient buckets (4 B per trained parameter).
        ddp = 4 * (2 * pe + pp) + 16 * (pe + pp)
        # FSDP: the states above without the buckets, divided over the GPUs, plus the unsharded working set
        # of about two blocks at a time (bf16 parameters all-gathered, bf16 and fp32 gradients).
        sharded = 4 * (2 * pe + pp) + 12 * (pe + pp)
        cells = " | ".join(f"{(sharded / n + 2 * 8 * block) / 2**30:.1f} GiB" for n in gpus)
        print(
            f"| {name} {frames}x{size} | {pe / 1e6:.0f} M | {pp / 1e6:.0f} M | {ddp / 2**30:.1f} GiB | {cells} |"
        )


# -------------------------------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny model on CPU (gloo), seconds; for tests")
    p.add_argument("--memory", action="store_true", help="print the computed memory table and stop")
    p.add_argument("--grid", choices=["default", "full"], default="default")
    p.add_argument("--batch-large", type=int, default=24, help="clips per GPU for ViT-L 16x224")
    p.add_argument("--batch-giant", type=int, default=12, help="clips per GPU for ViT-g 16x256")
    p.add_argument("--steps", type=int, default=6, help="timed steps per setting (the median is reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, allocator)")
    p.add_argument("--nproc", type=int, default=None, help="GPUs to use (default: all visible)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of one GPU, for MFU")
    p.add_argument("--no-data", action="store_true", help="skip the data pipeline rows")
    p.add_argument("--budget-s", type=float, default=200.0,
                   help="start no model setting after this many seconds; the rest print 'skipped' (a setting "
                        "already running finishes)")  # fmt: skip
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=float("inf"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
    if args.worker:
        worker(args)
        return
    if args.memory:
        memory_table()
        return
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on a GPU machine (or --smoke for the CPU check, --memory)")
    name = "CPU (smoke)" if args.smoke else torch.cuda.get_device_name(0)
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    start = time.perf_counter()
    print(f"# {name}; torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}; bf16 autocast, SDPA; "
          f"median of {args.steps} steps after {args.warmup}; bf16 peak {peak or 'unknown'} TFLOP/s")  # fmt: skip
    if "fsdp" not in strategies():
        print(f"# no fsdp rows: vjepa's FSDP needs torch >= {FSDP_MIN_TORCH_NAME}")
    launch(args, peak)
    if not args.no_data:
        data_rows(args.smoke)
    print(f"\n# {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
