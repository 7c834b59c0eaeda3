"""The main job end to end with a tiny budget: every report file exists and the table parses."""

from __future__ import annotations

import re

import pytest

from data_helpers import smooth_frames, write_lossless
from vjepa.cli import main as cli_main
from vjepa.demo.plan import DemoConfig, table_rows
from vjepa.demo.report import Claim, verdict


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    return int(exit_info.value.code)


def test_quick_demo_writes_every_report_file(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli(["demo", "--quick", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for name in ("pretrain_loss", "collapse_monitors", "masks", "accuracy", "pca"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"figures/{name}.png" in report
    cell = (
        r"(?:[\d.]+ ± [\d.]+(?: \(\d+ of \d+ not trained\))?|not trained)"  # one-epoch probes may not train
    )
    rows = [line for line in report.splitlines() if re.match(rf"\| .* \| {cell} \| {cell} \|$", line)]
    assert len(rows) == len(table_rows(DemoConfig.quick(str(out))))
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for cell in cells[1:]:
            if cell != "not trained":
                mean, std = (float(x) for x in cell.split(" (")[0].split(" ± "))
                assert 0 <= mean <= 100 and std >= 0
    assert "vjepa pretrain tiny_cpu" in report and "vjepa eval synthetic_motion" in report
    assert report.count("| held |") + report.count("| did not hold |") + report.count("| reversed |") == 6
    assert "report:" in capsys.readouterr().out
    # a finished demo is never overwritten
    assert run_cli(["demo", "--quick", "--out", str(out)]) == 2


def test_verdicts_follow_the_numbers():
    claim = Claim("x", "a", "b", "motion", margin=15.0)
    assert verdict(claim, {"a": {"motion": [80, 82, 81]}, "b": {"motion": [50, 52, 51]}})[0] == "held"
    assert verdict(claim, {"a": {"motion": [60, 62, 61]}, "b": {"motion": [50, 52, 51]}})[0] == "did not hold"
    assert verdict(claim, {"a": {"motion": [30, 31, 32]}, "b": {"motion": [50, 52, 51]}})[0] == "reversed"


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

    from vjepa.demo.run import PRETRAIN_SHARE, calibrate_steps, make_data

    cfg = dataclasses.replace(DemoConfig.quick(str(tmp_path / "d")), pretrain_steps=None, min_steps=1)
    make_data(cfg)
    steps, seconds = calibrate_steps(cfg, budget_seconds=60.0)
    assert seconds > 0 and steps >= 1
    assert steps == max(1, int(PRETRAIN_SHARE * 60.0 / (3 * seconds)))
    assert not (tmp_path / "d" / "calibration").exists()  # the timing run leaves nothing behind
