"""``vjepa demo``: synthetic videos -> three pretraining variants at one compute budget (plus the random
init they start from) -> probes on the motion and the appearance label -> figures and ``report.md``.

Every stage calls the same library functions as the ``vjepa`` commands (``make-data``, ``pretrain``,
``eval``), and the report lists those commands, so each row can be reproduced on its own.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vjepa.demo.plan import LABELS, VARIANTS, DemoConfig, Row, Variant, command, table_rows
from vjepa.runtime import log

# Share of the budget the pretraining runs get; the rest goes to data, probes, figures.
PRETRAIN_SHARE = 0.55
CALIBRATION_STEPS = 3


@dataclass
class StageTimes:
    """Wall seconds per stage, for the report."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, started: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


# ------------------------------------------------------------------------------------------------- stages


def data_command(cfg: DemoConfig) -> list[str]:
    return [
        "make-data",
        "synthetic",
        str(cfg.root / "data"),
        "--seed",
        str(cfg.seed),
        "--num-train",
        str(cfg.num_train),
        "--num-val",
        str(cfg.num_val),
        "--size",
        str(cfg.size),
        "--frames",
        str(cfg.frames),
        "--hold",
        str(cfg.hold),
    ]


def make_data(cfg: DemoConfig) -> Path:
    from vjepa.data.synthetic import SyntheticSpec, write_synthetic_dataset

    root = cfg.root / "data"
    if (root / "meta.json").is_file():
        return root
    spec = SyntheticSpec(
        num_frames=cfg.frames, size=cfg.size, object_size=max(4, int(cfg.size * 26 / 64)), hold=cfg.hold
    )
    write_synthetic_dataset(
        root, seed=cfg.seed, num_train=cfg.num_train, num_val=cfg.num_val, spec=spec, overwrite=True
    )
    return root


def pretrain_overrides(cfg: DemoConfig, steps: int) -> list[str]:
    """The ``--set`` values shared by every pretraining variant (on top of the ``tiny_cpu`` recipe)."""
    ipe = max(1, math.ceil(steps / 10))
    return [
        "data.source=csv",
        f"data.datasets=[{cfg.root / 'data' / 'train.csv'}]",
        f"data.batch_size={cfg.batch_size}",
        f"data.num_frames={cfg.frames}",
        "data.frame_step=1",
        f"data.crop_size={cfg.size}",
        "data.num_workers=0",
        f"model.name={cfg.model}",
        f"model.pred_depth={cfg.pred_depth}",
        f"model.pred_embed_dim={cfg.pred_embed_dim}",
        "optimization.epochs=10",
        f"optimization.ipe={ipe}",
        "optimization.warmup=1",
        f"optimization.lr={cfg.lr}",
        f"optimization.start_lr={cfg.lr / 3}",
        f"optimization.ema=[{cfg.ema[0]}, {cfg.ema[1]}]",
        f"logging.log_every={max(1, ipe // 4)}",
        f"logging.monitor_every={max(1, ipe // 2)}",
        f"logging.checkpoint_every={10 * ipe}",
        "logging.tensorboard=false",
        "runtime.device=auto",
        f"runtime.seed={cfg.seed}",
        *([f"runtime.threads={cfg.threads}"] if cfg.threads else []),
    ]


def pretrain_command(cfg: DemoConfig, variant: Variant, steps: int) -> list[str]:
    overrides = pretrain_overrides(cfg, steps) + list(variant.overrides or ())
    args = ["pretrain", "tiny_cpu", "--run-dir", str(cfg.root / "pretrain" / variant.key)]
    for o in overrides:
        args += ["--set", o]
    return args


def run_pretrain(
    cfg: DemoConfig, variant: Variant, steps: int, run_dir: Path | None = None, extra: tuple[str, ...] = ()
) -> Path:
    """Pretrain one variant; returns its exported checkpoint folder (kept if a finished run left it)."""
    from vjepa.pretrain.config import load_run_config
    from vjepa.pretrain.loop import pretrain

    run_dir = run_dir or cfg.root / "pretrain" / variant.key
    overrides = pretrain_overrides(cfg, steps) + list(variant.overrides or ()) + list(extra)
    config, run_dir = load_run_config("tiny_cpu", overrides, run_dir, False)
    export = run_dir / "export"
    if (export / "config.json").is_file():
        return export
    if run_dir.exists():  # an interrupted earlier attempt: start over (the demo owns this folder)
        shutil.rmtree(run_dir)
    pretrain(config, run_dir)
    return export


def calibrate_steps(cfg: DemoConfig, budget_seconds: float) -> tuple[int, float]:
    """Steps per variant that fit the pretraining share of the budget, from a short timed run."""
    if cfg.pretrain_steps is not None:
        return cfg.pretrain_steps, float("nan")
    probe_dir = cfg.root / "calibration"
    shutil.rmtree(probe_dir, ignore_errors=True)
    from vjepa.pretrain.metrics import read_metrics

    timed = ("optimization.epochs=1", f"optimization.ipe={CALIBRATION_STEPS + 1}", "optimization.warmup=0")
    run_pretrain(cfg, VARIANTS[0], CALIBRATION_STEPS + 1, probe_dir, (*timed, "logging.log_every=1"))
    rows = read_metrics(probe_dir / "metrics.jsonl")
    per_step = sorted(r["step_time_s"] for r in rows if r["step"] > 0)  # step 0 includes warm-up costs
    seconds = per_step[len(per_step) // 2]
    shutil.rmtree(probe_dir, ignore_errors=True)
    pretrained = sum(1 for v in VARIANTS if v.overrides is not None)
    steps = int(PRETRAIN_SHARE * budget_seconds / (pretrained * seconds))
    return max(cfg.min_steps, steps), seconds


def eval_command(cfg: DemoConfig, row: Row, label: str, seed: int) -> list[str]:
    args = ["eval", f"synthetic_{label}"]
    for o in eval_overrides(cfg, row, label, seed):
        args += ["--set", o]
    return args


def eval_overrides(cfg: DemoConfig, row: Row, label: str, seed: int) -> list[str]:
    data = cfg.root / "data"
    overrides = row.variant.overrides
    if overrides is None:  # the exact weights every pretraining run starts from: same size, same seed
        encoder = ["encoder.checkpoint=null", f"encoder.model={cfg.model}", f"encoder.init_seed={cfg.seed}"]
    else:
        pixels = "objective.target=pixels" in overrides  # no target encoder: read the context encoder
        encoder = [
            f"encoder.checkpoint={cfg.root / 'pretrain' / row.variant.key / 'export'}",
            f"encoder.which={'encoder' if pixels else 'target_encoder'}",
        ]
    return [
        *encoder,
        f"data.train={data / f'train_{label}.csv'}",
        f"data.val={data / f'val_{label}.csv'}",
        f"data.frames_per_clip={cfg.frames}",
        f"data.resolution={cfg.size}",
        f"probe.kind={row.readout}",
        f"optimization.epochs={cfg.probe_epochs}",
        f"optimization.min_steps={cfg.probe_min_steps}",
        f"optimization.lr=[{cfg.probe_lr}]",
        f"label_fractions=[{row.fraction}]",
        f"cache.dir={cfg.root / 'cache' / label}",
        f"output_dir={cfg.root / 'eval' / row.key / label / f'seed{seed}'}",
        f"seed={seed}",
        "device=auto",
        *([f"threads={cfg.threads}"] if cfg.threads else []),
    ]


def run_probe(cfg: DemoConfig, row: Row, label: str, seed: int) -> float:
    """Top-1 (%) of the selected probe head on the validation set, NaN when no head trained; an existing
    result is read back, not recomputed."""
    from vjepa.probe.config import load_eval_config
    from vjepa.probe.loop import run_eval
    from vjepa.probe.selection import ProbeNotTrainedError

    out = cfg.root / "eval" / row.key / label / f"seed{seed}" / "metrics.json"
    if not out.is_file():
        config, source = load_eval_config(f"synthetic_{label}", eval_overrides(cfg, row, label, seed))
        try:
            run_eval(config, source)
        except ProbeNotTrainedError as err:
            log(None, f"WARNING: {err}")
    top1 = json.loads(out.read_text())["selected"][0]["top1"]
    return float("nan") if top1 is None else float(top1)


# --------------------------------------------------------------------------------------------------- main


def run_demo(cfg: DemoConfig) -> Path:
    """Run the whole demo; returns the path of ``report.md``."""
    from vjepa.demo.report import write_report

    root = cfg.root
    if (root / "report.md").is_file():
        raise FileExistsError(f"{root} already holds a finished demo (report.md); choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    (root / "demo_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    budget = 60.0 * cfg.budget_minutes
    start = time.perf_counter()
    times = StageTimes()

    t = time.perf_counter()
    log(None, f"[1/4] synthetic data -> {root / 'data'}")
    make_data(cfg)
    times.add("data", t)

    t = time.perf_counter()
    steps, step_seconds = calibrate_steps(cfg, budget - (time.perf_counter() - start))
    log(
        None,
        f"[2/4] pretraining {len(VARIANTS) - 1} variants x {steps} steps"
        + (f" (calibrated at {step_seconds:.2f} s/step)" if cfg.pretrain_steps is None else ""),
    )
    for variant in VARIANTS:
        if variant.overrides is not None:  # the random init needs no run: eval rebuilds it from the seed
            log(None, f"  - {variant.title}")
            run_pretrain(cfg, variant, steps)
    times.add("pretrain", t)

    t = time.perf_counter()
    rows = table_rows(cfg)
    results: dict[str, dict[str, list[float]]] = {}
    total = len(rows) * len(LABELS) * cfg.probe_seeds
    done = 0
    for row in rows:
        for label in LABELS:
            for seed in range(cfg.probe_seeds):
                done += 1
                log(None, f"[3/4] probe {done}/{total}: {row.title} / {label} / seed {seed}")
                results.setdefault(row.key, {}).setdefault(label, []).append(run_probe(cfg, row, label, seed))
    times.add("probes", t)

    t = time.perf_counter()
    log(None, "[4/4] figures and report")
    commands: dict[str, list[str]] = {"data": [command(data_command(cfg))]}
    for row in rows:
        cmds = []
        if row.variant.overrides is not None:
            cmds.append(command(pretrain_command(cfg, row.variant, steps)))
        cmds += [command(eval_command(cfg, row, label, 0)) for label in LABELS]
        commands[row.key] = cmds
    report = write_report(cfg, rows, results, commands, steps, times, time.perf_counter() - start)
    times.add("report", t)
    return report
