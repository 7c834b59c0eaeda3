"""What the demo runs: its config, the pretraining variants, the table's rows and the claims it checks, each
row with the exact ``vjepa`` commands that reproduce it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from vjepa.data.sampling import ClipConfig
from vjepa.errors import InvalidArgument
from vjepa.grid import TokenGrid
from vjepa.models.registry import EncoderConfig, encoder_config

Label = Literal["motion", "appearance"]
LABELS: tuple[Label, ...] = ("motion", "appearance")
Readout = Literal["attentive", "linear", "pixels"]


@dataclass
class DemoConfig(ClipConfig):
    """Everything ``vjepa demo`` decides. The defaults fit 15 minutes of a 2-core CPU without native bf16
    (measured; see the README), the worst case of our users' laptops.

    Data (see :mod:`vjepa.data.synthetic`): ``objects`` small shapes drift together in one direction (the
    motion label, 4 classes) on a plain background; their shape is the appearance label (4 classes). They
    move every ``hold`` frames, so with ``hold`` equal to the tubelet size no token shows motion: the
    direction exists only across tokens, and with many objects which one went where is ambiguous.

    Args:
        out_dir: where data, runs, figures and ``report.md`` go (must not hold a finished demo).
        seeds: pretraining seeds; every pretrained row is the mean and spread over them (its probe uses the
            same seed), the random-init row over the initial weights of the same seeds.
        num_train: training videos: the unlabelled pretraining set, and the labelled probe training set (20% of
            it held out to select each probe's head).
        num_test: test videos (the table reports accuracy on them).
        num_frames: frames per video and per clip.
        frame_step: source frames between clip frames (1: every frame of the video).
        resolution: frame side in pixels.
        objects: moving objects per video.
        object_size: object side in pixels.
        speeds: object speeds in pixels per frame (one drawn per video).
        hold: the objects move every ``hold`` frames.
        patch_size: spatial patch side (``resolution / patch_size`` tokens a side).
        embed_dim: encoder width.
        depth: encoder blocks.
        num_heads: encoder heads.
        pred_embed_dim: predictor width (narrow, as the paper's 384 for 1024).
        pred_depth: predictor blocks.
        batch_size: pretraining clips per step.
        lr: pretraining peak learning rate.
        ema_horizon: the EMA target's time constant at the start, as a fraction of the run (so the target
            encoder learns within a short run; see ``optimization.ema_horizon``).
        pretrain_steps: steps of every pretraining run; None sizes them from ``budget_minutes`` with a timed
            calibration run.
        budget_minutes: wall-time budget used when ``pretrain_steps`` is None.
        low_label_fraction: fraction of the probe's training labels for the label-efficiency row.
        workers: processes running pretraining runs and probes side by side (one thread each); None: the
            usable CPUs, at most 4.
        objectives: also pretrain the anti-collapse objectives (variance-covariance and SIGReg) at the same
            compute.
        extra_objectives: also pretrain LeJEPA (online targets + SIGReg, no EMA) and SALT (a student of the
            frozen pixel-target run of its seed); with ``objectives``.
        probe_epochs: epochs of every probe head (the probe library's grid and selection rule).
        probe_min_steps: lower bound on a probe's optimizer steps (the probe library's rule).
        probe_batch_size: probe training batch.
    """

    out_dir: str = "runs/demo"
    seeds: int = 3
    num_train: int = 1024
    num_test: int = 512
    num_frames: int = 8
    frame_step: int = 1
    resolution: int = 32
    objects: int = 8
    object_size: int = 5
    speeds: tuple[int, ...] = (1, 2)
    hold: int = 2
    patch_size: int = 4
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    pred_embed_dim: int = 32
    pred_depth: int = 2
    batch_size: int = 16
    lr: float = 1e-3
    ema_horizon: float = 0.05
    pretrain_steps: int | None = 200
    budget_minutes: float = 15.0
    low_label_fraction: float = 0.1
    workers: int | None = None
    objectives: bool = True
    extra_objectives: bool = False
    probe_epochs: int = 20
    probe_min_steps: int = 500
    probe_batch_size: int = 32
    quick: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seeds < 1 or self.budget_minutes <= 0 or self.num_train < 16 or self.num_test < 4:
            raise InvalidArgument(f"demo config out of range: {self}")
        if not 0 < self.low_label_fraction < 1:
            raise InvalidArgument(f"low_label_fraction must lie in (0, 1), got {self.low_label_fraction}")
        if self.pretrain_steps is not None and self.pretrain_steps < 1:
            raise InvalidArgument(f"pretrain_steps must be >= 1, got {self.pretrain_steps}")

    @classmethod
    def quick_config(cls, out_dir: str, **overrides) -> DemoConfig:
        """A smoke run (well under 3 minutes): tiny data, a few steps, two seeds, the same code path."""
        values = dict(
            out_dir=out_dir,
            seeds=2,
            num_train=48,
            num_test=16,
            num_frames=4,
            resolution=16,
            objects=3,
            object_size=4,
            patch_size=4,
            embed_dim=16,
            depth=1,
            num_heads=2,
            pred_embed_dim=8,
            pred_depth=1,
            batch_size=4,
            pretrain_steps=3,
            low_label_fraction=0.5,
            probe_epochs=5,
            probe_min_steps=40,
            quick=True,
        )
        values.update(overrides)
        return cls(**values)

    @property
    def root(self) -> Path:
        return Path(self.out_dir)

    def encoder_config(self) -> EncoderConfig:
        """The encoder every pretraining variant builds (``vit_tiny`` narrowed to the demo's width and depth)."""
        return encoder_config(
            "vit_tiny",
            num_frames=self.num_frames,
            resolution=self.resolution,
            patch_size=self.patch_size,
            num_heads=self.num_heads,
            embed_dim=self.embed_dim,
            depth=self.depth,
        )

    @property
    def token_grid(self) -> TokenGrid:
        """Tokens along time, height and width of a clip (the encoder's grid)."""
        return self.encoder_config().grid


@dataclass(frozen=True)
class Variant:
    """A pretraining run of the comparison.

    Args:
        key: folder name under ``pretrain/<seed>/``.
        title: how the report names it.
        overrides: the ``--set`` values on top of the common pretraining ones.
        probed: which encoder of its export the probes read: the EMA ``target_encoder`` (what the paper
            evaluates) or the ``encoder`` (variants without an EMA teacher).
        objective: an anti-collapse objective (run only with ``DemoConfig.objectives``).
        extra: run only with ``DemoConfig.extra_objectives`` (``vjepa demo --all-objectives``).
        teacher_from: the variant whose export (same seed) is this one's frozen teacher (SALT's stage 2); it
            pretrains after that one.
    """

    key: str
    title: str
    overrides: tuple[str, ...]
    probed: Literal["target_encoder", "encoder"] = "target_encoder"
    objective: bool = False
    extra: bool = False
    teacher_from: str | None = None


VARIANTS: tuple[Variant, ...] = (
    Variant("vjepa", "V-JEPA (multi-block masks, feature targets)", ()),
    Variant(
        "vjepa_vc",
        "V-JEPA + variance-covariance",
        ("objective.regularizer.kind=vc", "objective.regularizer.applies_to=context"),
        objective=True,
    ),
    Variant(
        "vjepa_sigreg",
        "V-JEPA + SIGReg",
        (
            "objective.regularizer.kind=sigreg",
            "objective.regularizer.applies_to=context",
            "objective.regularizer.weight=0.05",
        ),
        objective=True,
    ),
    Variant("pixels", "pixel targets (VideoMAE-style)", ("objective.target=pixels",), probed="encoder"),
    Variant("random_tube", "random-tube masking (90%)", ("masks.kind=random_tube",)),
    Variant(
        "lejepa",
        "LeJEPA: no EMA, online targets + SIGReg",
        (
            "objective.teacher=online",
            "objective.regularizer.kind=sigreg",
            "objective.regularizer.applies_to=context",
            "objective.regularizer.weight=0.05",
        ),
        probed="encoder",
        objective=True,
        extra=True,
    ),
    Variant(
        "salt",
        "SALT: frozen pixel-target teacher",
        ("objective.teacher=frozen",),
        probed="encoder",
        objective=True,
        extra=True,
        teacher_from="pixels",
    ),
)
RANDOM_INIT = "random_init"
"""The key of the random-init row: each seed's initial weights (every variant of that seed starts from them)."""


def variants(cfg: DemoConfig) -> list[Variant]:
    """The variants ``cfg`` pretrains, in table order."""
    return [
        v for v in VARIANTS if (cfg.objectives or not v.objective) and (cfg.extra_objectives or not v.extra)
    ]


@dataclass(frozen=True)
class Row:
    """One line of the results table: an encoder read out one way.

    Args:
        key: identifier (file names, claims).
        title: the line's label.
        encoder: a variant key, or ``random_init``; empty for the pixel baseline.
        readout: ``attentive``, ``linear`` (average pooling) or ``pixels`` (logistic regression on frame
            differences, no encoder).
        fraction: fraction of the training labels the probe sees.
    """

    key: str
    title: str
    encoder: str
    readout: Readout = "attentive"
    fraction: float = 1.0


def table_rows(cfg: DemoConfig) -> list[Row]:
    pct = f"{100 * cfg.low_label_fraction:g}%"
    rows = [Row(v.key, v.title, v.key) for v in variants(cfg)]
    rows.insert(1, Row(RANDOM_INIT, "random init (no pretraining)", RANDOM_INIT))
    rows += [
        Row("vjepa_avgpool", "V-JEPA, average pooling + linear", "vjepa", "linear"),
        Row(
            "vjepa_lowlabel",
            f"V-JEPA, attentive, {pct} of labels",
            "vjepa",
            "attentive",
            cfg.low_label_fraction,
        ),
        Row("pixel_baseline", "no encoder: logistic regression on frame differences", "", "pixels"),
    ]
    return rows


@dataclass(frozen=True)
class Claim:
    """A statement checked on the demo's numbers.

    Args:
        text: the statement (with the paper's number when it is the paper's).
        better: row key expected to be higher.
        worse: row key expected to be lower.
        label: which label it is judged on.
        margin: points ``better`` must lead by for the claim to hold (0: any lead beyond the spreads).
    """

    text: str
    better: str
    worse: str
    label: Label
    margin: float = 0.0


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "V-JEPA pretraining learns motion a random encoder lacks: its attentive probe beats the same "
        "architecture at random init on the motion label (the demo's target: by 15 points or more)",
        "vjepa",
        RANDOM_INIT,
        "motion",
        15.0,
    ),
    Claim(
        "V-JEPA keeps appearance: it beats the random init on the appearance label",
        "vjepa",
        RANDOM_INIT,
        "appearance",
    ),
    Claim(
        "The features add something over pixels: V-JEPA beats logistic regression on frame differences "
        "(motion)",
        "vjepa",
        "pixel_baseline",
        "motion",
    ),
    Claim(
        "Predicting features beats reconstructing pixels (paper, ViT-L: K400 73.7 vs 68.6, SSv2 66.2 vs 66.0)",
        "vjepa",
        "pixels",
        "motion",
    ),
    Claim(
        "Multi-block masking beats random-tube masking (paper, SSv2: 67.4 vs 46.4)",
        "vjepa",
        "random_tube",
        "motion",
    ),
    Claim(
        "The attentive probe beats average pooling (paper: +16-17 points)",
        "vjepa",
        "vjepa_avgpool",
        "motion",
    ),
    Claim(
        "Fewer labels cost accuracy ({pct} of the labels vs all; paper: 5% of K400 labels cost ViT-H/16 12 points)",
        "vjepa",
        "vjepa_lowlabel",
        "motion",
    ),
    Claim("V-JEPA + variance-covariance beats the random init on motion", "vjepa_vc", RANDOM_INIT, "motion"),
    Claim("V-JEPA + SIGReg beats the random init on motion", "vjepa_sigreg", RANDOM_INIT, "motion"),
    Claim("Variance-covariance improves on plain V-JEPA (motion)", "vjepa_vc", "vjepa", "motion"),
    Claim("SIGReg improves on plain V-JEPA (motion)", "vjepa_sigreg", "vjepa", "motion"),
    Claim(
        "LeJEPA (online targets + SIGReg) beats the random init on motion",
        "lejepa",
        RANDOM_INIT,
        "motion",
    ),
    Claim(
        "SALT (frozen pixel-target teacher) beats the random init on motion",
        "salt",
        RANDOM_INIT,
        "motion",
    ),
)
"""Every claim the demo can check; ``{pct}`` is the low-label fraction."""


def claims(cfg: DemoConfig) -> list[Claim]:
    """The claims on rows ``cfg`` measures."""
    keys = {r.key for r in table_rows(cfg)}
    pct = f"{100 * cfg.low_label_fraction:g}%"
    found = [replace(c, text=c.text.replace("{pct}", pct)) for c in CLAIMS]
    return [c for c in found if c.better in keys and c.worse in keys]


def command(args: list[str]) -> str:
    """A shell-quoted ``vjepa`` command line."""
    return " ".join(shlex.quote(a) for a in ["vjepa", *args])


# ---------------------------------------------------------------------------------------------- where runs go


def variant(key: str) -> Variant:
    """The variant of ``key``."""
    return next(v for v in VARIANTS if v.key == key)


def run_dir(cfg: DemoConfig, seed: int, key: str) -> Path:
    """The pretraining run of variant ``key`` with ``seed``."""
    return cfg.root / "pretrain" / f"seed{seed}" / key


def encoder_source(cfg: DemoConfig, encoder: str, seed: int) -> tuple[Path, str]:
    """(checkpoint folder, which encoder of it) the probes of ``encoder`` read for ``seed``."""
    if encoder == RANDOM_INIT:
        return cfg.root / "init" / f"seed{seed}", "encoder"
    return run_dir(cfg, seed, encoder) / "export", variant(encoder).probed
