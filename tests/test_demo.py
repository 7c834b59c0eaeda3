"""The main job end to end with a tiny budget: every report file exists and the table parses."""

from __future__ import annotations

import json
import re

import pytest
import torch

from data_helpers import smooth_frames, write_lossless
from vjepa.cli import main as cli_main
from vjepa.demo.plan import Claim, DemoConfig, claims, table_rows
from vjepa.demo.report import verdict


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    return int(exit_info.value.code)


def test_quick_demo_writes_every_report_file(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli(["demo", "--quick", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for name in ("pretrain_loss", "rankme", "feature_std", "masks", "accuracy", "pca"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"figures/{name}.png" in report
    cell = r"(?:[\d.]+ ± [\d.]+(?: \(\d+ of \d+ not trained\))?|not trained)"  # short probes may not train
    rows = [line for line in report.splitlines() if re.match(rf"\| .* \| {cell} \| {cell} \| .* \|$", line)]
    cfg = DemoConfig.quick_config(str(out))
    assert len(rows) == len(table_rows(cfg))
    for line in rows:
        for cell in [c.strip() for c in line.strip("|").split("|")][1:3]:
            if cell != "not trained":
                mean, std = (float(x) for x in cell.split(" (")[0].split(" ± "))
                assert 0 <= mean <= 100 and std >= 0
    assert "vjepa pretrain tiny_cpu" in report and "vjepa eval video_csv" in report
    assert "vjepa make-data synthetic" in report
    # Every verdict in the report is the one its numbers give.
    saved = json.loads((out / "results.json").read_text())["results"]
    assert set(saved) == {r.key for r in table_rows(cfg)}
    for label in ("motion", "appearance"):
        assert all(len(saved[r.key][label]) == cfg.seeds for r in table_rows(cfg))
    for claim in claims(cfg):
        expected, lead = verdict(claim, saved)
        line = next(x for x in report.splitlines() if x.startswith(f"| {claim.text} |"))
        assert line.endswith(f"| {expected} |")
    # Each seed has its own initial weights (test_initial_export_is_the_start_of_a_run: they are the runs' own).
    from vjepa.checkpoint import load_pretrained

    inits = [load_pretrained(out / "init" / f"seed{s}").encoder("encoder").state_dict() for s in range(2)]
    assert not all(torch.equal(inits[0][k], inits[1][k]) for k in inits[0])
    assert "report:" in capsys.readouterr().out
    # a finished demo is never overwritten
    assert run_cli(["demo", "--quick", "--out", str(out)]) == 2


def test_verdicts_follow_the_numbers():
    def res(a, b):
        return {"a": {"motion": [{"top1": v} for v in a]}, "b": {"motion": [{"top1": v} for v in b]}}

    claim = Claim("x", "a", "b", "motion", margin=15.0)
    assert verdict(claim, res([80, 82, 81], [50, 52, 51]))[0] == "held"
    assert verdict(claim, res([60, 62, 61], [50, 52, 51]))[0] == "did not hold"
    assert verdict(claim, res([30, 31, 32], [50, 52, 51]))[0] == "reversed"
    assert verdict(claim, res([50, 90, 70], [50, 52, 51]))[0] == "did not hold"  # +19 but spreads of 21
    assert verdict(claim, res([float("nan")] * 3, [50, 52, 51]))[0] == "not measured"


def test_initial_export_is_the_start_of_a_run(tmp_path):
    """export_initial writes the weights a pretraining run of the same config starts from, bit for bit."""
    from vjepa.checkpoint import load_pretrained
    from vjepa.pretrain.config import load_run_config
    from vjepa.pretrain.setup import build_objective, export_initial
    from vjepa.runtime import seed_everything

    overrides = ["model.embed_dim=32", "model.depth=2", "model.num_heads=2", "runtime.seed=7"]
    config, _ = load_run_config("tiny_cpu", overrides, None, False)
    export_initial(config, tmp_path / "init")
    loaded = load_pretrained(tmp_path / "init").encoder("encoder").state_dict()
    seed_everything(7)
    built = build_objective(config).encoder.state_dict()
    assert loaded.keys() == built.keys() and all(torch.equal(loaded[k], built[k]) for k in built)


def test_pixel_baseline_reads_motion_from_frame_differences():
    """Logistic regression on frame differences reads the direction of a dot that no single frame shows (the
    centre of mass of a difference moves with the dot: a linear function of it)."""
    from vjepa.demo.pixels import fit_logistic, frame_differences

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(96) % 2
    clips = torch.zeros(96, 3, 2, 8, 8)
    for i, (x, y) in enumerate(torch.randint(1, 7, (96, 2), generator=gen).tolist()):
        clips[i, :, 0, y, x] = 1.0
        clips[i, :, 1, y, x + (1 if labels[i] else -1)] = 1.0  # right or left
    x = frame_differences(clips)
    best, fits = fit_logistic((x[:64], labels[:64]), (x[64:80], labels[64:80]), (x[80:], labels[80:]), 2)
    assert best.train == 100.0 and best.test >= 75.0
    assert best.selection == max(f.selection for f in fits)


def test_masks_command_draws_a_config_over_a_video(tmp_path):
    video = write_lossless(tmp_path / "v.mp4", smooth_frames(20, 80, 96))
    out = tmp_path / "m.png"
    assert (
        run_cli(
            [
                "masks",
                "tiny_cpu",
                "--video",
                str(video),
                "--out",
                str(out),
                "--gif",
                "--set",
                "data.batch_size=4",
            ]
        )
        == 0
    )
    assert out.stat().st_size > 1000
    assert len(list(tmp_path.glob("m_*.gif"))) == 2


def test_budget_sizes_pretraining_from_a_timed_calibration_run(tmp_path):
    import dataclasses

    from vjepa.demo.plan import variants
    from vjepa.demo.run import PRETRAIN_SHARE, calibrate_steps, make_data

    cfg = dataclasses.replace(DemoConfig.quick_config(str(tmp_path / "d")), pretrain_steps=None)
    make_data(cfg)
    steps, seconds = calibrate_steps(cfg, budget_seconds=600.0, workers=2)
    assert seconds > 0
    runs = cfg.seeds * len(variants(cfg))
    assert steps == max(10, int(PRETRAIN_SHARE * 600.0 * 2 / (runs * seconds)))
    assert not (tmp_path / "d" / "calibration").exists()  # the timing run leaves nothing behind
