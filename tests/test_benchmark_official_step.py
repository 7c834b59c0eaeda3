"""benchmarks/official_step.py restates the official training step (per-mask patch embedding, repeated-index
gathers, broadcast mask tokens, the weight-0 variance term, loop AdamW and EMA) on copies of our modules. Our
step must give the same losses and target-encoder weights as that restatement, step after step; the benchmark
prints both differences, and this test runs it at a tiny size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "official_step.py"


def test_our_step_equals_the_official_step():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--num-frames", "8", "--resolution", "64", "--batch", "2", "--pred-depth", "2", "--pred-width", "48",
            "--rounds", "2", "--per-round", "2", "--warmup", "2", "--precision", "fp32"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| fp32"))
    official, ours, speedup, loss_diff, weight_diff = (c.strip() for c in row.split("|")[2:-1])
    assert float(official) > 0 and float(ours) > 0 and speedup.endswith("x")
    assert float(loss_diff) < 1e-6, row  # 6 steps, every loss
    assert float(weight_diff) < 2e-6, row  # the EMA target encoder after them
