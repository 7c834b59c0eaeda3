"""``vjepa demo``: synthetic videos -> pretraining variants x seeds at one compute budget (plus the random
init each seed starts from) -> frozen probes on the motion and the appearance label -> a pixel baseline ->
figures and ``report.md``.

Every stage calls the same library functions as the ``vjepa`` commands (``make-data``, ``pretrain``,
``eval``), and the report lists those commands, so each row can be reproduced on its own. Independent jobs
(pretraining runs, then probes) run side by side in single-threaded worker processes (see
:mod:`vjepa.demo.parallel`).

Layout of ``out_dir``::

    data/                       videos and CSVs (train: pretraining and probe training; val: the test split)
    init/seed{s}/               the weights every run of seed s starts from (the random-init row)
    pretrain/seed{s}/{variant}/ pretraining runs (metrics.jsonl, export/)
    eval/{row}/{label}/seed{s}/ probe runs (metrics.json)
    cache/                      decoded clips and frozen features
    figures/, report.md, results.json, demo_config.json
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vjepa.data.synthetic import SyntheticSpec, write_synthetic_dataset
from vjepa.demo.parallel import Task, run_tasks
from vjepa.demo.pixels import run_pixel_baseline
from vjepa.demo.plan import (
    LABELS,
    RANDOM_INIT,
    DemoConfig,
    Row,
    Variant,
    command,
    encoder_source,
    run_dir,
    table_rows,
    variant,
    variants,
)
from vjepa.demo.report import write_report
from vjepa.io import PROBE_RESULTS_FORMAT, read_json
from vjepa.pretrain.config import PretrainConfig, load_run_config
from vjepa.pretrain.loop import pretrain
from vjepa.pretrain.metrics import read_metrics
from vjepa.pretrain.setup import export_initial
from vjepa.probe.config import load_eval_config
from vjepa.probe.loop import run_eval
from vjepa.probe.selection import ProbeNotTrainedError
from vjepa.runtime import log

PRETRAIN_SHARE = 0.5
"""Share of ``--budget-minutes`` the pretraining runs get when their steps are calibrated (probes take most of
the rest)."""
CALIBRATION_STEPS = 4


@dataclass
class StageTimes:
    """Wall seconds per stage, for the report."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, started: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def worker_count(cfg: DemoConfig) -> int:
    """Processes side by side: ``cfg.workers``, else the usable CPUs (at most 4)."""
    if cfg.workers:
        return cfg.workers
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, usable))


# ----------------------------------------------------------------------------------------------------- data


def data_spec(cfg: DemoConfig) -> SyntheticSpec:
    return SyntheticSpec(
        num_frames=cfg.num_frames,
        resolution=cfg.resolution,
        object_size=cfg.object_size,
        speeds=cfg.speeds,
        hold=cfg.hold,
        num_objects=cfg.objects,
    )


def data_command(cfg: DemoConfig) -> list[str]:
    return [
        "make-data", "synthetic", str(cfg.root / "data"), "--seed", "0",
        "--num-train", str(cfg.num_train), "--num-val", str(cfg.num_test), "--resolution", str(cfg.resolution),
        "--num-frames", str(cfg.num_frames), "--object-size", str(cfg.object_size), "--hold", str(cfg.hold),
        "--objects", str(cfg.objects), "--speeds", *map(str, cfg.speeds),
    ]  # fmt: skip


def make_data(cfg: DemoConfig) -> Path:
    root = cfg.root / "data"
    if not (root / "meta.json").is_file():
        write_synthetic_dataset(
            root, seed=0, num_train=cfg.num_train, num_val=cfg.num_test, spec=data_spec(cfg), overwrite=True
        )
    return root


# ----------------------------------------------------------------------------------------------- pretraining


def pretrain_overrides(cfg: DemoConfig, seed: int, steps: int) -> list[str]:
    """The ``--set`` values every pretraining variant shares (on top of the ``tiny_cpu`` recipe)."""
    ipe = max(1, math.ceil(steps / 10))
    return [
        "data.source=csv",
        f"data.datasets=[{cfg.root / 'data' / 'train.csv'}]",
        f"data.batch_size={cfg.batch_size}",
        f"data.num_frames={cfg.num_frames}",
        f"data.frame_step={cfg.frame_step}",
        f"data.resolution={cfg.resolution}",
        "data.random_resize_scale=[1.0, 1.0]",  # whole frames: the objects wrap around the torus
        "data.random_resize_aspect_ratio=[1.0, 1.0]",
        "data.horizontal_flip=false",
        "data.num_workers=0",
        f"data.clip_cache_dir={cfg.root / 'cache' / 'clips'}",
        "model.name=vit_tiny",
        f"model.embed_dim={cfg.embed_dim}",
        f"model.depth={cfg.depth}",
        f"model.num_heads={cfg.num_heads}",
        f"model.patch_size={cfg.patch_size}",
        f"model.pred_embed_dim={cfg.pred_embed_dim}",
        f"model.pred_depth={cfg.pred_depth}",
        "optimization.epochs=10",
        f"optimization.ipe={ipe}",
        "optimization.ipe_scale=1.0",
        "optimization.warmup=1",
        f"optimization.lr={cfg.lr}",
        f"optimization.start_lr={cfg.lr / 10}",
        f"optimization.ema_horizon={cfg.ema_horizon}",
        f"logging.log_every={max(1, ipe // 2)}",
        f"logging.monitor_every={max(1, ipe)}",
        f"logging.checkpoint_every={10 * ipe}",
        "logging.tensorboard=false",
        "logging.progress_bar=false",
        "runtime.device=cpu",
        "runtime.threads=1",
        f"runtime.seed={seed}",
    ]


def variant_overrides(cfg: DemoConfig, variant: Variant, seed: int, steps: int) -> list[str]:
    """Every ``--set`` value of one pretraining run."""
    teacher = []
    if variant.teacher_from:
        teacher = [f"objective.teacher_checkpoint={run_dir(cfg, seed, variant.teacher_from) / 'export'}"]
    return [*pretrain_overrides(cfg, seed, steps), *variant.overrides, *teacher]


def pretrain_command(cfg: DemoConfig, variant: Variant, seed: int, steps: int) -> list[str]:
    args = ["pretrain", "tiny_cpu", "--run-dir", str(run_dir(cfg, seed, variant.key))]
    for o in variant_overrides(cfg, variant, seed, steps):
        args += ["--set", o]
    return args


def run_pretrain(cfg: DemoConfig, key: str, seed: int, steps: int) -> str:
    """Pretrain one variant with one seed (quietly: a worker process); returns its export folder. A finished
    run is kept, an interrupted one started over (the demo owns this folder)."""
    folder = run_dir(cfg, seed, key)
    export = folder / "export"
    if (export / "config.json").is_file():
        return str(export)
    shutil.rmtree(folder, ignore_errors=True)
    config, folder = load_run_config(
        "tiny_cpu", variant_overrides(cfg, variant(key), seed, steps), folder, False
    )
    _pretrain_quietly(config, folder)
    return str(export)


def _pretrain_quietly(config: PretrainConfig, folder: Path) -> None:
    """``pretrain`` with its log kept in memory (many run side by side); the log's tail is printed if it fails."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        try:
            pretrain(config, folder)
        except Exception:
            print(printed.getvalue()[-4000:])
            raise


def export_init(cfg: DemoConfig, seed: int, steps: int) -> Path:
    """The random-init row's weights: exactly those every pretraining run of ``seed`` starts from."""
    out = cfg.root / "init" / f"seed{seed}"
    if not (out / "config.json").is_file():
        config, _ = load_run_config("tiny_cpu", pretrain_overrides(cfg, seed, steps), None, False)
        export_initial(config, out)
    return out


def calibrate_steps(cfg: DemoConfig, budget_seconds: float, workers: int) -> tuple[int, float]:
    """Steps per run that fit ``PRETRAIN_SHARE`` of the budget, from a short timed run of plain V-JEPA
    (``cfg.pretrain_steps`` when set; then the seconds per step are NaN)."""
    if cfg.pretrain_steps is not None:
        return cfg.pretrain_steps, math.nan
    folder = cfg.root / "calibration"
    shutil.rmtree(folder, ignore_errors=True)
    timed = [
        *pretrain_overrides(cfg, 0, CALIBRATION_STEPS),
        "optimization.epochs=1",
        f"optimization.ipe={CALIBRATION_STEPS}",
        "optimization.warmup=0",
        "logging.log_every=1",
        "logging.export=false",
    ]
    config, folder = load_run_config("tiny_cpu", timed, folder, False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers
    try:
        _pretrain_quietly(config, folder)
    finally:
        torch.set_num_threads(threads)
    per_step = sorted(r["step_time_s"] for r in read_metrics(folder / "metrics.jsonl") if r["step"] > 0)
    seconds = per_step[len(per_step) // 2]  # step 0 carries the warm-up
    shutil.rmtree(folder, ignore_errors=True)
    runs = cfg.seeds * len(variants(cfg))
    steps = int(PRETRAIN_SHARE * budget_seconds * workers / (runs * seconds))
    return max(10, steps), seconds


# ---------------------------------------------------------------------------------------------------- probes


def probe_overrides(cfg: DemoConfig, row: Row, label: str, seed: int) -> list[str]:
    checkpoint, which = encoder_source(cfg, row.encoder, seed)
    data = cfg.root / "data"
    return [
        f"encoder.checkpoint={checkpoint}",
        f"encoder.which={which}",
        f"data.train={data / f'train_{label}.csv'}",
        f"data.val={data / f'val_{label}.csv'}",
        f"data.num_frames={cfg.num_frames}",
        f"data.frame_step={cfg.frame_step}",
        f"data.resolution={cfg.resolution}",
        "data.num_workers=0",
        "data.clip_cache=true",  # every probe job reads the same videos
        f"data.clip_cache_dir={cfg.root / 'cache' / 'clips'}",
        f"probe.kind={row.readout}",
        f"optimization.epochs={cfg.probe_epochs}",
        f"optimization.batch_size={cfg.probe_batch_size}",
        f"optimization.min_steps={cfg.probe_min_steps}",
        f"label_fractions=[{row.fraction}]",
        # both labels' jobs of an encoder share its cache: the videos are the same, and so are the features
        f"cache.dir={cfg.root / 'cache' / 'features' / row.encoder / f'seed{seed}'}",
        f"output_dir={cfg.root / 'eval' / row.key / label / f'seed{seed}'}",
        f"seed={seed}",
        "device=cpu",
        "threads=1",
    ]


def probe_command(cfg: DemoConfig, row: Row, label: str, seed: int) -> list[str]:
    args = ["eval", "video_csv"]
    for o in probe_overrides(cfg, row, label, seed):
        args += ["--set", o]
    return args


def run_probes(cfg: DemoConfig, rows: list[Row], seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """The probes of ``rows`` (one encoder: they share its feature cache, so they run one after the other
    in one worker) on every label; ``{label: {row key: {"top1", "train_top1"}}}`` (NaN where no head
    trained). A finished probe's result is read back, not recomputed."""
    return {label: _run_label_probes(cfg, rows, label, seed) for label in LABELS}


def _run_label_probes(cfg: DemoConfig, rows: list[Row], label: str, seed: int) -> dict[str, dict[str, float]]:
    results = {}
    for row in rows:
        out = cfg.root / "eval" / row.key / label / f"seed{seed}" / "metrics.json"
        if not out.is_file():
            shutil.rmtree(out.parent, ignore_errors=True)
            config, source = load_eval_config("video_csv", probe_overrides(cfg, row, label, seed))
            # A probe that did not train still writes metrics.json ("not_trained"); the report shows it.
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(ProbeNotTrainedError):
                run_eval(config, source)
        selected = read_json(out, PROBE_RESULTS_FORMAT)["selected"][0]
        results[row.key] = {
            k: math.nan if selected.get(k) is None else float(selected[k]) for k in ("top1", "train_top1")
        }
    return results


# ------------------------------------------------------------------------------------------------------ main


def run_demo(cfg: DemoConfig) -> Path:
    """Run the whole demo; returns the path of ``report.md``."""
    root = cfg.root
    if (root / "report.md").is_file():
        raise FileExistsError(f"{root} already holds a finished demo (report.md); choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    (root / "demo_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    start = time.perf_counter()
    times = StageTimes()
    workers = worker_count(cfg)

    t = time.perf_counter()
    log(None, f"[1/4] synthetic data -> {root / 'data'}")
    make_data(cfg)
    times.add("data", t)

    t = time.perf_counter()
    steps = pretrain_stage(cfg, workers)
    times.add("pretrain", t)

    t = time.perf_counter()
    rows = table_rows(cfg)
    results = probe_stage(cfg, rows, workers)
    times.add("probes", t)

    log(None, "[4/4] figures and report")
    commands = reproduce_commands(cfg, rows, steps)
    return write_report(cfg, rows, results, commands, steps, workers, times, start)


def pretrain_stage(cfg: DemoConfig, workers: int) -> int:
    """The random-init exports and every pretraining run (students of a frozen teacher in a second wave,
    after their teachers); returns the steps per run."""
    steps, step_seconds = calibrate_steps(cfg, 60.0 * cfg.budget_minutes, workers)
    for seed in range(cfg.seeds):
        export_init(cfg, seed, steps)
    todo = variants(cfg)
    calibrated = f", calibrated at {step_seconds:.2f} s/step" if not math.isnan(step_seconds) else ""
    log(
        None,
        f"[2/4] pretraining {len(todo)} variants x {cfg.seeds} seeds x {steps} steps "
        f"on {workers} single-threaded worker(s){calibrated}",
    )
    for wave in (
        [v for v in todo if not v.teacher_from],
        [v for v in todo if v.teacher_from],  # students of a frozen teacher trained in the first wave
    ):
        tasks = [
            Task(f"{v.key}/seed{s}", run_pretrain, (cfg, v.key, s, steps))
            for s in range(cfg.seeds)
            for v in wave
        ]
        if tasks:
            run_tasks(tasks, workers, "pretraining run")
    return steps


def probe_stage(
    cfg: DemoConfig, rows: list[Row], workers: int
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Every probe job and the pixel baseline; ``results[row][label]``: one ``{"top1", "train_top1"}`` per
    seed."""
    seeds = range(cfg.seeds)
    by_encoder: dict[str, list[Row]] = {}
    for row in rows:
        if row.readout != "pixels":
            by_encoder.setdefault(row.encoder, []).append(row)
    order = sorted(by_encoder, key=lambda e: -len(by_encoder[e]))
    # The pixel baseline first: its jobs are the longest. Then the encoders with the most rows.
    tasks = [Task(f"pixel_baseline/{label}", run_pixel_baseline, (cfg, label)) for label in LABELS]
    tasks += [Task(f"{enc}/seed{s}", run_probes, (cfg, by_encoder[enc], s)) for enc in order for s in seeds]
    log(
        None,
        f"[3/4] {len(tasks)} probe jobs: {len(rows) - 1} rows x {len(LABELS)} labels x {cfg.seeds} seeds (one job "
        "per encoder and seed), and the pixel baseline (logistic regression on frame differences)",
    )
    done = run_tasks(tasks, workers, "probe job")
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        "pixel_baseline": {label: done[f"pixel_baseline/{label}"] for label in LABELS}
    }
    for enc in order:
        for s in seeds:
            for label in LABELS:
                for key, value in done[f"{enc}/seed{s}"][label].items():
                    results.setdefault(key, {}).setdefault(label, []).append(value)
    return results


def reproduce_commands(cfg: DemoConfig, rows: list[Row], steps: int) -> dict[str, list[str]]:
    """The ``vjepa`` commands (seed 0) behind the data and each row, for the report."""
    commands: dict[str, list[str]] = {"data": [command(data_command(cfg))]}
    for row in rows:
        if row.readout == "pixels":
            continue
        cmds = []
        if row.encoder != RANDOM_INIT and row.key == row.encoder:
            cmds.append(command(pretrain_command(cfg, variant(row.encoder), 0, steps)))
        cmds += [command(probe_command(cfg, row, label, 0)) for label in LABELS]
        commands[row.key] = cmds
    return commands
