"""Metric files: JSONL and CSV rows, truncation on resume, TensorBoard wiring when the package exists."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from vjepa.pretrain.metrics import MetricsWriter, read_metrics


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_rows_and_resume_truncation(tmp_path, fmt):
    writer = MetricsWriter(tmp_path, fmt, tensorboard=False)
    for step in range(6):
        writer.write(step, {"loss": 1.0 / (step + 1), "lr": 1e-3})
    writer.close()
    # A run killed after step 5 with its last checkpoint at step 4 resumes there: rows 4 and 5 go.
    resumed = MetricsWriter(tmp_path, fmt, tensorboard=False, resume_step=4)
    resumed.write(4, {"loss": 0.2, "lr": 1e-3})
    resumed.close()
    rows = read_metrics(tmp_path / f"metrics.{fmt}")
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[4]["loss"] == 0.2 and rows[1]["loss"] == 0.5


def test_csv_refuses_new_columns(tmp_path):
    writer = MetricsWriter(tmp_path, "csv", tensorboard=False)
    writer.write(0, {"loss": 1.0})
    with pytest.raises(ValueError, match="new metric column"):
        writer.write(1, {"loss": 1.0, "extra": 2.0})
    writer.close()


def test_tensorboard_gets_the_finite_scalars(tmp_path, monkeypatch):
    events = []

    class FakeWriter:
        def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
            events.append(("open", log_dir, purge_step))

        def add_scalar(self, key: str, value: float, step: int) -> None:
            events.append((key, value, step))

        def close(self) -> None:
            events.append(("close",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: object() if name == "tensorboard" else real_find_spec(name)
    )
    writer = MetricsWriter(tmp_path, "jsonl", tensorboard=True, resume_step=3)
    writer.write(3, {"loss": 0.5, "monitor/rankme": float("nan"), "note": "text"})
    writer.close()
    assert events == [("open", str(tmp_path / "tb"), 3), ("loss", 0.5, 3), ("close",)]
