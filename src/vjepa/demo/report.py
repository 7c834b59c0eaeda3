"""The demo's report: figures (PNG), ``results.json`` and ``report.md`` with the results table, the claims
checked against it, how each row was measured, and the commands behind every row. Every number in it is
computed here from the runs' files."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vjepa.checkpoint import load_pretrained
from vjepa.data.decode import VideoReader
from vjepa.data.index import load_index
from vjepa.data.transforms import normalize
from vjepa.demo.plan import LABELS, RANDOM_INIT, Claim, DemoConfig, Row, claims, encoder_source, variants
from vjepa.figures import pca_colours, plot_bars, plot_curves, plot_masks, plot_pca, token_states
from vjepa.io import DEMO_RESULTS_FORMAT, write_json
from vjepa.masks import PAPER_SETTINGS, MultiBlockMasks, RandomTubeMasks
from vjepa.pretrain.metrics import read_metrics

CHANCE = 25.0  # four classes for each label
Results = Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]]
"""``results[row][label]``: one ``{"top1", "train_top1"}`` per seed (NaN: the probe did not train)."""


def summarize(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) over the seeds whose probe trained (NaN: not trained; both NaN when
    none did)."""
    trained = [v for v in values if not math.isnan(v)]
    if not trained:
        return math.nan, math.nan
    return statistics.fmean(trained), (statistics.stdev(trained) if len(trained) > 1 else 0.0)


def top1(results: Results, row: str, label: str, key: str = "top1") -> list[float]:
    return [r[key] for r in results[row][label]]


def verdict(claim: Claim, results: Results) -> tuple[str, float]:
    """``held`` / ``did not hold`` / ``reversed``, and the measured lead of ``better`` over ``worse``.

    A claim holds when the lead of the means exceeds both the claim's margin and the sum of the two rows'
    seed spreads; it is reversed when the other row leads by more than that sum."""
    (m1, s1), (m2, s2) = (
        summarize(top1(results, claim.better, claim.label)),
        summarize(top1(results, claim.worse, claim.label)),
    )
    lead = m1 - m2
    if math.isnan(lead):
        return "not measured", lead
    noise = s1 + s2
    if lead > max(claim.margin, noise):
        return "held", lead
    if lead < -noise:
        return "reversed", lead
    return "did not hold", lead


# --------------------------------------------------------------------------------------------------- figures


def _metrics(cfg: DemoConfig, seed: int, key: str) -> list[dict[str, Any]]:
    path = cfg.root / "pretrain" / f"seed{seed}" / key / "metrics.jsonl"
    return read_metrics(path) if path.is_file() else []


def _mean_curve(cfg: DemoConfig, key: str, metric: str) -> tuple[list[int], list[float]]:
    """``metric`` against step, the mean over the seeds (steps every seed logged)."""
    per_seed = [
        {r["step"]: r[metric] for r in _metrics(cfg, s, key) if metric in r} for s in range(cfg.seeds)
    ]
    steps = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
    return steps, [statistics.fmean(p[s] for p in per_seed) for s in steps]


def training_figures(cfg: DemoConfig, fig_dir: Path) -> list[Path]:
    """Loss, RankMe and feature std over pretraining, one curve per variant (mean over seeds)."""
    todo = variants(cfg)
    curves = {
        "loss": ("pretrain_loss.png", "pretraining loss (each variant's own objective)", True),
        "monitor/rankme": ("rankme.png", "RankMe of pooled target features (falls = collapse)", False),
        "target_std": ("feature_std.png", "std of the targets over the batch (falls = collapse)", False),
    }
    paths = []
    for metric, (name, title, logy) in curves.items():
        series = {v.title: _mean_curve(cfg, v.key, metric) for v in todo}
        series = {k: v for k, v in series.items() if v[0]}
        paths.append(plot_curves(series, fig_dir / name, title=title, logy=logy))
    return paths


def _first_test_clip(cfg: DemoConfig) -> np.ndarray:
    """The first test video's frames, ``[T, H, W, 3]`` uint8, read through the data layer."""
    record = load_index(str(cfg.root / "data" / "val_motion.csv"))[0]
    with VideoReader(record.path) as reader:
        return reader.read_all()[: cfg.num_frames]


def mask_figure(cfg: DemoConfig, frames: np.ndarray, fig_dir: Path) -> Path:

    grid = cfg.token_grid
    rng = np.random.default_rng(0)
    generators = {
        "short-range": MultiBlockMasks(grid, PAPER_SETTINGS[0]),
        "long-range": MultiBlockMasks(grid, PAPER_SETTINGS[1]),
        "random tube 90%": RandomTubeMasks(grid, 0.9),
    }
    states = {}
    for name, gen in generators.items():
        pair = gen(1, rng)
        states[name] = token_states(pair.context[0].numpy(), pair.target[0].numpy(), grid)
    return plot_masks(
        frames,
        states,
        fig_dir / "masks.png",
        tubelet_size=cfg.encoder_config().tubelet_size,
        patch_size=cfg.encoder_config().patch_size,
        title="what each mask hides (red: predicted tokens)",
    )


def pca_figure(cfg: DemoConfig, frames: np.ndarray, fig_dir: Path) -> Path:
    clip = normalize(torch.from_numpy(frames).permute(0, 3, 1, 2).float()).unsqueeze(0)  # [1, 3, T, H, W]
    grid = cfg.token_grid
    rows = {}
    with torch.inference_mode():
        for name, key in (("random init", RANDOM_INIT), ("V-JEPA", "vjepa")):
            checkpoint, which = encoder_source(cfg, key, 0)
            encoder = load_pretrained(checkpoint).encoder(which).eval()
            rows[name] = pca_colours(encoder(clip)[0].float().numpy(), grid)  # [N, D] -> colours
    return plot_pca(frames, rows, fig_dir / "pca.png", tubelet_size=cfg.encoder_config().tubelet_size)


def accuracy_figure(rows: Sequence[Row], results: Results, fig_dir: Path) -> Path:
    groups = {
        label: {row.title: summarize(top1(results, row.key, label)) for row in rows} for label in LABELS
    }
    return plot_bars(
        groups,
        fig_dir / "accuracy.png",
        title="probe top-1 on the test videos (mean ± std over seeds)",
        reference=CHANCE,
    )


# ---------------------------------------------------------------------------------------------------- report


def _cell(values: Sequence[float]) -> str:
    mean, std = summarize(values)
    failed = sum(math.isnan(v) for v in values)
    if failed == len(values):
        return "not trained"
    return f"{mean:.1f} ± {std:.1f}" + (f" ({failed} of {len(values)} not trained)" if failed else "")


def _mean(values: Sequence[float]) -> str:
    mean = summarize(values)[0]
    return "-" if math.isnan(mean) else f"{mean:.0f}"


def results_table(rows: Sequence[Row], results: Results) -> list[str]:
    lines = [
        "| encoder / readout | motion top-1 (%) | appearance top-1 (%) | train top-1 motion / appearance |",
        "|---|---|---|---|",
    ]
    for row in rows:
        cells = [_cell(top1(results, row.key, label)) for label in LABELS]
        train = " / ".join(_mean(top1(results, row.key, lb, "train_top1")) for lb in LABELS)
        lines.append(f"| {row.title} | {cells[0]} | {cells[1]} | {train} |")
    return lines


def _export_meta(cfg: DemoConfig, key: str) -> dict[str, Any]:
    path = cfg.root / "pretrain" / "seed0" / key / "export" / "config.json"
    return json.loads(path.read_text()).get("meta", {}) if path.is_file() else {}


def encoder_lines(cfg: DemoConfig) -> list[str]:
    """Which encoder each pretrained row probes, and how much of it is still the initialisation."""
    lines = [
        "| variant | probed encoder | share of initial weights in it | RankMe first → last |",
        "|---|---|---|---|",
    ]
    for v in variants(cfg):
        meta = _export_meta(cfg, v.key)
        share = meta.get("target_encoder_init_share")
        if v.probed == "target_encoder":
            probed = "EMA target encoder (what the paper evaluates)"
            kept = f"{100 * share:.1f}%" if share is not None else "?"
        else:
            probed = "context encoder (no EMA teacher in this variant)"
            kept = "0% (trained directly)"
        steps, ranks = _mean_curve(cfg, v.key, "monitor/rankme")
        measured = [r for r in ranks if not math.isnan(r)]
        rank = f"{measured[0]:.1f} → {measured[-1]:.1f}" if measured else "not logged (no target encoder)"
        lines.append(f"| {v.title} | {probed} | {kept} | {rank} |")
    return lines


def _lead(lead: float) -> str:
    return "n/a" if math.isnan(lead) else f"{lead:+.1f}"


def _environment(cfg: DemoConfig) -> str:
    path = cfg.root / "pretrain" / "seed0" / "vjepa" / "runtime.json"
    if not path.is_file():
        return "environment not recorded"
    env = json.loads(path.read_text())[0]
    cpu = env.get("cpu", {})
    precision = env["precision"]
    return (
        f"{env['device']}, torch {env['torch']}, kernels {cpu.get('torch_kernels', '?')}, native bf16: "
        f"{cpu.get('native_bf16', '?')}; pretraining precision {precision['precision']} ({precision['reason']})"
    )


def write_report(
    cfg: DemoConfig,
    rows: Sequence[Row],
    results: Results,
    commands: Mapping[str, Sequence[str]],
    steps: int,
    workers: int,
    times,
    started: float,
) -> Path:
    """Figures, ``results.json`` and ``report.md``; prints the table and the claims' verdicts.

    Args:
        cfg: the demo's config.
        rows: the table's rows.
        results: the measured accuracies.
        commands: the commands behind the data (``data``) and each row (by key).
        steps: pretraining steps per run.
        workers: worker processes the jobs ran on.
        times: wall seconds per stage (:class:`vjepa.demo.run.StageTimes`).
        started: ``time.perf_counter()`` when the demo started.
    """
    figures = report_figures(cfg, rows, results)
    table = results_table(rows, results)
    checked = [(c, *verdict(c, results)) for c in claims(cfg)]
    wall = time.perf_counter() - started
    lines = [
        *method_lines(cfg, steps, workers, times.seconds, wall),
        "## Results",
        "",
        *table,
        "",
        "## Which encoder each row reads",
        "",
        *encoder_lines(cfg),
        "",
        "## The claims at this scale",
        "",
        "| claim | measured lead (points) | verdict |",
        "|---|---|---|",
        *[f"| {c.text} | {_lead(lead)} | {v} |" for c, v, lead in checked],
        "",
        "A claim *held* when the lead of the means exceeds the sum of the two rows' seed spreads (and the stated "
        "margin); *reversed* when the other row leads by that much; otherwise it *did not hold* at this scale.",
        "",
        "## Figures",
        "",
        *[f"![{p.stem}](figures/{p.name})" for p in figures],
        "",
        *reproduce_lines(rows, commands),
    ]
    report = cfg.root / "report.md"
    results_data = {"steps": steps, "results": results, "seconds": times.seconds, "wall_seconds": wall}
    write_json(cfg.root / "results.json", results_data, DEMO_RESULTS_FORMAT, indent=1)
    report.write_text("\n".join(lines))
    _print_summary(table, checked, wall, report)
    return report


def _print_summary(
    table: list[str], checked: list[tuple[Claim, str, float]], wall: float, report: Path
) -> None:
    print("\n".join(table))
    print()
    for c, v, lead in checked:
        print(f"{v:>12}  ({_lead(lead)})  {c.text}")
    print(f"\nwall time {wall / 60:.1f} min; report: {report}")


def report_figures(cfg: DemoConfig, rows: Sequence[Row], results: Results) -> list[Path]:
    """Every figure of the report, in its order."""
    fig_dir = cfg.root / "figures"
    frames = _first_test_clip(cfg)
    return [
        *training_figures(cfg, fig_dir),
        mask_figure(cfg, frames, fig_dir),
        accuracy_figure(rows, results, fig_dir),
        pca_figure(cfg, frames, fig_dir),
    ]


def method_lines(
    cfg: DemoConfig, steps: int, workers: int, seconds: Mapping[str, float], wall: float
) -> list[str]:
    """The report's title and how the data, the pretraining and the probes were made, and on what machine."""
    grid = cfg.token_grid
    return [
        "# V-JEPA on a laptop CPU: the demo report",
        "",
        f"**Data.** Synthetic videos ({cfg.num_train} train, {cfg.num_test} test; {cfg.num_frames} frames of "
        f"{cfg.resolution}x{cfg.resolution}): {cfg.objects} small shapes drift together in one of 4 directions (the **motion** "
        f"label) at {' or '.join(map(str, cfg.speeds))} pixel(s) per frame, moving every {cfg.hold} frames, so no "
        "2-frame tubelet shows motion; their shape is the **appearance** label. Chance is 25% for both.",
        "",
        f"**Pretraining.** A ViT of width {cfg.embed_dim}, depth {cfg.depth}, patch {cfg.patch_size} "
        f"(tokens {grid.depth}x{grid.height}x{grid.width}), predictor {cfg.pred_embed_dim}x{cfg.pred_depth}. Every variant "
        f"ran {steps} steps of batch {cfg.batch_size} with each of {cfg.seeds} seeds; the runs of one seed start "
        "from the same weights, and the random-init row is exactly those weights. The EMA momentum starts at "
        f"1 - 1/({cfg.ema_horizon:g} x steps) so the target encoder learns within the run.",
        "",
        f"**Probes.** Frozen features, each row's own head grid (4 learning rates x 2 weight decays, "
        f"{cfg.probe_epochs}+ epochs, at least {cfg.probe_min_steps} steps), the head and epoch chosen on 20% of "
        "the training videos held out; the table reports the test videos, mean ± standard deviation over the "
        "seeds (pretraining seed = probe seed). Train top-1 is the selected head's accuracy on its training "
        "samples: far above the test accuracy means the probe had what it needed and the features did not "
        "generalise. *Not trained*: no head of the grid fit its training samples better than chance + 3 binomial "
        "standard deviations; on frozen features that means they do not carry the label in a form the probe can "
        "learn (collapsed features do this). Such seeds are left out of the mean and counted in the cell, and a "
        "claim on a row that no seed measured is *not measured*.",
        "",
        f"**Machine.** {_environment(cfg)}. {workers} single-threaded worker process(es). Wall time "
        f"{wall / 60:.1f} min: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items() if v) + ".",
        "",
    ]


def reproduce_lines(rows: Sequence[Row], commands: Mapping[str, Sequence[str]]) -> list[str]:
    """The commands behind every row, as a bash block."""
    lines = [
        "## Reproduce",
        "",
        "Each row is the output of these commands (seed 0; `runtime.seed=N` / `seed=N` and the `seedN` folders "
        "for the others; the demo ran them through the same library functions). The random-init weights are "
        "what `vjepa.pretrain.setup.export_initial` writes for the pretraining config of the seed.",
        "",
        "```bash",
        *commands["data"],
    ]
    for row in rows:
        if row.key in commands:
            lines += ["", f"# {row.title}", *commands[row.key]]
    return [*lines, "```", ""]
