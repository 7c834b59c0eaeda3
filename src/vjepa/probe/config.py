"""The typed config of ``vjepa eval``: frozen encoder, data, readout, optimization, feature cache.

Probes train with the official recipe (AdamW, lr cosine to 0 without warmup, weight decay cosine to 1e-6,
grad clip 1.0), as a grid of lr x weight decay heads in one pass; one head is selected on a selection split and
reported on the test split (``data.val``). The default grid, epochs and batch size were chosen by measurement
(docs/evaluation.md, "Defaults and the evidence for them"); the paper recipes in ``vjepa/configs/eval/`` set the
official single setting instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vjepa.checkpoint import EncoderKey
from vjepa.config import ConfigError, InvalidValue, check_range, load_config, resolve_recipe, shipped_recipes
from vjepa.data.clip_cache import CacheMode
from vjepa.data.sampling import ClipConfig, MediaKind
from vjepa.probe.checkpoint import ProbeArch
from vjepa.probe.features import CacheDtype, SegmentMode
from vjepa.runtime import RuntimeSpec

Readout = Literal["attentive", "linear", "knn"]


@dataclass
class EncoderSection:
    """The frozen encoder.

    Args:
        checkpoint: an official ``.pth.tar`` or our checkpoint folder; null builds a randomly initialized
            ``model`` (the "random encoder" baseline), seeded by ``init_seed``; "" (a recipe's "not set yet")
            is an error.
        which: ``target_encoder`` (EMA weights; what the paper evaluates) or ``encoder`` (context encoder).
        num_heads: head count, only for official weights of a size that is not a named one.
        model: named size for the random baseline (``vit_tiny`` .. ``vit_gigantic``).
        init_seed: seed of the random baseline.
    """

    checkpoint: str | None = None
    which: EncoderKey = "target_encoder"
    num_heads: int | None = None
    model: str = "vit_large"
    init_seed: int = 0


@dataclass
class DataSection(ClipConfig):
    """What the probe sees (the clip's fields: :class:`ClipConfig`).

    Args:
        kind: ``video`` (segments x views per video) or ``image`` (each image repeated ``num_frames``
            times along time, as the official image evaluation).
        train: training index: a CSV (``<path> <label>`` lines), a folder of class folders, or a path list.
        val: the test index (the split whose accuracy is reported), same formats.
        num_classes: C; 0 counts it from the training index (largest label + 1, or the class folders).
        num_frames: frames per clip (16 in the paper).
        frame_step: source frames between clip frames (4 in the paper).
        num_segments: temporal segments per video (K400 8, SSv2 2); one training clip has this many too.
        num_views: spatial views per segment at evaluation (3 in the paper; training uses 1).
        resolution: clip side in pixels.
        train_augment: random resized crop on training clips (fresh each epoch). Incompatible with the
            feature cache, which needs each training view to be the same every epoch.
        crop_scale: crop area range for ``train_augment`` (official probe: 0.08-1.0).
        crop_aspect: crop aspect range for ``train_augment`` (official probe: 3/4-4/3).
        num_workers: DataLoader worker processes.
        max_short_side: shrink frames while decoding to at most this short side; ``auto`` (default): the size
            the clips need (see `decode_short_side`); None: full size.
        clip_cache: keep decoded videos on disk (memory-mapped .npy, see :mod:`vjepa.data.clip_cache`) and read
            them back instead of decoding again: ``false`` (default; the feature cache already decodes each
            video once per encoder), ``true``, or ``auto`` (on when the decoded dataset fits the budget, half the
            RAM and the free disk). Worth it when the same videos are probed many times: several encoders,
            labels or seeds (``vjepa demo``), or ``train_augment``.
        clip_cache_dir: its folder (null: ``$VJEPA_CACHE_DIR/clips`` or ``~/.cache/vjepa/clips``).
        clip_cache_max_gb: its size limit.
        class_names: one name per class, for the summary and the confusion-matrix plot (optional; class
            folders name themselves).
    """

    train: str = ""
    val: str = ""
    num_classes: int = 0
    kind: MediaKind = "video"
    num_segments: int = 1
    num_views: int = 1
    train_augment: bool = False
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_aspect: tuple[float, float] = (0.75, 4 / 3)
    num_workers: int = 0
    max_short_side: int | Literal["auto"] | None = "auto"
    clip_cache: CacheMode = False
    clip_cache_dir: str | None = None
    clip_cache_max_gb: float = 8.0
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "num_segments", "num_views", low=1)
        if self.kind == "image" and (self.num_segments != 1 or self.num_views != 1):
            raise ValueError("image data has one segment and one view (num_segments = num_views = 1)")
        if self.class_names is not None and self.num_classes and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for {self.num_classes} classes")
        check_range(self, "crop_scale", low=0, high=1, low_open=True)
        check_range(self, "crop_aspect", low=0, low_open=True)
        check_range(self, "num_workers", "num_classes", low=0)
        check_range(self, "clip_cache_max_gb", low=0, low_open=True)
        if isinstance(self.max_short_side, int) and self.max_short_side < 1:
            raise InvalidValue("max_short_side", f"must be >= 1, 'auto' or null, got {self.max_short_side}")

    @property
    def decode_short_side(self) -> int | None:
        """The short side frames are shrunk to while decoding: ``max_short_side``, or with ``auto`` the
        largest size a clip uses (the random crop's smallest scale with ``train_augment``, else the eval
        resize ``int(resolution * 256 / 224)``)."""
        if self.max_short_side != "auto":
            return self.max_short_side
        need = int(self.resolution * 256 / 224)
        if self.train_augment:
            need = max(need, math.ceil(self.resolution / math.sqrt(self.crop_scale[0])))
        return need


@dataclass
class ProbeSection:
    """The readout.

    Args:
        kind: ``attentive`` (the paper's probe), ``linear`` (average pooling + Linear) or ``knn``.
        segments: ``concat`` joins the tokens of all segments of a view (official attend_across_segments);
            ``separate`` classifies each (segment, view) on its own and averages.
        num_heads: attentive-probe heads (null: the encoder's, as the official V-JEPA evals; the V-JEPA 2
            evals use 16).
        num_blocks: attentive-probe blocks: 1 (V-JEPA: the cross-attention block) or 4 (V-JEPA 2: 3
            self-attention blocks, then the cross-attention block; saved in the V-JEPA 2 layout, without the
            unused ``xattn.proj``).
        norm_eps: LayerNorm epsilon of the attentive probe (official 1e-5; 1e-6 to export the probe to a
            Hugging Face classifier, which also needs ``num_heads`` equal to the encoder's).
        standardize: linear only: standardize the pooled feature with the training set's per-dimension mean
            and std (fixed, saved with the probe) before the Linear layer.
        knn_k: neighbours (knn only).
        knn_temperature: vote temperature (knn only).
    """

    kind: Readout = "attentive"
    segments: SegmentMode = "concat"
    num_heads: int | None = None
    num_blocks: int = 1
    norm_eps: float = 1e-5
    standardize: bool = True
    knn_k: int = 20
    knn_temperature: float = 0.07

    def __post_init__(self) -> None:
        check_range(self, "num_heads", low=1, optional=True)
        check_range(self, "knn_k", low=1)
        check_range(self, "knn_temperature", low=0, low_open=True)
        check_range(self, "num_blocks", low=1)
        check_range(self, "norm_eps", low=0, low_open=True)

    def arch(self, embed_dim: int, num_classes: int, encoder_heads: int) -> ProbeArch:
        """The probe to train (``knn`` has none); more than one block: the V-JEPA 2 layout."""
        return ProbeArch(
            self.kind,  # type: ignore[arg-type]
            embed_dim,
            num_classes,
            self.num_heads or encoder_heads,
            depth=self.num_blocks,
            norm_eps=self.norm_eps,
            xattn_proj=self.num_blocks == 1,
            standardize=self.kind == "linear" and self.standardize,
        )


@dataclass
class OptimizationSection:
    """Probe training (ignored by ``knn``). Every (lr, weight_decay) pair of the grid is one head; all heads
    train side by side on the same batches, from the same initial weights, in one pass over the features.

    Args:
        epochs: passes over the (subset of the) training set, at least (see ``min_steps``).
        batch_size: samples per step and per process (also the encoding batch).
        lr: start learning rates; cosine decay to ``final_lr``, no warmup.
        weight_decay: start weight decays; cosine to ``final_weight_decay`` (biases and 1-D tensors: none).
        final_lr: learning rate at the end.
        final_weight_decay: weight decay at the end (1e-6, fixed in the official code).
        grad_clip: max gradient norm of each head (null: no clipping).
        min_steps: train for at least this many optimizer steps: a small training set (or label fraction)
            gets ``ceil(min_steps / steps per epoch)`` epochs when that is more than ``epochs``. 0 keeps
            ``epochs`` as it is (the official recipe).
    """

    epochs: int = 20
    batch_size: int = 16
    lr: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2])
    weight_decay: list[float] = field(default_factory=lambda: [0.01, 0.1])
    final_lr: float = 0.0
    final_weight_decay: float = 1e-6
    grad_clip: float | None = 1.0
    min_steps: int = 500

    def __post_init__(self) -> None:
        check_range(self, "epochs", "batch_size", low=1)
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be >= 0, got {self.min_steps}")
        if not self.lr or not self.weight_decay:
            raise ValueError("lr and weight_decay need at least one value each")
        check_range(self, "lr", low=0, low_open=True)
        check_range(self, "weight_decay", "final_lr", "final_weight_decay", low=0)
        check_range(self, "grad_clip", low=0, low_open=True, optional=True)

    @property
    def settings(self) -> list[tuple[float, float]]:
        """The grid's (lr, weight_decay) pairs, lr-major."""
        return [(lr, wd) for lr in self.lr for wd in self.weight_decay]


@dataclass
class SelectionSection:
    """Which head (and epoch) of the grid is reported: the one with the best top-1 on the selection split
    (ties: the lower loss), among heads that trained. Its accuracy on ``data.val`` is the result.

    Args:
        split: ``holdout`` (a stratified, seeded part of the training index, never trained on), ``index``
            (the samples of ``index``) or ``val`` (the test split itself: optimistic with more than one head;
            with one head and ``epochs: last`` it is the official protocol).
        holdout_fraction: share of each class of the training index held out (``holdout`` only).
        index: the selection index, same formats as ``data.train`` (``index`` only).
        epochs: ``best`` keeps each head at its best epoch on the selection split (scored after every
            epoch); ``last`` keeps the last epoch (one scoring pass at the end).
    """

    split: Literal["holdout", "index", "val"] = "holdout"
    holdout_fraction: float = 0.2
    index: str | None = None
    epochs: Literal["best", "last"] = "best"

    def __post_init__(self) -> None:
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"selection.holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if (self.split == "index") != bool(self.index):
            raise ValueError("selection.index is set exactly when selection.split is 'index'")


@dataclass
class CacheSection:
    """The feature cache (valid only without train-time augmentation; see docs/evaluation.md).

    Args:
        dir: cache folder (holds ``train/`` and ``val/``); null computes features on the fly every epoch.
        dtype: storage dtype of the tokens.
        overwrite: recompute a cache that was made for other inputs instead of refusing it.
        max_gb: refuse to write a cache larger than this (tokens of every view of every sample).
    """

    dir: str | None = None
    dtype: CacheDtype = "float16"
    overwrite: bool = False
    max_gb: float = 200.0

    def __post_init__(self) -> None:
        check_range(self, "max_gb", low=0, low_open=True)


@dataclass
class EvalConfig(RuntimeSpec):
    """``vjepa eval`` (``device``, ``precision``, ``threads``, ``seed``: :class:`RuntimeSpec`).

    Args:
        encoder: the frozen encoder.
        data: datasets and clip layout.
        probe: the readout.
        optimization: probe training.
        cache: feature cache.
        selection: how the reported head is chosen.
        label_fractions: fractions of the training labels to train on (stratified, seeded subsets), e.g.
            ``[0.01, 0.05, 0.1, 0.5, 1.0]`` for the low-shot table.
        output_dir: where metrics, plots, probes and the resolved config go (must not hold a finished run).
        seed: seeds probe init, batch order and label subsets.
    """

    encoder: EncoderSection = field(default_factory=EncoderSection)
    data: DataSection = field(default_factory=DataSection)
    probe: ProbeSection = field(default_factory=ProbeSection)
    optimization: OptimizationSection = field(default_factory=OptimizationSection)
    cache: CacheSection = field(default_factory=CacheSection)
    selection: SelectionSection = field(default_factory=SelectionSection)
    label_fractions: list[float] = field(default_factory=lambda: [1.0])
    output_dir: str = "runs/eval"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.label_fractions or not all(0 < f <= 1 for f in self.label_fractions):
            raise ValueError(f"label_fractions must be in (0, 1], got {self.label_fractions}")
        if self.cache.dir is not None and self.data.train_augment:
            raise ValueError(
                "cache.dir and data.train_augment exclude each other: cached features are computed once, so "
                "training views cannot be re-augmented each epoch"
            )
        if self.encoder.init_seed < 0:
            raise InvalidValue("encoder.init_seed", f"must be >= 0, got {self.encoder.init_seed}")
        if isinstance(self.encoder.num_heads, int) and self.encoder.num_heads < 1:
            raise InvalidValue("encoder.num_heads", f"must be >= 1 or null, got {self.encoder.num_heads}")

    def check_runnable(self, source: str) -> None:
        """The fields a shipped recipe leaves for the user must be set."""
        if self.encoder.checkpoint == "":
            raise ConfigError(
                f"{source}: encoder.checkpoint is not set (use --set encoder.checkpoint=PATH, or "
                "encoder.checkpoint=null for a randomly initialized encoder.model)"
            )
        for key, value in (("data.train", self.data.train), ("data.val", self.data.val)):
            if not value:
                raise ConfigError(f"{source}: {key} is not set (use --set {key}=PATH)")
            if not Path(value).exists():
                raise ConfigError(f"{source}: {key}: {value}: no such index file or folder")
        if self.data.num_classes < 0:
            raise ConfigError(f"{source}: data.num_classes must be >= 1, or 0 to count it from data.train")


def shipped_configs() -> list[str]:
    """Names of the eval recipes shipped in ``vjepa/configs/eval/``."""
    return sorted(shipped_recipes("eval"))


def resolve_config(name_or_path: str) -> str:
    """A YAML path as given, or the path of a shipped recipe named ``name_or_path`` (e.g. ``vitl16_k400``)."""
    return str(resolve_recipe(name_or_path, "eval"))


def load_eval_config(
    name_or_path: str, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[EvalConfig, str]:
    """The strict config of a YAML file or shipped recipe, with ``--set`` overrides; returns it and its path."""
    path = resolve_config(name_or_path)
    return load_config(EvalConfig, path, overrides), path
