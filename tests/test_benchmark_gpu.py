"""benchmarks/gpu.py cannot rot unnoticed: its --smoke mode runs the same code (torchrun, DDP and FSDP
placement, train_step, the FLOP count, the data rows) on a tiny model on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vjepa.pretrain.distributed import fsdp_supported

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu.py"
STRATEGIES = ["ddp", "fsdp"] if fsdp_supported() else ["ddp"]  # gpu.py says why when fsdp is left out


@pytest.mark.slow
def test_smoke_mode_prints_every_row():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| vit_tiny")]
    expected = [(strategy, ckpt) for strategy in STRATEGIES for ckpt in ("off", "on")]
    assert [(r[2].strip(), r[3].strip()) for r in rows] == expected
    for r in rows:
        assert float(r[5]) > 0 and float(r[6]) > 0 and float(r[7]) > 0  # step s, clips/s, TFLOP/s
    data = [line for line in done.stdout.splitlines() if line.startswith("| 320x240")]
    assert len(data) == 1 and float(data[0].split("|")[3]) > 0


def test_memory_table_is_computed_without_a_gpu():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--memory"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    large = next(line for line in done.stdout.splitlines() if line.startswith("| vit_large"))
    assert "| 304 M |" in large  # ViT-L/16: 304 M parameters


def test_settings_past_the_time_budget_are_skipped_on_every_rank():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--budget-s", "0", "--no-data"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| vit_tiny")]
    assert len(rows) == 2 * len(STRATEGIES)
    assert all("skipped: the 0 s budget (--budget-s) is spent" in row for row in rows)


def test_every_eager_row_comes_before_the_compiled_ones():
    # in a subprocess: importing the script puts benchmarks/ on sys.path and its modules in sys.modules
    code = (
        "import argparse, json, sys, runpy; g = runpy.run_path(sys.argv[1]);"
        "a = argparse.Namespace(smoke=False, grid='default', batch_large=24, batch_giant=12);"
        "print(json.dumps([[s.compile, s.activation_checkpointing] for s in g['settings'](a)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(SCRIPT)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])
    n_eager = 2 * 2 * len(STRATEGIES)  # two models x checkpointing off/on x strategies
    assert rows == [[False, False], [False, True]] * (n_eager // 2) + [[True, False]] * (n_eager // 2)


def test_gpu_session_script_parses_and_names_its_halves():
    session = SCRIPT.parent / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(session)], capture_output=True).returncode == 0
    done = subprocess.run(["bash", str(session)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "fetch | run" in done.stderr
