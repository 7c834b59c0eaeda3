"""CPU training step time on a quiet machine and beside busy processes, per thread setting and kernel set.

With 2 intra-op threads on 2 cores, one other busy process (a browser tab, a second job) takes a core that
an OpenMP thread waits for; with OpenMP's default wait policy the waiting thread spins and burns its share,
and the step can take many times longer. This prints, per setting, the median wall time of a training step
with the batches already in memory, quiet and with ``--busy`` competing ``python -c "while True: pass"``
processes, and their ratio (the issue's bar: at most 2x).

Settings: ``spin`` (N threads, OpenMP's default wait policy: what ``import torch`` gives when nothing is
set), ``passive`` (N threads, ``OMP_WAIT_POLICY=PASSIVE``: what the ``vjepa`` command sets by default),
``1 thread``, and ``--spincounts N ...`` (``GOMP_SPINCOUNT=N``: spin N iterations, then sleep). Each
(setting, kernels, load) runs in its own process (the wait policy is read when torch
loads); quiet and busy runs alternate. ``--kernels avx2`` forces an AVX2 laptop's kernels
(``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``); ``--precision auto`` resolves per kernel set.

Example::

    python benchmarks/contention.py                      # the demo's step: vit_tiny 16x64x64, batch 16
    python benchmarks/contention.py --kernels native avx2 --busy 1 --steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {  # name -> (environment changes, threads or None for --threads)
    "spin": ({}, None),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "1 thread": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
}
KERNELS = {"native": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
WAIT_VARS = (
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
)


def run_steps(args: argparse.Namespace) -> dict:
    """In the child: build the demo-sized trainer, time ``steps`` training steps on in-memory batches."""
    # torch loads here, in the child, after its environment chose the OpenMP wait policy
    import torch

    from trainer import StepSizes, batch_pool, step_config, step_trainer
    from vjepa.pretrain.step import train_step
    from vjepa.runtime import setup

    runtime = setup("cpu", threads=args.threads, precision=args.precision)
    sizes = StepSizes(
        args.model, args.num_frames, args.resolution, args.batch, args.pred_depth, args.pred_width
    )
    config = step_config(sizes, args.warmup + args.steps, [f"runtime.precision={args.precision}"])
    trainer = step_trainer(config, runtime)
    precision = trainer.precision
    pool = batch_pool(config, trainer)
    walls, cpus = [], []
    for i in range(args.warmup + args.steps):
        wall, cpu = time.perf_counter(), time.process_time()
        train_step(trainer, [pool[i % 3]], i)
        if i >= args.warmup:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return {
        "precision": precision,
        "median": statistics.median(walls),
        "max": max(walls),
        "cpu": statistics.median(cpus),
        "threads": torch.get_num_threads(),
    }


def child(args: argparse.Namespace, setting: str, kernels: str, busy: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    changes, threads = SETTINGS[setting]
    env.update(changes)
    env.update(KERNELS[kernels])
    argv = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--one", str(threads or args.threads)]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {args.timeout} s"}
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument(
        "--spincounts",
        nargs="*",
        type=int,
        default=[],
        help="also try GOMP_SPINCOUNT=N (spin N iterations, then sleep) with N threads",
    )
    p.add_argument("--kernels", nargs="+", choices=list(KERNELS), default=["native"])
    p.add_argument("--busy", type=int, default=1, help="competing busy processes (default 1)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of the spin/passive settings")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--model", default="vit_tiny")
    p.add_argument("--num-frames", "--frames", type=int, default=16)
    p.add_argument("--resolution", "--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--pred-depth", type=int, default=4)
    p.add_argument("--pred-width", type=int, default=96)
    p.add_argument("--steps", type=int, default=8, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600, help="seconds before a run is abandoned")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: threads of one run
    args = p.parse_args()
    for n in args.spincounts:
        SETTINGS[f"spin {n}"] = ({"GOMP_SPINCOUNT": str(n)}, None)
        args.settings.append(f"spin {n}")
    if args.one is not None:
        args.threads = args.one
        print(json.dumps(run_steps(args)))
        return

    print(f"# {args.model} {args.num_frames}x{args.resolution}x{args.resolution}, batch {args.batch}, predictor {args.pred_depth}x"
          f"{args.pred_width}, clips in memory; median wall of {args.steps} steps; {os.cpu_count()} CPUs; "
          f"busy = {args.busy} x `python -c 'while True: pass'`")  # fmt: skip
    print(f"# load average at start {os.getloadavg()[0]:.2f}")
    print("| kernels | precision | setting | threads | quiet step (s) | busy step (s) | busy / quiet | "
          "CPU s/step quiet | busy |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for kernels in args.kernels:
        for setting in args.settings:
            quiet = child(args, setting, kernels, 0)
            busy = child(args, setting, kernels, args.busy)
            if "error" in quiet or "error" in busy:
                print(
                    f"| {kernels} | | {setting} | | {quiet.get('error', '')} | {busy.get('error', '')} | | | |"
                )
                continue
            ratio = busy["median"] / quiet["median"]
            print(f"| {kernels} | {quiet['precision']} | {setting} | {quiet['threads']} | {quiet['median']:.3f} | "
                  f"{busy['median']:.3f} (max {busy['max']:.2f}) | {ratio:.2f}x | {quiet['cpu']:.3f} | "
                  f"{busy['cpu']:.3f} |", flush=True)  # fmt: skip
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
