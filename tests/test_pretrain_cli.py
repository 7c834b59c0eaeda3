"""``vjepa pretrain`` end to end on the tiny recipe (shortened with --set), as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from vjepa.config import read_yaml
from vjepa.pretrain.metrics import read_metrics
from vjepa.pretrain.state import load_training_state

SHORT = [
    "--set", "optimization.epochs=2", "--set", "optimization.ipe=2", "--set", "data.synthetic_videos=16",
    "--set", "data.synthetic_resolution=48", "--set", "data.resolution=48", "--set", "data.num_frames=8",
    "--set", "data.synthetic_num_frames=8", "--set", "data.batch_size=2", "--set", "model.pred_depth=1",
    "--set", "logging.log_every=1", "--set", "logging.checkpoint_every=2", "--set", "runtime.threads=1",
    "--set", "logging.tensorboard=false", "--set", "logging.metrics_format=csv",
]  # fmt: skip


def _vjepa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vjepa", "pretrain", *args], capture_output=True, text=True, timeout=300
    )


def test_tiny_recipe_runs_end_to_end(tmp_path):
    run = tmp_path / "run"
    done = _vjepa("tiny_cpu", *SHORT, "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    assert "done: 4 steps" in done.stdout
    config = read_yaml(run / "config.yaml")
    assert config["model"]["name"] == "vit_tiny" and config["optimization"]["epochs"] == 2
    rows = read_metrics(run / "metrics.csv")
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and all(r["loss"] > 0 for r in rows)
    assert load_training_state(run / "checkpoints/latest.pt")["step"] == 4
    assert (run / "export/model.safetensors").is_file()

    # The same command again refuses (one clear line, nothing overwritten) ...
    again = _vjepa("tiny_cpu", *SHORT, "--run-dir", str(run))
    assert again.returncode == 2 and "already holds a run" in again.stderr and "Traceback" not in again.stderr
    # ... and --resume with more epochs is refused too: that changes the schedules.
    longer = _vjepa("--resume", "--run-dir", str(run), "--set", "optimization.epochs=3")
    assert longer.returncode == 2 and "optimization.epochs: 2 -> 3" in longer.stderr
    # Resuming a finished run with the saved config does nothing more.
    finished = _vjepa("--resume", "--run-dir", str(run))
    assert finished.returncode == 0, finished.stderr
    assert len(read_metrics(run / "metrics.csv")) == 4


def test_unknown_key_is_one_clear_line(tmp_path):
    done = _vjepa("tiny_cpu", "--set", "optimization.learnin_rate=1", "--run-dir", str(tmp_path / "r"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "optimization.learnin_rate" in done.stderr and "valid keys under 'optimization'" in done.stderr
    assert not (tmp_path / "r").exists()
