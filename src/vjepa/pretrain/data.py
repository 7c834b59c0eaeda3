"""The data of a pretraining run: a dataset per ``data.source``, the mask collator, the resumable stream.

The stream is :class:`vjepa.data.loader.DataStream`: rank ``r`` of ``W`` takes positions ``r, r+W, ...`` of
each epoch's order, every sample is seeded by ``(seed, draw)`` (so ranks have distinct augmentation streams)
and the masks by ``(seed, first draw of the batch)``; its ``state_dict`` is the data position saved in
checkpoints.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from vjepa.config import ConfigError
from vjepa.data.clip_cache import open_clip_cache
from vjepa.data.datasets import VideoClipDataset
from vjepa.data.index import load_mixed_index
from vjepa.data.loader import DataStream, make_loader
from vjepa.data.sampling import ClipSpec
from vjepa.data.synthetic_clips import synthetic_clip_dataset
from vjepa.data.transforms import CropSpec, max_useful_short_side
from vjepa.grid import TokenGrid
from vjepa.masks import MaskCollator, make_mask_generators
from vjepa.masks.base import MaskGenerator
from vjepa.pretrain.config import DataConfig, MasksConfig, PretrainConfig
from vjepa.runtime import Runtime, log


def build_dataset(data: DataConfig, seed: int, runtime: Runtime | None = None) -> Dataset:
    """The dataset of ``data.source``.

    Args:
        data: the data section.
        seed: the run seed (the data seed).
        runtime: the run context (the clip cache's line is printed by rank 0 only; None: printed here).
    """
    clip = ClipSpec(num_frames=data.num_frames, frame_step=data.frame_step)
    crop = CropSpec(
        resolution=data.resolution,
        scale=data.random_resize_scale,
        aspect=data.random_resize_aspect_ratio,
        flip=data.horizontal_flip,
    )
    if data.source == "synthetic":
        return synthetic_clip_dataset(
            data.synthetic_videos, data.synthetic_num_frames, data.synthetic_resolution, clip, crop, seed
        )
    if not data.datasets:
        raise ConfigError(
            "data.datasets is empty: list CSV index files (--set data.datasets=[train.csv]), or set "
            "data.source=synthetic"
        )
    keys = [f"data.datasets[{i}]" for i in range(len(data.datasets))]
    index = load_mixed_index(data.datasets, data.dataset_weights, keys=keys)
    shrink = max_useful_short_side(crop) if data.max_short_side == "auto" else data.max_short_side
    paths = [r.path for r in index.records]
    cache = open_clip_cache(
        data.clip_cache,
        paths,
        shrink,
        cache_dir=data.clip_cache_dir,
        max_gb=data.clip_cache_max_gb,
    )
    log(runtime, f"clip cache: {cache.reason}")
    return VideoClipDataset(index, clip, crop, seed=seed, max_short_side=shrink, clip_cache=cache.cache)


def build_mask_generators(masks: MasksConfig, grid: TokenGrid) -> list[MaskGenerator]:
    """One generator per mask setting of ``masks``."""
    return make_mask_generators(masks.kind, grid, list(masks.settings), masks.truncation)


def build_stream(config: PretrainConfig, grid: TokenGrid, runtime: Runtime) -> DataStream:
    """The resumable stream of :class:`vjepa.masks.MaskedBatch` for ``runtime``'s rank (batches pinned on
    CUDA).

    Args:
        config: the run config.
        grid: the token grid of the clips.
        runtime: the run context (rank, world size, device).
    """
    seed = config.runtime.seed
    dataset = build_dataset(config.data, seed, runtime)
    collator = MaskCollator(build_mask_generators(config.masks, grid), seed=seed)
    return make_loader(
        dataset,
        batch_size=config.data.batch_size,
        collate_fn=collator,
        seed=seed,
        num_workers=config.data.num_workers,
        drop_last=True,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=config.data.num_workers > 0,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )
