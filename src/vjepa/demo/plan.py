"""What the demo runs: its config, the pretraining variants and the table's rows, each with the exact
``vjepa`` commands that reproduce it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Label = Literal["motion", "appearance"]
LABELS: tuple[Label, ...] = ("motion", "appearance")


@dataclass(frozen=True)
class DemoConfig:
    """Everything ``vjepa demo`` decides; the defaults fit 15 minutes on a 2-core CPU.

    Args:
        out_dir: where data, runs, figures and ``report.md`` go (must not hold a finished demo).
        budget_minutes: wall-time budget; used to size the pretraining (from a timed calibration run) when
            ``pretrain_steps`` is None.
        seed: seed of the data, the models' initialization and the masks.
        probe_seeds: probes trained per (encoder, label, readout), with seeds 0..n-1 (mean and spread).
        num_train: synthetic training videos (pretraining uses all of them, without labels).
        num_val: synthetic validation videos (probes are scored on these).
        hold: the object moves every ``hold`` frames (2 = never inside one tubelet: motion must be read
            across time, see :class:`vjepa.data.synthetic.SyntheticSpec`).
        frames: frames per video and per clip.
        size: frame side in pixels.
        model: encoder size (see ``vjepa models``).
        pred_depth: predictor depth.
        pred_embed_dim: predictor width (narrower than the encoder, as in the paper: 384 for 1024).
        batch_size: pretraining clips per step.
        lr: pretraining peak learning rate (warmup starts at a third of it).
        ema: target-encoder momentum at the start and end of the schedule (the paper's 0.998 -> 1.0).
        pretrain_steps: steps of each pretraining variant (rounded up to a multiple of 10). The default, 220,
            fits the 15-minute budget on a 2-core CPU (about 12 minutes in all, measured); None sizes them
            from ``budget_minutes`` with a timed calibration run, which a busy machine makes shorter.
        min_steps: lower bound when sized from the budget.
        probe_epochs: epochs of each probe.
        probe_min_steps: optimizer steps each probe takes at least (more epochs for the low-label row).
        probe_lr: probe learning rate.
        low_label_fraction: fraction of training labels for the label-efficiency row.
        threads: CPU threads (None: torch's default).
    """

    out_dir: str = "runs/demo"
    budget_minutes: float = 15.0
    seed: int = 0
    probe_seeds: int = 3
    num_train: int = 512
    num_val: int = 256
    hold: int = 2
    frames: int = 16
    size: int = 64
    model: str = "vit_tiny"
    pred_depth: int = 4
    pred_embed_dim: int = 96
    batch_size: int = 16
    lr: float = 3e-4
    ema: tuple[float, float] = (0.998, 1.0)
    pretrain_steps: int | None = 220
    min_steps: int = 20
    probe_epochs: int = 20
    probe_min_steps: int = 500
    probe_lr: float = 1e-3
    low_label_fraction: float = 0.1
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.probe_seeds < 1 or self.budget_minutes <= 0 or self.num_train < 8 or self.num_val < 4:
            raise ValueError(f"demo config out of range: {self}")
        if not 0 < self.low_label_fraction < 1:
            raise ValueError(f"low_label_fraction must lie in (0, 1), got {self.low_label_fraction}")

    @classmethod
    def quick(cls, out_dir: str) -> DemoConfig:
        """A seconds-long run for tests: tiny data, a few steps, one-epoch probes (same code path)."""
        return cls(
            out_dir=out_dir,
            budget_minutes=1.0,
            num_train=16,
            num_val=8,
            frames=4,
            pred_depth=1,
            pred_embed_dim=48,
            batch_size=4,
            pretrain_steps=3,
            min_steps=1,
            probe_epochs=1,
            probe_min_steps=0,
            low_label_fraction=0.5,
        )

    @property
    def root(self) -> Path:
        return Path(self.out_dir)


@dataclass(frozen=True)
class Variant:
    """A pretraining run of the comparison (``None`` overrides: no pretraining, the random-init encoder).

    Args:
        key: folder name under ``pretrain/``.
        title: how the report names it.
        overrides: the ``--set`` values on top of the common pretraining ones.
    """

    key: str
    title: str
    overrides: tuple[str, ...] | None


VARIANTS: tuple[Variant, ...] = (
    Variant("vjepa", "V-JEPA (multi-block masks, feature targets)", ()),
    Variant("random_init", "random init (no pretraining)", None),
    Variant("pixels", "pixel targets (VideoMAE-style)", ("objective.target=pixels",)),
    Variant("random_tube", "random-tube masking (90%)", ("masks.kind=random_tube",)),
)


@dataclass(frozen=True)
class Row:
    """One line of the results table: an encoder read out one way.

    Args:
        key: identifier (used in file names).
        title: the line's label.
        variant: which encoder.
        readout: ``attentive`` or ``linear`` (average pooling).
        fraction: fraction of training labels the probe sees.
    """

    key: str
    title: str
    variant: Variant
    readout: Literal["attentive", "linear"]
    fraction: float


def table_rows(cfg: DemoConfig) -> list[Row]:
    by_key = {v.key: v for v in VARIANTS}
    rows = [Row(v.key, v.title, v, "attentive", 1.0) for v in VARIANTS]
    rows.append(Row("vjepa_avgpool", "V-JEPA, average pooling + linear", by_key["vjepa"], "linear", 1.0))
    pct = f"{100 * cfg.low_label_fraction:g}%"
    rows.append(
        Row(
            "vjepa_lowlabel",
            f"V-JEPA, attentive, {pct} of labels",
            by_key["vjepa"],
            "attentive",
            cfg.low_label_fraction,
        )
    )
    return rows


def command(args: list[str]) -> str:
    """A shell-quoted ``vjepa`` command line."""
    return " ".join(shlex.quote(a) for a in ["vjepa", *args])
