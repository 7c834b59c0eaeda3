"""benchmarks/gpu.py cannot rot unnoticed: its --smoke mode runs the same code (torchrun, DDP and FSDP
placement, train_step, the FLOP count, the data rows) on a tiny model on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vjepa.pretrain.distributed import fsdp_supported

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.slow
def test_smoke_mode_prints_every_row():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| vit_tiny")]
    strategies = ["ddp", "fsdp"] if fsdp_supported() else ["ddp"]  # and a line says why
    expected = [(strategy, ckpt) for strategy in strategies for ckpt in ("off", "on")]
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
