"""The typed config of a pretraining run: one dataclass per concern, YAML only serializes them.

``load_pretrain_config("vitl16", ["optimization.lr=1e-3"])`` reads a shipped recipe (by name) or a YAML
file, applies ``--set`` overrides and checks every key and value (see :mod:`vjepa.config`). The defaults of
every field are the paper's values (official ``configs/pretrain/vitl16.yaml``), so a recipe only lists what
it changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vjepa import config
from vjepa.checkpoint import EncoderKey
from vjepa.config import ConfigError, InvalidValue, check_range, load_config
from vjepa.data.clip_cache import CacheMode
from vjepa.data.sampling import ClipConfig
from vjepa.grid import TokenGrid
from vjepa.masks.base import Truncation
from vjepa.masks.collate import MaskKind
from vjepa.masks.multiblock import PAPER_SETTINGS, MultiBlockSetting
from vjepa.models.registry import EncoderConfig, PositionScheme, canonical_name, encoder_config, model_size
from vjepa.runtime import RuntimeSpec

DataSource = Literal["synthetic", "csv"]
TargetKind = Literal["features", "pixels"]
TeacherKind = Literal["ema", "frozen", "online"]
RegularizerKind = Literal["none", "vc", "sigreg"]
RegularizedPart = Literal["context", "pooled", "predictions"]
MetricsFormat = Literal["jsonl", "csv"]
LRScheduleName = Literal["warmup_cosine", "linear_decay", "wsd"]
MaskTokenUse = Literal["per_setting", "shared"]
StrategyName = Literal["ddp", "fsdp"]


@dataclass
class DataConfig(ClipConfig):
    """Where clips come from and what they look like (the clip's fields: :class:`ClipConfig`).

    Args:
        source: ``csv`` reads the ``datasets`` CSV indexes (``<path> <label>`` lines); ``synthetic`` renders
            the built-in procedural motion videos in memory (no files, for CPU recipes and tests).
        datasets: CSV index paths (``csv`` source), mixed into one stream.
        dataset_weights: one sampling weight per dataset; None weights every video equally.
        batch_size: clips per rank per micro-step; the global batch is
            ``batch_size * accumulation_steps * world_size``.
        num_frames: frames per clip.
        frame_step: source frames between consecutive clip frames.
        resolution: side of the square crop in pixels.
        random_resize_scale: range of the random crop's area fraction.
        random_resize_aspect_ratio: range of the random crop's aspect ratio (log-uniform).
        horizontal_flip: flip all frames of a clip with probability 0.5.
        num_workers: DataLoader worker processes (0 = in the training process).
        max_short_side: shrink frames while decoding so the short side is at most this; ``auto`` (default): the
            largest size that still matters for the crop (``resolution / sqrt(min scale)``, 409 for 224), so a
            huge video costs no more memory than a 409p one; None: full size (official).
        synthetic_videos: number of videos of the ``synthetic`` source.
        synthetic_resolution: frame side in pixels of the ``synthetic`` videos.
        synthetic_num_frames: frames per ``synthetic`` video.
        clip_cache: decoded-video cache of the ``csv`` source (:mod:`vjepa.data.clip_cache`): ``auto`` uses it
            when the dataset's decoded size fits ``clip_cache_max_gb``, half the RAM and the free disk; ``true``
            caches up to the budget; ``false`` decodes every draw. Augmentation stays random per draw, and
            clips are identical either way.
        clip_cache_dir: the cache folder (None: ``$VJEPA_CACHE_DIR/clips``, else ``~/.cache/vjepa/clips``);
            entries are keyed by file content and decode settings, so runs and datasets can share it.
        clip_cache_max_gb: the cache folder's size limit (GB).
    """

    source: DataSource = "csv"
    datasets: list[str] = field(default_factory=list)
    dataset_weights: list[float] | None = None
    batch_size: int = 24
    random_resize_scale: tuple[float, float] = (0.3, 1.0)
    random_resize_aspect_ratio: tuple[float, float] = (0.75, 1.35)
    horizontal_flip: bool = True
    num_workers: int = 8
    max_short_side: int | Literal["auto"] | None = "auto"
    synthetic_videos: int = 256
    synthetic_resolution: int = 64
    synthetic_num_frames: int = 16
    clip_cache: CacheMode = "auto"
    clip_cache_dir: str | None = None
    clip_cache_max_gb: float = 8.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "batch_size", "synthetic_videos", low=1)
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.dataset_weights is not None and len(self.dataset_weights) != len(self.datasets):
            raise ValueError(
                f"dataset_weights has {len(self.dataset_weights)} entries for {len(self.datasets)} datasets"
            )
        check_range(self, "synthetic_resolution", "synthetic_num_frames", low=1)
        check_range(self, "random_resize_scale", low=0, high=1, low_open=True)
        check_range(self, "random_resize_aspect_ratio", low=0, low_open=True)
        check_range(self, "dataset_weights", low=0, optional=True)
        check_range(self, "clip_cache_max_gb", low=0, low_open=True)
        for name in ("random_resize_scale", "random_resize_aspect_ratio"):
            if getattr(self, name)[0] > getattr(self, name)[1]:
                raise InvalidValue(
                    name, f"must be [low, high] with low <= high, got {list(getattr(self, name))}"
                )
        if self.dataset_weights is not None and sum(self.dataset_weights) <= 0:
            raise InvalidValue("dataset_weights", f"must have a positive sum, got {self.dataset_weights}")
        if isinstance(self.max_short_side, int) and self.max_short_side < 1:
            raise InvalidValue("max_short_side", f"must be >= 1, 'auto' or null, got {self.max_short_side}")


def _paper_blocks() -> list[MultiBlockSetting]:
    return list(PAPER_SETTINGS)


@dataclass
class MasksConfig:
    """Which tokens the context encoder sees and which the predictor predicts.

    Args:
        kind: ``multiblock`` (the paper), ``random_tube`` or ``causal`` (ablations).
        multiblock: the settings of ``multiblock`` (:class:`vjepa.masks.MultiBlockSetting` fields; default:
            the paper's short- and long-range ones).
        random_tube_ratios: masking ratios of ``random_tube``, one mask setting each.
        causal_context_fractions: context fractions of ``causal``, one mask setting each.
        truncation: ``official`` keeps each sample's lowest indices when cutting to the batch minimum (the
            official collator); ``random`` keeps a random subset of the same size.
    """

    kind: MaskKind = "multiblock"
    multiblock: list[MultiBlockSetting] = field(default_factory=_paper_blocks)
    random_tube_ratios: list[float] = field(default_factory=lambda: [0.9])
    causal_context_fractions: list[float] = field(default_factory=lambda: [0.5])
    truncation: Truncation = "official"

    @property
    def settings(self) -> list[MultiBlockSetting] | list[float]:
        """The settings of ``kind``: one mask generator each."""
        if self.kind == "multiblock":
            return self.multiblock
        return self.random_tube_ratios if self.kind == "random_tube" else self.causal_context_fractions

    @property
    def num_settings(self) -> int:
        return len(self.settings)

    def __post_init__(self) -> None:
        if self.num_settings < 1:
            raise ValueError(f"kind {self.kind!r} needs at least one mask setting")
        check_range(
            self,
            "random_tube_ratios",
            "causal_context_fractions",
            low=0,
            high=1,
            low_open=True,
            high_open=True,
        )


@dataclass
class ModelConfig:
    """The encoder and predictor architectures.

    Args:
        name: encoder size (``vit_tiny`` .. ``vit_gigantic``) or V-JEPA 2 model (``vjepa2_vit_large`` ..
            ``vjepa2_vit_giant``); see ``vjepa models``.
        positions: ``sincos`` (V-JEPA) or ``rope`` (V-JEPA 2); None: the name's (``rope`` for ``vjepa2_*``).
        embed_dim: encoder width (None: the size's); with ``depth`` and ``num_heads``, a ViT smaller than the
            named sizes, e.g. the demo's 64-wide, 4-deep encoder.
        depth: encoder blocks (None: the size's).
        num_heads: encoder heads (None: the size's).
        patch_size: spatial patch side (None: the size's default, 16).
        tubelet_size: frames per tubelet.
        uniform_power: position-table layout (True in every released model).
        pred_depth: predictor blocks.
        pred_embed_dim: predictor width.
        pred_num_heads: predictor heads (None: the encoder's, as the official trainer).
        zero_init_mask_tokens: mask tokens start at zero.
        pred_mask_tokens: ``per_setting`` (V-JEPA: one learned mask token per mask setting) or ``shared``
            (the official V-JEPA 2 trainer indexes mask tokens by clip length, so with one clip length every
            mask setting uses the same token).
        init_from: start from the weights (encoder, target encoder, predictor) of this checkpoint with a fresh
            optimizer and schedule, as the official V-JEPA 2 cooldown stage (``anneal_ckpt``): a run
            directory's ``checkpoints/latest.pt``, an ``export/`` folder or an official file.
    """

    name: str = "vit_large"
    positions: PositionScheme | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    patch_size: int | None = None
    tubelet_size: int = 2
    uniform_power: bool = True
    pred_depth: int = 12
    pred_embed_dim: int = 384
    pred_num_heads: int | None = None
    zero_init_mask_tokens: bool = True
    pred_mask_tokens: MaskTokenUse = "per_setting"
    init_from: str | None = None

    def __post_init__(self) -> None:
        self.name = canonical_name(self.name)
        check_range(self, "tubelet_size", "pred_depth", "pred_embed_dim", low=1)
        check_range(
            self, "patch_size", "pred_num_heads", "embed_dim", "depth", "num_heads", low=1, optional=True
        )


@dataclass
class OptimizationConfig:
    """AdamW, the schedules (pure functions of the step) and the step count.

    Training runs ``int(epochs * ipe)`` optimizer steps; the schedules are sized for
    ``int(ipe_scale * epochs * ipe)`` steps, so with ``ipe_scale > 1`` they never reach their final values
    (the paper: 90,000 steps of 112,500-step schedules).

    Args:
        epochs: virtual epochs (an epoch is ``ipe`` steps, whatever the dataset size).
        ipe: optimizer steps per epoch.
        ipe_scale: schedule length factor.
        warmup: LR warmup, in epochs.
        start_lr: LR at the start of warmup.
        lr: peak LR (end of warmup).
        final_lr: floor of the cosine decay.
        weight_decay: weight decay at step 0.
        final_weight_decay: weight decay at the end of the schedule (cosine in between).
        ema: EMA momentum at the start and the end of the schedule (linear in between).
        ema_horizon: when set, the start momentum follows the run's length instead of ``ema[0]``: the EMA's
            time constant ``1 / (1 - m)`` at step 0 is this fraction of the schedule's steps, i.e.
            ``m_0 = 1 - 1 / (ema_horizon * ipe_scale * epochs * ipe)``. The paper's 0.998 over 112,500 steps is
            a horizon of 0.0044; short CPU runs need a longer one (e.g. 0.05) or their target encoder keeps
            most of its initial weights (see :meth:`vjepa.pretrain.schedules.Schedules.initial_weight_share`).
        betas: AdamW betas.
        eps: AdamW epsilon.
        clip_grad: max gradient norm, applied separately to the encoder and the predictor once the epoch
            exceeds ``warmup`` (as official); None never clips.
        accumulation_steps: micro-batches per optimizer step.
        lr_schedule: ``warmup_cosine`` (V-JEPA; with ``final_lr == lr`` V-JEPA 2's warmup-then-constant main
            stage), ``linear_decay`` (V-JEPA 2's cooldown: ``lr`` to ``final_lr``, no warmup) or ``wsd``
            (warmup, constant, then linear to ``final_lr`` over the last ``cooldown`` epochs, in one run).
        cooldown: length of ``wsd``'s decay, in epochs.
    """

    epochs: int = 300
    ipe: int = 300
    ipe_scale: float = 1.25
    warmup: float = 40.0
    start_lr: float = 2e-4
    lr: float = 6.25e-4
    final_lr: float = 1e-6
    weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    ema: tuple[float, float] = (0.998, 1.0)
    ema_horizon: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float | None = 10.0
    accumulation_steps: int = 1
    lr_schedule: LRScheduleName = "warmup_cosine"
    cooldown: float = 0.0

    def __post_init__(self) -> None:
        check_range(self, "epochs", "ipe", "accumulation_steps", low=1)
        if self.cooldown < 0 or (self.lr_schedule == "wsd") != (self.cooldown > 0):
            raise ValueError(
                f"cooldown (epochs of decay) must be > 0 with lr_schedule 'wsd' and 0 otherwise, got {self.cooldown}"
            )
        if self.ipe_scale < 1.0:
            raise ValueError(f"ipe_scale must be >= 1, got {self.ipe_scale}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0 epochs, got {self.warmup}")
        if not all(0.0 <= m <= 1.0 for m in self.ema):
            raise ValueError(f"ema momenta must lie in [0, 1], got {list(self.ema)}")
        if self.ema_horizon is not None and not 0 < self.ema_horizon <= 1:
            raise ValueError(
                f"ema_horizon must lie in (0, 1] (a fraction of the run), got {self.ema_horizon}"
            )
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ValueError(f"clip_grad must be positive or null, got {self.clip_grad}")
        check_range(self, "lr", "eps", low=0, low_open=True)
        check_range(self, "start_lr", "final_lr", "weight_decay", "final_weight_decay", "warmup", low=0)
        check_range(self, "ipe_scale", low=1)
        check_range(self, "betas", low=0, high=1, high_open=True)

    @property
    def total_steps(self) -> int:
        """Optimizer steps the run makes."""
        return int(self.epochs * self.ipe)

    @property
    def schedule_steps(self) -> int:
        """Length the LR / WD schedules are sized for."""
        return int(self.ipe_scale * self.epochs * self.ipe)

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup * self.ipe)


@dataclass
class RegularizerConfig:
    """An anti-collapse term added to the prediction loss (see :mod:`vjepa.pretrain.regularizers` and
    docs/objectives.md). ``none`` leaves the paper's objective unchanged, bit for bit.

    Args:
        kind: ``none``; ``vc`` (variance-covariance, VICReg / VJ-VCR); ``sigreg`` (LeJEPA's sketched isotropic
            Gaussian regulariser).
        applies_to: which embeddings it constrains: ``context`` (the context encoder's output tokens of every mask
            setting, each token a sample, centred per token position), ``pooled`` (those tokens averaged per
            clip and mask setting, each clip a sample) or ``predictions`` (the predictor's outputs, each
            predicted token a sample, centred per position).
        weight: weight of the variance term (``vc``) or of the statistic (``sigreg``).
        cov_weight: weight of the covariance term (``vc`` only).
        gamma: the std every dimension should reach (``vc`` only).
        slices: random directions per step (``sigreg`` only).
    """

    kind: RegularizerKind = "none"
    applies_to: RegularizedPart = "context"
    weight: float = 1.0
    cov_weight: float = 0.04
    gamma: float = 1.0
    slices: int = 256

    def __post_init__(self) -> None:
        for name in ("weight", "cov_weight", "gamma"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"regularizer.{name} must be a finite number >= 0, got {value}")
        if self.slices < 1:
            raise ValueError(f"regularizer.slices must be >= 1, got {self.slices}")


@dataclass
class ObjectiveConfig:
    """What is predicted, from which teacher, and how it is scored.

    Args:
        target: ``features`` (V-JEPA: layer-normed features of the teacher encoder) or ``pixels`` (the
            VideoMAE-style baseline: per-patch normalized pixels of the masked tubelets, through a linear head
            on the predictor; no teacher).
        loss_exp: per-element loss ``|p - t|^loss_exp / loss_exp`` (1: the paper's L1).
        teacher: where feature targets come from: ``ema`` (the paper: an EMA copy of the encoder, no
            gradient); ``frozen`` (a fixed encoder: ``teacher_checkpoint``'s, e.g. a pixel-target run as in
            SALT, or the initial weights when it is null; never updated); ``online`` (the encoder itself on the
            full clip, gradients flowing through the targets too, as LeJEPA; it needs a regulariser, since
            nothing else stops the trivial constant solution).
        teacher_checkpoint: checkpoint of a ``frozen`` teacher (an export folder, a run folder or an official
            file); its width must equal the encoder's.
        teacher_which: which encoder of ``teacher_checkpoint``: ``target_encoder`` or ``encoder``; null takes
            the target encoder when the checkpoint has one, else the encoder (pixel-target runs have only that).
        regularizer: an anti-collapse term (default none).
    """

    target: TargetKind = "features"
    loss_exp: float = 1.0
    teacher: TeacherKind = "ema"
    teacher_checkpoint: str | None = None
    teacher_which: EncoderKey | None = None
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)

    def __post_init__(self) -> None:
        if self.loss_exp <= 0:
            raise ValueError(f"loss_exp must be positive, got {self.loss_exp}")
        if self.teacher_checkpoint is not None and self.teacher != "frozen":
            raise ValueError("teacher_checkpoint is only used with teacher=frozen")
        if self.target == "pixels" and self.teacher != "ema":
            raise ValueError("pixel targets have no teacher: leave objective.teacher at its default")
        if self.teacher == "online" and self.regularizer.kind == "none":
            raise ValueError(
                "teacher=online needs a regularizer (objective.regularizer.kind=vc or sigreg): with gradients "
                "through the targets nothing else stops every clip from mapping to one constant"
            )


@dataclass
class LoggingConfig:
    """Watching and saving a run.

    Args:
        log_every: steps between metric rows (and log lines when there is no progress bar).
        monitor_every: steps between collapse-monitor evaluations.
        checkpoint_every: steps between writes of ``checkpoints/latest.pt`` (also written at the end).
        keep_every: steps between kept periodic checkpoints ``checkpoints/step_XXXXXXX.pt`` (None: none).
        metrics_format: ``jsonl`` or ``csv`` (``metrics.jsonl`` / ``metrics.csv`` in the run directory).
        tensorboard: also write TensorBoard events (``tb/``) when the package is installed.
        progress_bar: a tqdm bar on rank 0 when stderr is a terminal.
        export: write the final models in vjepa's safetensors format to ``export/`` at the end.
    """

    log_every: int = 10
    monitor_every: int = 100
    checkpoint_every: int = 300
    keep_every: int | None = None
    metrics_format: MetricsFormat = "jsonl"
    tensorboard: bool = True
    progress_bar: bool = True
    export: bool = True

    def __post_init__(self) -> None:
        check_range(self, "log_every", "monitor_every", "checkpoint_every", low=1)
        if self.keep_every is not None and self.keep_every < 1:
            raise ValueError(f"keep_every must be >= 1 or null, got {self.keep_every}")


@dataclass
class RuntimeConfig(RuntimeSpec):
    """Where and how the run executes (``device``, ``precision``, ``threads``: :class:`RuntimeSpec`).

    Args:
        seed: run seed (model init, data order, augmentations, masks).
        activation_checkpointing: recompute block activations in the backward pass (less memory).
        compile: ``torch.compile`` the encoders and the predictor.
        strategy: how several processes share the work (see ``docs/distributed.md``): ``ddp`` (a full replica
            per process, single-file checkpoints) or ``fsdp`` (FSDP2: parameters, gradients and optimizer
            state sharded per transformer block; bf16 parameters on CUDA; sharded checkpoints written by every
            rank). A single process trains the same either way; ``fsdp`` then still writes sharded checkpoints.
    """

    seed: int = 234
    activation_checkpointing: bool = False
    compile: bool = False
    strategy: StrategyName = "ddp"


@dataclass
class PretrainConfig:
    """A whole pretraining run."""

    data: DataConfig = field(default_factory=DataConfig)
    masks: MasksConfig = field(default_factory=MasksConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        if self.optimization.total_steps < 1:
            raise ValueError("optimization: int(epochs * ipe) must be at least one step")
        _check_clip_fits_model(self.data, self.model)

    def encoder_config(self) -> EncoderConfig:
        """The encoder this run builds, for its clips."""
        m, d = self.model, self.data
        return encoder_config(
            m.name,
            num_frames=d.num_frames,
            resolution=d.resolution,
            patch_size=m.patch_size,
            tubelet_size=m.tubelet_size,
            uniform_power=m.uniform_power,
            positions=m.positions,
            num_heads=m.num_heads,
            embed_dim=m.embed_dim,
            depth=m.depth,
        )

    @property
    def token_grid(self) -> TokenGrid:
        """The token grid of the run's clips (its encoder's, see :meth:`EncoderConfig.token_grid`), known
        before any model is built."""
        return self.encoder_config().grid


def _check_clip_fits_model(data: DataConfig, model: ModelConfig) -> None:
    """The clip must split into whole tubelets and patches, and the predictor width into its heads."""
    size = model_size(model.name)
    patch = model.patch_size or size.patch_size
    if data.num_frames % model.tubelet_size:
        raise InvalidValue(
            "data.num_frames",
            f"({data.num_frames}) must be a multiple of model.tubelet_size ({model.tubelet_size})",
        )
    if data.resolution % patch:
        raise InvalidValue(
            "data.resolution",
            f"({data.resolution}) must be a multiple of the patch size ({patch}, model.patch_size)",
        )
    width, enc_heads = model.embed_dim or size.embed_dim, model.num_heads or size.num_heads
    if width % enc_heads:
        raise InvalidValue(
            "model.embed_dim", f"({width}) must be a multiple of the encoder's head count ({enc_heads})"
        )
    heads = model.pred_num_heads or model.num_heads or size.num_heads
    if model.pred_embed_dim % heads:
        raise InvalidValue(
            "model.pred_embed_dim",
            f"({model.pred_embed_dim}) must be a multiple of the predictor's head count ({heads})",
        )


# Keys whose change does not alter the maths of a run, so a resumed run may differ in them.
RESUMABLE_CHANGES = (
    "logging.",
    "model.init_from",
    "runtime.threads",
    "runtime.compile",
    "runtime.activation_checkpointing",
    "runtime.strategy",
    "runtime.device",
    "data.num_workers",
    "data.datasets",
    "data.clip_cache",
)


def shipped_recipes() -> dict[str, Path]:
    """The pretraining recipes shipped with the package: name -> YAML path."""
    return config.shipped_recipes("pretrain")


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a shipped recipe (``vitl16``, ``tiny_cpu``, ...)."""
    return config.resolve_recipe(name_or_path, "pretrain")


def load_pretrain_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Load a recipe (file or shipped name) with ``--set`` style overrides, strictly."""
    return load_config(PretrainConfig, resolve_recipe(name_or_path), overrides)


def load_run_config(
    config: str | None, overrides: Sequence[str], run_dir: str | Path | None, resume: bool
) -> tuple[PretrainConfig, Path]:
    """The config and run directory of ``vjepa pretrain [CONFIG] [--set ...] [--run-dir DIR] [--resume]``.

    Without CONFIG, ``--resume`` continues the run in ``--run-dir`` with its saved ``config.yaml``. Without
    ``--run-dir``, the run directory is ``runs/<recipe name>``.

    Args:
        config: a YAML path or shipped recipe name, or None.
        overrides: ``a.b=value`` strings.
        run_dir: the run directory, or None.
        resume: continue the run the directory holds.
    """
    if config is None:
        if run_dir is None or not resume:
            raise ConfigError(
                "give a CONFIG (a YAML file or a shipped recipe), or --resume with --run-dir DIR"
            )
        saved = Path(run_dir) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"{saved}: no such file; {run_dir} holds no run to resume, give a CONFIG")
        return load_config(PretrainConfig, saved, overrides), Path(run_dir)
    path = resolve_recipe(config)
    return load_config(PretrainConfig, path, overrides), Path(run_dir or Path("runs") / path.stem)
