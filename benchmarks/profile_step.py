"""Where one CPU pretraining step spends its time, from video file to EMA update, and what overlapping the
data preparation with compute (DataLoader workers, the decoded-clip cache) buys.

Table 1, the stages of one step run serially in this process (wall ms per step, median over steps):
decode (open, window sampling, seek and decode of the clip's frames; or the clip cache's memory-mapped
read), augmentation (random resized crop, flip, normalize), collation, mask generation, host-to-device copy,
forward, backward, optimizer (gradient norms and clipping, AdamW) and EMA. Each data source is profiled
without the cache (``decode``) and with a filled cache (``cache``).

Table 2, the step time a pretraining run sees (wall s per step, median; the data wait is the time spent
blocked on the next batch; the CPU seconds of the process and its workers): the real ``DataStream`` with 0, 1
or 2 workers (prefetching 2 batches each), with and without the cache, against batches already in memory.
The settings take turns (``--rounds``), each turn on a fresh stream whose first ``2 * workers + 2`` steps are
not timed, so that the machine's changing load and the prefetched batches do not favour one setting.

Sources: the folder of ``vjepa make-data synthetic DIR`` (``--data``; default: a small set generated here
with ``--resolution``/``--num-frames``), and 320x240 H.264 mp4s generated here (x264 crf 23, key frame every 250
frames; ``--hd-videos``, ``--hd-frames``, sampled with ``--hd-frame-step``). The model and clips follow the
arguments (default: the demo's vit_tiny, 16x64x64 clips, batch 16, predictor depth 4 width 96).

Examples::

    vjepa make-data synthetic /tmp/demo --num-train 512 --num-val 256 --hold 2
    python benchmarks/profile_step.py --data /tmp/demo
    python benchmarks/profile_step.py --data /tmp/demo --sources demo --tables 2 --precision fp32
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/profile_step.py --data /tmp/demo
"""

from __future__ import annotations

from vjepa.threads import set_thread_env_defaults

set_thread_env_defaults()  # as the vjepa command does, before torch loads (OMP_WAIT_POLICY)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from data import make_source  # noqa: E402  (benchmarks/data.py)
from trainer import DEMO_SIZES, add_size_arguments, step_trainer  # noqa: E402  (benchmarks/trainer.py)
from vjepa.data.datasets import ClipSample  # noqa: E402
from vjepa.data.draws import LOAD_STREAM, draw_rng  # noqa: E402
from vjepa.data.loader import make_loader  # noqa: E402
from vjepa.data.synthetic import SyntheticSpec, default_object_size, write_synthetic_dataset  # noqa: E402
from vjepa.masks import MaskCollator  # noqa: E402
from vjepa.optim import set_lr_and_wd  # noqa: E402
from vjepa.pretrain.config import PretrainConfig, load_pretrain_config  # noqa: E402
from vjepa.pretrain.data import build_dataset, build_mask_generators  # noqa: E402
from vjepa.pretrain.setup import Trainer  # noqa: E402
from vjepa.pretrain.step import train_step  # noqa: E402
from vjepa.runtime import Runtime, setup  # noqa: E402

STAGES = ("decode", "augment", "collate", "masks", "to device", "forward", "backward", "optimizer", "EMA")


# ------------------------------------------------------------------------------------------------- setup


def make_config(
    args: argparse.Namespace, csv: Path, frame_step: int, cache: str, cache_dir: Path
) -> PretrainConfig:
    """The pretraining config of one source (the demo's overrides on ``tiny_cpu``)."""
    overrides = [
        "data.source=csv",
        f"data.datasets=[{csv}]",
        f"data.batch_size={args.batch}",
        f"data.num_frames={args.num_frames}",
        f"data.frame_step={frame_step}",
        f"data.resolution={args.resolution}",
        "data.max_short_side=auto",
        f"data.clip_cache={cache}",
        f"data.clip_cache_dir={cache_dir}",
        f"model.name={args.model}",
        f"model.pred_depth={args.pred_depth}",
        f"model.pred_embed_dim={args.pred_width}",
        "optimization.epochs=10",
        "optimization.ipe=100",
        "optimization.warmup=0",
        f"runtime.precision={args.precision}",
        "runtime.seed=0",
    ]
    return load_pretrain_config("tiny_cpu", overrides)


def make_trainer(config: PretrainConfig, runtime: Runtime) -> Trainer:
    """What ``vjepa pretrain`` builds (without its data stream: the tables build their own)."""
    trainer = step_trainer(config, runtime)
    trainer.objective.train()
    return trainer


def demo_source(args: argparse.Namespace, root: Path) -> Path:
    if args.data is not None:
        return Path(args.data) / "train.csv"
    spec = SyntheticSpec(
        num_frames=args.num_frames,
        resolution=args.resolution,
        object_size=default_object_size(args.resolution),
        hold=2,
    )
    files = write_synthetic_dataset(root / "demo", num_train=args.demo_videos, num_val=4, spec=spec)
    return files.csvs["train"]


def hd_source(args: argparse.Namespace, root: Path) -> Path:
    folder = root / "hd"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(args.hd_videos):
        path = folder / f"{i:04d}.mp4"
        make_source(path, 240, 320, args.hd_frames, seed=i)
        lines.append(f"{path} {i % 4}")
    csv = folder / "train.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def quiet_dataset(config: PretrainConfig):
    """The run's dataset (its log line swallowed, not to break the table); a clip cache is filled first, so
    that the rows show its steady state (filling it is the first epoch's decode)."""
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = build_dataset(config.data, config.runtime.seed)
    if getattr(dataset, "clip_cache", None) is not None:
        for i, record in enumerate(dataset.records):
            dataset.read_frames(record, draw_rng(config.runtime.seed, 10**9 + i, 0, LOAD_STREAM))
    return dataset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------ table 1: stages


def profile_stages(config: PretrainConfig, trainer: Trainer, steps: int) -> dict[str, float]:
    """Median wall ms per stage over ``steps`` steps (after one untimed step), and the CPU ms (all threads of
    this process) of the data part and of the compute part."""
    seed = config.runtime.seed
    dataset = quiet_dataset(config)
    collator = MaskCollator(build_mask_generators(config.masks, config.token_grid), seed)
    times: dict[str, list[float]] = defaultdict(list)
    batch = config.data.batch_size
    for step in range(steps + 1):
        t: dict[str, float] = defaultdict(float)
        samples = []
        cpu = time.process_time()
        for j in range(batch):
            draw = step * batch + j
            record = dataset.records[draw % len(dataset)]
            rng = draw_rng(seed, draw, 0, LOAD_STREAM)
            start = time.perf_counter()
            frames, indices = dataset.read_frames(record, rng)
            mid = time.perf_counter()
            clip = dataset.augment(frames, rng)
            t["decode"] += mid - start
            t["augment"] += time.perf_counter() - mid
            samples.append(ClipSample(clip, record.label, draw, 0, record.path, torch.from_numpy(indices)))
        start = time.perf_counter()
        masked = collator(samples)
        t["collate"] = time.perf_counter() - start
        start = time.perf_counter()
        collator.masks(batch, step * batch)  # the same masks again, timed alone
        t["masks"] = time.perf_counter() - start
        t["collate"] -= t["masks"]
        t["data CPU"] = time.process_time() - cpu
        cpu = time.process_time()
        stage_step(trainer, masked, step, t)
        t["compute CPU"] = time.process_time() - cpu
        if step > 0:
            for name in (*STAGES, "data CPU", "compute CPU"):
                times[name].append(t[name] * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def stage_step(trainer: Trainer, batch, step: int, t: dict[str, float]) -> None:
    """``train_step`` cut into timed stages (one micro-batch, single process)."""
    device = trainer.runtime.device
    s = trainer.schedules
    set_lr_and_wd(trainer.optimizer, s.lr(step), s.weight_decay(step))
    marks = [time.perf_counter()]
    batch = batch.to(device, non_blocking=True)
    _sync(device)
    marks.append(time.perf_counter())
    with trainer.runtime.autocast(trainer.precision):
        out = trainer.model(batch.clips, batch.masks)
    _sync(device)
    marks.append(time.perf_counter())
    out.loss.backward()
    _sync(device)
    marks.append(time.perf_counter())
    max_norm = s.config.clip_grad if s.clipping(step) else None
    for part in (trainer.objective.encoder, *trainer.predictor_parts):
        params = [p for p in part.parameters() if p.grad is not None]
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        else:
            torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    _sync(device)
    marks.append(time.perf_counter())
    trainer.objective.update_target(s.momentum(step))
    _sync(device)
    marks.append(time.perf_counter())
    names = ("to device", "forward", "backward", "optimizer", "EMA")
    for name, a, b in zip(names, marks[:-1], marks[1:], strict=True):
        t[name] = b - a


# ---------------------------------------------------------------------------------------- table 2: pipelined


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and its live child processes (the DataLoader workers; Linux /proc)."""
    total = time.process_time()
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError:
        return total
    for child in children:
        try:
            with open(f"/proc/{child}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def pipelined_turn(config: PretrainConfig, trainer: Trainer, workers: int | None, steps: int) -> list[tuple]:
    """One turn of one loader setting: a fresh stream, ``2 * workers + 2`` untimed steps (startup and the
    prefetched batches), then ``steps`` timed ones. Returns (wall s, data wait s, CPU s of the process and
    its workers) per timed step. ``workers=None``: batches already in memory."""
    seed = config.runtime.seed
    collator = MaskCollator(build_mask_generators(config.masks, config.token_grid), seed)
    dataset = quiet_dataset(config)
    stream = make_loader(dataset, batch_size=config.data.batch_size, collate_fn=collator, seed=seed,
                         num_workers=workers or 0, persistent_workers=bool(workers))  # fmt: skip
    batches = stream.batches()
    if workers is None:
        pool = [next(batches) for _ in range(3)]
        batches = (pool[i % 3] for i in range(10**9))
    skip = 2 * (workers or 0) + 2
    rows = []
    for step in range(skip + steps):
        start, cpu = time.perf_counter(), tree_cpu_seconds()
        batch = next(batches).to(trainer.runtime.device)
        ready = time.perf_counter()
        train_step(trainer, [batch], step)
        _sync(trainer.runtime.device)
        if step >= skip:
            rows.append((time.perf_counter() - start, ready - start, tree_cpu_seconds() - cpu))
    del batches, stream
    return rows


def pipelined(settings: dict[str, tuple], trainer: Trainer, rounds: int, steps: int) -> dict[str, tuple]:
    """Median (wall s, data wait s, CPU s) per step of each loader setting ``{label: (config, workers)}``,
    measured in ``rounds`` alternating turns of ``steps`` timed steps each (so that a change of the machine's
    load hits every setting alike)."""
    rows: dict[str, list[tuple]] = defaultdict(list)
    for _ in range(rounds):
        for label, (config, workers) in settings.items():
            rows[label] += pipelined_turn(config, trainer, workers, steps)
    return {label: tuple(statistics.median(col) for col in zip(*r, strict=True)) for label, r in rows.items()}


# -------------------------------------------------------------------------------------------------- tables


def stages_table(
    args: argparse.Namespace, sources: dict[str, tuple[Path, int]], runtime: Runtime, root: Path
) -> None:
    """Table 1: wall ms per stage of one step, per source, decoding and from the clip cache."""
    print("\n| source | data path | " + " | ".join(STAGES) + " | data total | compute total | step | "
          "CPU ms: data | compute |")  # fmt: skip
    print("|---|---|" + "---|" * (len(STAGES) + 5))
    for name, (csv, step) in sources.items():
        for mode in ("false", "true"):
            config = make_config(args, csv, step, mode, root / "cache")
            ms = profile_stages(config, make_trainer(config, runtime), args.steps)
            data = sum(ms[s] for s in STAGES[:4])
            compute = sum(ms[s] for s in STAGES[4:])
            cells = " | ".join(f"{ms[s]:.1f}" for s in STAGES)
            path = "decode" if mode == "false" else "clip cache"
            print(f"| {name} | {path} | {cells} | {data:.1f} | {compute:.1f} | {data + compute:.1f} | "
                  f"{ms['data CPU']:.1f} | {ms['compute CPU']:.1f} |", flush=True)  # fmt: skip


def pipelined_table(
    args: argparse.Namespace, sources: dict[str, tuple[Path, int]], runtime: Runtime, root: Path
) -> None:
    """Table 2: the step time a run sees per loader setting, against batches already in memory."""
    print("\n| source | loader | step (s), median | data wait (s) | CPU s/step (with workers) | "
          "vs in memory (wall) | (CPU) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, (csv, step) in sources.items():
        memory = make_config(args, csv, step, "true", root / "cache")
        trainer = make_trainer(memory, runtime)
        settings: dict[str, tuple] = {"clips in memory": (memory, None)}
        for mode in ("false", "true"):
            config = make_config(args, csv, step, mode, root / "cache")
            for w in args.workers:
                settings[f"{w} worker(s), {'clip cache' if mode == 'true' else 'decode'}"] = (config, w)
        results = pipelined(settings, trainer, args.rounds, args.steps)
        base = results["clips in memory"]
        for label, (sec, wait, cpu) in results.items():
            print(f"| {name} | {label} | {sec:.3f} | {wait:.3f} | {cpu:.3f} | {sec / base[0]:.2f}x | "
                  f"{cpu / base[2]:.2f}x |", flush=True)  # fmt: skip


# --------------------------------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data", default=None, help="a `vjepa make-data synthetic` folder (default: generate one)"
    )
    p.add_argument("--demo-videos", type=int, default=64, help="videos of the generated demo-like set")
    p.add_argument("--sources", nargs="+", choices=["demo", "hd"], default=["demo", "hd"])
    p.add_argument("--hd-videos", type=int, default=32, help="320x240 mp4 sources to generate")
    p.add_argument("--hd-frames", type=int, default=64, help="frames per 320x240 source")
    p.add_argument(
        "--hd-frame-step", type=int, default=4, help="frame step of clips from the 320x240 sources"
    )
    p.add_argument("--frame-step", type=int, default=1, help="frame step of clips from the demo data")
    add_size_arguments(p, DEMO_SIZES)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: vjepa's default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument(
        "--steps", type=int, default=6, help="timed steps per row (table 2: per turn); the median is reported"
    )
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts of table 2")
    p.add_argument("--tables", nargs="+", choices=["1", "2"], default=["1", "2"])
    p.add_argument("--rounds", type=int, default=3, help="alternating turns per loader setting (table 2)")
    p.add_argument(
        "--work-dir", default=None, help="where generated videos and caches go (default: a temp dir)"
    )
    args = p.parse_args()

    runtime = setup(args.device, args.threads, args.precision)
    assert runtime.threads is not None
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="vjepa-profile-"))
    sources = {}
    if "demo" in args.sources:
        sources["demo"] = (demo_source(args, root), args.frame_step)
    if "hd" in args.sources:
        sources["320x240"] = (hd_source(args, root), args.hd_frame_step)
    decision = runtime.decision
    assert decision is not None
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()} kernels), {runtime.threads.describe()}")  # fmt: skip
    print(f"# {decision.describe()}")
    print(f"# {args.model}, clips {args.num_frames}x{args.resolution}x{args.resolution}, batch {args.batch}, predictor depth "
          f"{args.pred_depth} width {args.pred_width}, paper multi-block masks; median of {args.steps} steps")  # fmt: skip
    print(f"# load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    try:
        if "1" in args.tables:
            stages_table(args, sources, runtime, root)
        if "2" in args.tables:
            pipelined_table(args, sources, runtime, root)
    finally:
        if args.work_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"# load average at end {os.getloadavg()[0]:.2f}; wall ms (table 1) and s (table 2) on a machine "
          "shared with other processes are only as steady as that load")  # fmt: skip


if __name__ == "__main__":
    main()
