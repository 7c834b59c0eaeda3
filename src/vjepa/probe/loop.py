"""Frozen evaluation: features of every view -> probes trained with the official recipe -> multi-view
predictions -> metrics.

The flow of :func:`run_eval`, top to bottom:

1. the frozen encoder (a checkpoint's ``target_encoder`` by default, or a random baseline);
2. a feature source per split: on the fly (encoder in the loop) or a feature cache built once;
3. per label fraction, a stratified seeded subset of the training set, and one probe per (lr, weight decay)
   setting, all trained on the same batches (one pass over the features per epoch);
4. one deterministic pass over the validation set scoring every probe: each sample once, on exactly one
   rank, softmaxes averaged over its views; rank 0 gathers and writes metrics, plots and probes.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from vjepa.config import save_config
from vjepa.models.encoder import VideoEncoder
from vjepa.probe.checkpoint import ProbeArch, save_probe
from vjepa.probe.config import EvalConfig, OptimizationSection
from vjepa.probe.features import (
    CacheWriter,
    FeatureCache,
    SegmentMode,
    encode_views,
    encoder_fingerprint,
    open_cache,
    records_fingerprint,
    token_set_shape,
)
from vjepa.probe.knn import KNNClassifier, pooled
from vjepa.probe.metrics import classification_metrics, save_confusion_png, write_json
from vjepa.runtime import (
    Precision,
    Runtime,
    autocast,
    log,
    log_precision,
    resolve_precision,
    seed_everything,
    setup,
    teardown,
)

Scorer = Callable[[Tensor], Tensor]  # tokens [B, V, N, D] -> scores [B, C]


# --------------------------------------------------------------------------------------------- small pieces


def cosine_value(start: float, end: float, step: int, total: int) -> float:
    """``end + (start - end) * (1 + cos(pi * step / total)) / 2`` (the official schedules with warmup 0)."""
    progress = min(step / max(1, total), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a seeded subset holding ``fraction`` of each class (at least one sample per class).

    Args:
        labels: ``[M]`` class of every training sample.
        fraction: in (0, 1]; 1 keeps everything.
        seed: the same seed and labels give the same subset; smaller fractions of one seed are nested.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    if fraction == 1:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 0x5AB5E7])
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        keep.append(members[: max(1, round(fraction * len(members)))])
    return np.sort(np.concatenate(keep))


def epoch_order(indices: np.ndarray, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of a seeded shuffle of ``indices``: equal shares on every rank (the remainder of
    ``len % world_size`` samples is left out of this epoch), so every rank takes the same number of steps."""
    if len(indices) < world_size:
        raise ValueError(f"{len(indices)} training samples cannot be shared by {world_size} processes")
    perm = np.random.default_rng([seed, epoch]).permutation(indices)
    usable = len(perm) - len(perm) % world_size
    return perm[:usable][rank::world_size]


def eval_share(num_samples: int, rank: int, world_size: int) -> np.ndarray:
    """Evaluation sharding without padding: rank r scores samples r, r + W, ... (every sample exactly once)."""
    return np.arange(rank, num_samples, world_size)


def probe_scores(model: nn.Module, tokens: Tensor, precision: Precision) -> Tensor:
    """Mean over views of the softmax: ``tokens [B, V, N, D] -> [B, C]``."""
    b, v = tokens.shape[:2]
    with autocast(precision, tokens.device):
        logits = model(tokens.flatten(0, 1))  # [B*V, C]
    return logits.float().softmax(dim=-1).view(b, v, -1).mean(dim=1)


# ------------------------------------------------------------------------------------------ feature sources


@dataclass
class FeatureBatch:
    """Tokens of a batch of samples.

    Args:
        index: ``[B]`` dataset positions.
        tokens: ``[B, V', N', D]`` float32.
        labels: ``[B]`` int64.
        counted: ``[B]`` bool; False for samples whose file was replaced (not scored).
    """

    index: Tensor
    tokens: Tensor
    labels: Tensor
    counted: Tensor


class FeatureSource(Protocol):
    labels: np.ndarray  # [M] label of every sample

    def __len__(self) -> int: ...

    def batches(self, indices: np.ndarray, batch_size: int, epoch: int) -> Iterator[FeatureBatch]: ...


class _Keyed(Dataset):
    """Yields ``(index, sample)`` for keys ``(index, draw)``; the draw seeds augmentation (train only)."""

    def __init__(self, dataset: Dataset, fresh_draws: bool) -> None:
        self.dataset = dataset
        self.fresh_draws = fresh_draws

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, Any]:
        index, draw = key
        if self.fresh_draws:
            from vjepa.data.draws import DrawKey

            return index, self.dataset[DrawKey(draw, index)]
        return index, self.dataset[index]


def collate_keyed(items: Sequence[tuple[int, Any]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(index [B], clips [B, ...], labels [B], counted [B])`` from ``(index, sample)`` pairs; a sample has
    ``.clip``, ``.label`` and optionally ``.counted``."""
    return (
        torch.tensor([i for i, _ in items], dtype=torch.int64),
        torch.stack([s.clip for _, s in items]),
        torch.tensor([s.label for _, s in items], dtype=torch.int64),
        torch.tensor([getattr(s, "counted", True) for _, s in items], dtype=torch.bool),
    )


class OnlineFeatures:
    """Runs the frozen encoder on every batch (the only option with train-time augmentation).

    Args:
        encoder: frozen encoder on ``device``.
        dataset: map-style dataset of samples with ``.clip`` ``[S, V, 3, T, H, W]`` (or ``[S, 3, T, H, W]``,
            ``[3, T, H, W]``) and ``.label``; its ``records`` give the labels up front.
        labels: ``[M]`` labels (default: from ``dataset.records``).
        segments: how segments become token sets.
        precision: encoder autocast.
        device: where the tokens go.
        num_workers: DataLoader workers.
        fresh_draws: new augmentation draw per epoch (training with augmentation).
    """

    def __init__(
        self,
        encoder: nn.Module,
        dataset: Dataset,
        *,
        labels: np.ndarray | None = None,
        segments: SegmentMode = "concat",
        precision: Precision = "fp32",
        device: torch.device | None = None,
        num_workers: int = 0,
        fresh_draws: bool = False,
    ) -> None:
        self.encoder = encoder
        self.dataset = _Keyed(dataset, fresh_draws)
        if labels is None:
            labels = np.array([r.label for r in dataset.records], dtype=np.int64)  # type: ignore[attr-defined]
        self.labels = labels
        self.segments = segments
        self.precision = precision
        self.device = device or torch.device("cpu")
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, indices: np.ndarray, batch_size: int, epoch: int) -> Iterator[FeatureBatch]:
        keys = [(int(i), epoch * len(self) + int(i)) for i in indices]
        loader = DataLoader(
            self.dataset,  # type: ignore[arg-type]
            batch_size=batch_size,
            sampler=keys,  # type: ignore[arg-type]
            collate_fn=collate_keyed,
            num_workers=self.num_workers,
        )
        for index, clips, labels, counted in loader:
            tokens = encode_views(
                self.encoder, clips.to(self.device), segments=self.segments, precision=self.precision
            )
            yield FeatureBatch(index, tokens, labels.to(self.device), counted)


class CachedFeatures:
    """Reads tokens from a feature cache.

    Args:
        cache: an opened cache.
        device: where the tokens go.
    """

    def __init__(self, cache: FeatureCache, device: torch.device | None = None) -> None:
        self.cache = cache
        self.labels = np.asarray(cache.labels)
        self.device = device or torch.device("cpu")

    def __len__(self) -> int:
        return len(self.cache)

    def batches(self, indices: np.ndarray, batch_size: int, epoch: int) -> Iterator[FeatureBatch]:
        for start in range(0, len(indices), batch_size):
            chunk = np.asarray(indices[start : start + batch_size])
            tokens, labels, counted = self.cache.rows(chunk)
            yield FeatureBatch(
                torch.from_numpy(chunk), tokens.to(self.device), labels.to(self.device), counted
            )


def build_cache(
    root: str | Path,
    online: OnlineFeatures,
    *,
    shape: Sequence[int],
    pinned: dict[str, Any],
    info: dict[str, Any],
    batch_size: int,
    dtype: str,
    runtime: Runtime,
) -> FeatureCache:
    """Encode every sample once (each rank its share) into a new cache, then open it."""
    writer = CacheWriter(root, shape, dtype, create=runtime.is_main)  # type: ignore[arg-type]
    _barrier(runtime)
    mine = eval_share(len(online), runtime.rank, runtime.world_size)
    start = time.perf_counter()
    for batch in _progress(
        online.batches(mine, batch_size, 0), math.ceil(len(mine) / batch_size), runtime, f"caching {root}"
    ):
        writer.write(batch.index, batch.tokens, batch.labels, batch.counted)
    writer.flush()
    _barrier(runtime)
    if runtime.is_main:
        writer.finish(pinned, {**info, "seconds": round(time.perf_counter() - start, 2)})
    _barrier(runtime)
    cache = open_cache(root, pinned)
    assert cache is not None
    return cache


# ----------------------------------------------------------------------------------------- probe training


@dataclass
class ProbeRun:
    """One hyper-parameter setting: a probe, its optimizer and its history.

    Args:
        name: unique name (kind, label fraction, lr, weight decay).
        fraction: label fraction it trains on.
        lr: start learning rate.
        weight_decay: start weight decay.
        model: the probe.
        optimizer: AdamW with a decayed and a non-decayed group.
        history: per-epoch mean training loss and accuracy.
    """

    name: str
    fraction: float
    lr: float
    weight_decay: float
    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: list[dict[str, float]] = field(default_factory=list)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (default betas, eps) with biases and 1-D tensors excluded from weight decay (the official
    groups); the decayed group is marked so the schedule can find it."""
    decay = [p for n, p in model.named_parameters() if "bias" not in n and p.ndim != 1]
    rest = [p for n, p in model.named_parameters() if "bias" in n or p.ndim == 1]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay, "wd_exclude": False},
            {"params": rest, "weight_decay": 0.0, "wd_exclude": True},
        ],
        lr=lr,
    )


def train_step(
    run: ProbeRun,
    batch: FeatureBatch,
    lr: float,
    weight_decay: float,
    opt: OptimizationSection,
    precision: Precision,
    runtime: Runtime,
) -> tuple[float, float]:
    """One optimizer step on one batch; returns (loss, number of correct view-averaged predictions).

    The loss is the cross-entropy averaged over views (and samples); gradients are averaged over ranks.
    """
    for group in run.optimizer.param_groups:
        group["lr"] = lr
        if not group["wd_exclude"]:
            group["weight_decay"] = weight_decay
    b, v = batch.tokens.shape[:2]
    with autocast(precision, batch.tokens.device):
        logits = run.model(batch.tokens.flatten(0, 1))  # [B*V, C]
    logits = logits.float()
    loss = F.cross_entropy(logits, batch.labels.repeat_interleave(v))
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if runtime.distributed:
        for p in run.model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(runtime.world_size)
    if opt.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), opt.grad_clip)
    run.optimizer.step()
    with torch.no_grad():
        pred = logits.softmax(-1).view(b, v, -1).mean(1).argmax(-1)
    return loss.item(), (pred == batch.labels).sum().item()


def train_probes(
    runs: Sequence[ProbeRun],
    source: FeatureSource,
    indices: np.ndarray,
    opt: OptimizationSection,
    *,
    seed: int,
    precision: Precision,
    runtime: Runtime,
) -> None:
    """Train every run on the same batches: the features of a batch are read (or computed) once."""
    share = len(epoch_order(indices, seed, 0, runtime.rank, runtime.world_size))
    ipe = math.ceil(share / opt.batch_size)
    total = opt.epochs * ipe
    step = 0
    for epoch in range(opt.epochs):
        order = epoch_order(indices, seed, epoch, runtime.rank, runtime.world_size)
        sums = {r.name: [0.0, 0.0] for r in runs}
        seen = 0
        start = time.perf_counter()
        for batch in source.batches(order, opt.batch_size, epoch):
            step += 1  # the official schedulers step before the iteration: the first lr is lr(1)
            for run in runs:
                lr = cosine_value(run.lr, opt.final_lr, step, total)
                wd = cosine_value(run.weight_decay, opt.final_weight_decay, step, total)
                loss, correct = train_step(run, batch, lr, wd, opt, precision, runtime)
                sums[run.name][0] += loss * len(batch.labels)
                sums[run.name][1] += correct
            seen += len(batch.labels)
        seconds = round(time.perf_counter() - start, 3)
        for run in runs:
            loss_sum, correct = sums[run.name]
            run.history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": loss_sum / max(seen, 1),
                    "train_top1": 100 * correct / max(seen, 1),
                    "seconds": seconds,
                }
            )
        best = min(runs, key=lambda r: r.history[-1]["train_loss"])
        log(
            runtime,
            f"[epoch {epoch + 1}/{opt.epochs}] {len(runs)} probe(s), rank-0 train loss "
            f"{best.history[-1]['train_loss']:.4f} (best: {best.name}), {seconds:.2f} s",
        )


# -------------------------------------------------------------------------------------------- evaluation


@dataclass
class Predictions:
    """Scores of every counted sample, in dataset order, identical on every rank.

    Args:
        index: ``[M]`` dataset positions (each exactly once).
        scores: one ``[M, C]`` tensor per scorer.
        labels: ``[M]``.
    """

    index: Tensor
    scores: list[Tensor]
    labels: Tensor


def predict(
    scorers: Sequence[Scorer], source: FeatureSource, batch_size: int, runtime: Runtime
) -> Predictions:
    """Score every sample of ``source`` exactly once with every scorer (each rank its unpadded share), then
    gather; samples not counted (replaced files) are dropped."""
    mine = eval_share(len(source), runtime.rank, runtime.world_size)
    parts: dict[str, list[Tensor]] = {"index": [], "labels": [], "counted": []}
    scores: list[list[Tensor]] = [[] for _ in scorers]
    with torch.no_grad():
        batches = source.batches(mine, batch_size, 0)
        for batch in _progress(batches, math.ceil(len(mine) / batch_size), runtime, "scoring"):
            parts["index"].append(batch.index.cpu())
            parts["labels"].append(batch.labels.cpu())
            parts["counted"].append(batch.counted.cpu())
            for k, scorer in enumerate(scorers):
                scores[k].append(scorer(batch.tokens).float().cpu())
    local = {
        "index": _cat(parts["index"], torch.int64),
        "labels": _cat(parts["labels"], torch.int64),
        "counted": _cat(parts["counted"], torch.bool),
        "scores": [_cat(s, torch.float32) for s in scores],
    }
    gathered = [local]
    if runtime.distributed:
        gathered = [None] * runtime.world_size  # type: ignore[list-item]
        dist.all_gather_object(gathered, local)
    index = torch.cat([g["index"] for g in gathered])
    order = index.argsort()
    index = index[order]
    if len(index) != len(source) or not torch.equal(index, torch.arange(len(source))):
        raise RuntimeError(f"evaluation covered {len(index)} samples of {len(source)} (duplicates or gaps)")
    counted = torch.cat([g["counted"] for g in gathered])[order]
    labels = torch.cat([g["labels"] for g in gathered])[order]
    all_scores = [torch.cat([g["scores"][k] for g in gathered])[order][counted] for k in range(len(scorers))]
    return Predictions(index[counted], all_scores, labels[counted])


def _cat(items: list[Tensor], dtype: torch.dtype) -> Tensor:
    return torch.cat(items) if items else torch.zeros(0, dtype=dtype)


# --------------------------------------------------------------------------------------------- the command


def frozen_encoder(cfg: EvalConfig, device: torch.device) -> tuple[VideoEncoder, dict[str, Any]]:
    """The encoder to evaluate, frozen, and what identifies it."""
    from vjepa.checkpoint import check_clip_fits, load_pretrained
    from vjepa.models import build_encoder

    enc_cfg = cfg.encoder
    if enc_cfg.checkpoint:
        encoder = load_pretrained(enc_cfg.checkpoint, num_heads=enc_cfg.num_heads).encoder(enc_cfg.which)
        info = {"checkpoint": str(enc_cfg.checkpoint), "which": enc_cfg.which}
    else:
        torch.manual_seed(enc_cfg.init_seed)
        encoder = build_encoder(
            enc_cfg.model, num_frames=cfg.data.frames_per_clip, img_size=cfg.data.resolution
        )
        info = {"checkpoint": None, "random_init": enc_cfg.model, "init_seed": enc_cfg.init_seed}
    names = ("data.frames_per_clip", "data.resolution")
    check_clip_fits(
        encoder.config,
        cfg.data.frames_per_clip,
        cfg.data.resolution,
        names,
        info["checkpoint"] or enc_cfg.model,
    )
    encoder.eval().requires_grad_(False).to(device)
    info["fingerprint"] = encoder_fingerprint(encoder)
    return encoder, info


def build_datasets(cfg: EvalConfig) -> tuple[Dataset, Dataset]:
    """(training dataset, validation dataset) from the data layer, as the config describes."""
    from vjepa.data.datasets import EvalVideoDataset, ImageDataset, VideoClipDataset
    from vjepa.data.index import load_index
    from vjepa.data.sampling import ClipSpec
    from vjepa.data.transforms import CropSpec, EvalViewSpec

    d = cfg.data
    if d.kind == "image":
        from vjepa.data.index import IMAGE_EXTENSIONS

        crop = CropSpec(d.resolution, d.crop_scale, d.crop_aspect, flip=True) if d.train_augment else None
        train = ImageDataset(
            load_index(d.train, IMAGE_EXTENSIONS),
            num_frames=d.frames_per_clip,
            crop=crop,
            size=d.resolution,
            seed=cfg.seed,
        )
        val = ImageDataset(
            load_index(d.val, IMAGE_EXTENSIONS),
            num_frames=d.frames_per_clip,
            size=d.resolution,
            seed=cfg.seed,
        )
        return train, val
    clip = ClipSpec(d.frames_per_clip, d.frame_step, d.num_segments)
    common = {"seed": cfg.seed, "max_short_side": d.decode_short_side}
    if d.train_augment:  # official probe training: random windows, random resized crop, no flip
        train: Dataset = VideoClipDataset(
            load_index(d.train),
            clip,
            CropSpec(d.resolution, d.crop_scale, d.crop_aspect, flip=False),
            random_window=True,
            allow_overlap=True,
            min_frames=1,
            **common,
        )
    else:
        train = EvalVideoDataset(load_index(d.train), clip, EvalViewSpec(d.resolution, 1), **common)
    val = EvalVideoDataset(load_index(d.val), clip, EvalViewSpec(d.resolution, d.num_views), **common)
    return train, val


def feature_sources(
    cfg: EvalConfig,
    encoder: VideoEncoder,
    encoder_info: dict[str, Any],
    train_set: Dataset,
    val_set: Dataset,
    precision: Precision,
    runtime: Runtime,
) -> tuple[FeatureSource, FeatureSource]:
    """On-the-fly sources, or caches (opened if valid, built if absent, refused if stale)."""
    d = cfg.data
    online = {
        name: OnlineFeatures(
            encoder,
            ds,
            segments=cfg.probe.segments,
            precision=precision,
            device=runtime.device,
            num_workers=d.num_workers,
            fresh_draws=name == "train" and d.train_augment,
        )
        for name, ds in (("train", train_set), ("val", val_set))
    }
    if cfg.cache.dir is None:
        return online["train"], online["val"]
    grid = encoder.grid_for(torch.empty(1, 3, d.frames_per_clip, d.resolution, d.resolution, device="meta"))
    sources = []
    for name, views in (("train", 1), ("val", d.num_views)):
        ds = online[name].dataset.dataset
        v, n = token_set_shape(d.num_segments, views, grid.num_tokens, cfg.probe.segments)
        shape = (len(ds), v, n, encoder.embed_dim)  # type: ignore[arg-type]
        pinned = {
            "encoder": encoder_info["fingerprint"],
            "dataset": {"kind": d.kind, "records": records_fingerprint(ds.records), "num_samples": len(ds)},  # type: ignore[attr-defined]
            "clip": {
                "frames_per_clip": d.frames_per_clip,
                "frame_step": d.frame_step,
                "num_segments": d.num_segments,
                "num_views": views,
                "resolution": d.resolution,
                "segments": cfg.probe.segments,
                "max_short_side": d.max_short_side,
            },
            "precision": precision,
            "dtype": cfg.cache.dtype,
        }
        root = cache_root(cfg.cache.dir, encoder_info["fingerprint"]) / name
        cache = _open_or_none(root, pinned, cfg.cache.overwrite)
        if cache is None:
            gb = math.prod(shape) * (2 if cfg.cache.dtype == "float16" else 4) / 1e9
            if gb > cfg.cache.max_gb:
                raise ValueError(
                    f"the {name} feature cache would take {gb:.1f} GB > cache.max_gb={cfg.cache.max_gb}"
                )
            log(runtime, f"building the {name} feature cache {root}: shape {list(shape)}, {gb:.3f} GB")
            info = {"encoder": encoder_info, "index": getattr(d, name)}
            cache = build_cache(
                root,
                online[name],
                shape=shape,
                pinned=pinned,
                info=info,
                batch_size=cfg.optimization.batch_size,
                dtype=cfg.cache.dtype,
                runtime=runtime,
            )
        else:
            log(runtime, f"using the {name} feature cache {root}")
        sources.append(CachedFeatures(cache, runtime.device))
    return sources[0], sources[1]


def cache_root(cache_dir: str | Path, fingerprint: str) -> Path:
    """Caches of different encoders live side by side: ``<cache.dir>/<fingerprint[:16]>/{train,val}``."""
    return Path(cache_dir) / fingerprint[:16]


def _open_or_none(root: Path, pinned: dict[str, Any], overwrite: bool) -> FeatureCache | None:
    from vjepa.probe.features import CacheError

    try:
        return open_cache(root, pinned)
    except CacheError:
        if overwrite:
            return None
        raise


def run_eval(cfg: EvalConfig, source: str = "config") -> dict[str, Any]:
    """``vjepa eval``: train and score probes on a frozen encoder; returns (and writes) the metrics.

    Args:
        cfg: the resolved config.
        source: named in error messages (the YAML path).
    """
    cfg.check_runnable(source)
    runtime = setup(cfg.device, cfg.threads)
    try:
        return _run_eval(cfg, runtime)
    finally:
        teardown()


def _run_eval(cfg: EvalConfig, runtime: Runtime) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    if (out / "metrics.json").exists():
        raise FileExistsError(
            f"{out} already holds a finished evaluation (metrics.json); choose another output_dir"
        )
    decision = resolve_precision(cfg.precision, runtime.device)
    log_precision(runtime, decision)
    precision = decision.precision
    if runtime.is_main:
        save_config(cfg, out / "config.yaml")
    encoder, encoder_info = frozen_encoder(cfg, runtime.device)
    log(
        runtime, f"encoder: {encoder_info}; {runtime.world_size} process(es) on {runtime.device}, {precision}"
    )
    train_set, val_set = build_datasets(cfg)
    train_src, val_src = feature_sources(cfg, encoder, encoder_info, train_set, val_set, precision, runtime)
    results = evaluate_readouts(
        cfg, train_src, val_src, encoder.config.num_heads, encoder.embed_dim, precision, runtime
    )
    report = {"encoder": encoder_info, "readout": cfg.probe.kind, "world_size": runtime.world_size, **results}
    report["precision"] = decision.as_dict()
    if runtime.is_main:
        write_json(report, out / "metrics.json")
        for r in report["results"]:
            log(
                runtime,
                f"{r['name']}: top-1 {r['top1']:.2f}  top-5 {r['top5']:.2f}  ({r['num_samples']} samples)",
            )
        log(runtime, f"wrote {out / 'metrics.json'}")
    return report


def evaluate_readouts(
    cfg: EvalConfig,
    train_src: FeatureSource,
    val_src: FeatureSource,
    encoder_heads: int,
    embed_dim: int,
    precision: Precision,
    runtime: Runtime,
) -> dict[str, Any]:
    """Train every (fraction, lr, weight decay) probe (or fit k-NN), score them on the validation set in
    one pass, write probes and plots (rank 0). Returns ``{"results": [...], "best": {...}}``."""
    out = Path(cfg.output_dir)
    c = cfg.data.num_classes
    kind = cfg.probe.kind
    arch = ProbeArch(kind, embed_dim, c, cfg.probe.num_heads or encoder_heads) if kind != "knn" else None
    scorers: list[Scorer] = []
    entries: list[dict[str, Any]] = []
    runs: list[ProbeRun] = []
    for fraction in cfg.label_fractions:
        subset = stratified_subset(train_src.labels, fraction, cfg.seed)
        log(runtime, f"label fraction {fraction}: {len(subset)} of {len(train_src)} training samples")
        if kind == "knn":
            knn = fit_knn(train_src, subset, cfg, runtime)
            scorers.append(knn.predict)
            entries.append(
                {"name": f"knn_frac{fraction:g}", "fraction": fraction, "train_samples": len(subset)}
            )
            continue
        group = []
        for lr, wd in itertools.product(cfg.optimization.lr, cfg.optimization.weight_decay):
            seed_everything(cfg.seed)  # every setting starts from the same probe weights
            model = arch.build().to(runtime.device)  # type: ignore[union-attr]
            name = f"{kind}_frac{fraction:g}_lr{lr:g}_wd{wd:g}"
            group.append(ProbeRun(name, fraction, lr, wd, model, make_optimizer(model, lr, wd)))
        seed_everything(cfg.seed)
        train_probes(
            group, train_src, subset, cfg.optimization, seed=cfg.seed, precision=precision, runtime=runtime
        )
        for run in group:
            run.model.eval()
            scorers.append(functools.partial(probe_scores, run.model, precision=precision))
            entries.append(
                {
                    "name": run.name,
                    "fraction": fraction,
                    "lr": run.lr,
                    "weight_decay": run.weight_decay,
                    "train_samples": len(subset),
                    "history": run.history,
                }
            )
        runs += group
    predictions = predict(scorers, val_src, cfg.optimization.batch_size, runtime)
    for entry, scores in zip(entries, predictions.scores, strict=True):
        entry.update(classification_metrics(scores, predictions.labels, c).to_dict())
    best: dict[str, str] = {}
    for fraction in cfg.label_fractions:
        candidates = [e for e in entries if e["fraction"] == fraction]
        best[f"{fraction:g}"] = max(candidates, key=lambda e: e["top1"])["name"]
    if runtime.is_main:
        for entry in entries:
            if entry["name"] in best.values():
                save_confusion_png(
                    entry["confusion"],
                    out / f"confusion_{entry['name']}.png",
                    cfg.data.class_names,
                    entry["name"],
                )
        for run, entry in zip(runs, [e for e in entries if "lr" in e], strict=True):
            meta = {k: v for k, v in entry.items() if k not in ("confusion", "history", "per_class")}
            save_probe(out / "probes" / run.name, arch, run.model, meta)  # type: ignore[arg-type]
    return {"results": entries, "best": best}


class SubsetSource:
    """The samples ``subset`` of another source, renumbered 0..len(subset)-1.

    Args:
        source: the full source.
        subset: sorted positions in it.
    """

    def __init__(self, source: FeatureSource, subset: np.ndarray) -> None:
        self.source = source
        self.subset = np.asarray(subset)
        self.labels = source.labels[self.subset]

    def __len__(self) -> int:
        return len(self.subset)

    def batches(self, indices: np.ndarray, batch_size: int, epoch: int) -> Iterator[FeatureBatch]:
        for batch in self.source.batches(self.subset[indices], batch_size, epoch):
            batch.index = torch.from_numpy(np.searchsorted(self.subset, batch.index.cpu().numpy()))
            yield batch


def mean_pooled(tokens: Tensor) -> Tensor:  # [B, V, N, D] -> [B, D]: the k-NN feature of a sample
    return pooled(tokens).mean(dim=1)


def fit_knn(source: FeatureSource, subset: np.ndarray, cfg: EvalConfig, runtime: Runtime) -> KNNClassifier:
    """The k-NN bank: pooled training features of ``subset`` (gathered from all ranks)."""
    feats = predict([mean_pooled], SubsetSource(source, subset), cfg.optimization.batch_size, runtime)
    return KNNClassifier(
        feats.scores[0].to(runtime.device),
        feats.labels.to(runtime.device),
        cfg.data.num_classes,
        cfg.probe.knn_k,
        cfg.probe.knn_temperature,
    )


# ----------------------------------------------------------------------------------------------- helpers


def _barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def _progress(items: Iterator[Any], total: int, runtime: Runtime, desc: str) -> Iterator[Any]:
    if not runtime.is_main:
        return items
    from tqdm import tqdm

    return iter(tqdm(items, total=total, desc=desc, leave=False, mininterval=2.0))
