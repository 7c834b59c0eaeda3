"""Metric rows to ``metrics.jsonl`` (or ``metrics.csv``) in the run directory, and to TensorBoard when the
``tensorboard`` package is installed. Only rank 0 writes.

On resume, rows of steps at or after the resumed step (written by the interrupted run after its last
checkpoint) are dropped first, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from pathlib import Path
from typing import Any

from vjepa.io import write_text
from vjepa.pretrain.config import MetricsFormat


class MetricsWriter:
    """Appends one row per logged step.

    Args:
        run_dir: the run directory.
        fmt: ``jsonl`` (one JSON object per line) or ``csv`` (columns fixed by the first row; later new keys
            are an error, so log every key from the first row on).
        tensorboard: also write TensorBoard events under ``run_dir/tb`` if the package is importable.
        resume_step: drop existing rows with ``step >= resume_step`` (None: a new run; the file must not exist).
    """

    def __init__(
        self, run_dir: Path, fmt: MetricsFormat, tensorboard: bool, resume_step: int | None = None
    ) -> None:
        self.path = Path(run_dir) / f"metrics.{fmt}"
        self.fmt = fmt
        self._columns: list[str] | None = None
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        self._file = self.path.open("a", encoding="utf-8", newline="")
        self._tb = None
        if tensorboard and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is an optional dependency

            self._tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)

    def write(self, step: int, values: dict[str, Any]) -> None:
        """One row: ``step`` plus ``values`` (numbers or strings)."""
        row = {"step": step, **values}
        if self.fmt == "jsonl":
            self._file.write(json.dumps(row, allow_nan=True) + "\n")
        else:
            if self._columns is None:
                self._columns = list(row)
                if self._file.tell() == 0:
                    csv.writer(self._file).writerow(self._columns)
            extra = [k for k in row if k not in self._columns]
            if extra:
                raise ValueError(f"{self.path}: new metric column(s) {extra} after the header was written")
            csv.writer(self._file).writerow([row.get(k, "") for k in self._columns])
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def _truncate(self, resume_step: int) -> None:
        text = self.path.read_text(encoding="utf-8")
        if self.fmt == "jsonl":
            kept = [line for line in text.splitlines() if line and json.loads(line)["step"] < resume_step]
            new = "".join(line + "\n" for line in kept)
        else:
            rows = list(csv.reader(io.StringIO(text)))
            if not rows:
                return
            self._columns = rows[0]
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(rows[0])
            for r in rows[1:]:
                if r and int(r[0]) < resume_step:
                    writer.writerow(r)
            new = out.getvalue()
        write_text(self.path, new)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` or ``metrics.csv`` file (CSV values parsed as floats where possible)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: _number(v) for k, v in r.items()} for r in rows]


def _number(value: str) -> Any:
    try:
        f = float(value)
    except ValueError:
        return value
    return int(f) if f.is_integer() and "." not in value and "e" not in value.lower() else f
