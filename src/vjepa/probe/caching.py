"""The feature sources of a run: on the fly, or feature caches opened when valid, built when absent and
refused when stale (``<cache.dir>/<encoder fingerprint[:16]>/<split>``). A cache depends on the videos, not on
their labels: runs that probe the same videos for other labels can point ``cache.dir`` at the same folder."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from vjepa.models.encoder import VideoEncoder
from vjepa.precision import Precision
from vjepa.probe.config import EvalConfig
from vjepa.probe.features import (
    CacheError,
    CacheWriter,
    FeatureCache,
    open_cache,
    token_set_shape,
    videos_fingerprint,
)
from vjepa.probe.sources import CachedFeatures, FeatureSource, OnlineFeatures
from vjepa.runtime import Runtime, log


def cache_root(cache_dir: str | Path, fingerprint: str) -> Path:
    """Caches of different encoders live side by side: ``<cache.dir>/<fingerprint[:16]>/<split>``."""
    return Path(cache_dir) / fingerprint[:16]


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
    runtime.barrier()
    mine = np.asarray(runtime.share(len(online)), dtype=np.int64)
    start = time.perf_counter()
    batches = online.batches(mine, batch_size, 0)
    total = math.ceil(len(mine) / batch_size)
    for batch in runtime.track(batches, total, f"caching {root}", unit="batch"):
        assert batch.sources is not None  # OnlineFeatures knows them
        writer.write(batch.index, batch.tokens, batch.sources, batch.counted)
    writer.flush()
    runtime.barrier()
    if runtime.is_main:
        writer.finish(pinned, {**info, "seconds": round(time.perf_counter() - start, 2)})
    runtime.barrier()
    cache = open_cache(root, pinned, online.labels)
    assert cache is not None
    return cache


def feature_sources(
    cfg: EvalConfig,
    encoder: VideoEncoder,
    encoder_info: dict[str, Any],
    datasets: dict[str, Dataset],
    runtime: Runtime,
) -> dict[str, FeatureSource]:
    """One source per split (``train``, ``val``, maybe ``selection``): on the fly, or cached (the encoder
    runs in ``runtime.precision``)."""
    d, precision = cfg.data, runtime.precision
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
        for name, ds in datasets.items()
    }
    if cfg.cache.dir is None:
        return dict(online)
    tokens_per_clip = encoder.config.token_grid(d.num_frames, d.resolution).num_tokens
    sources: dict[str, FeatureSource] = {}
    for name, src in online.items():
        views = 1 if name == "train" else d.num_views
        ds = src.dataset.dataset
        v, n = token_set_shape(d.num_segments, views, tokens_per_clip, cfg.probe.segments)
        shape = (len(ds), v, n, encoder.embed_dim)  # type: ignore[arg-type]
        pinned = _pinned(cfg, encoder_info["fingerprint"], ds, views, precision)
        root = cache_root(cfg.cache.dir, encoder_info["fingerprint"]) / name
        cache = _open_or_none(root, pinned, src.labels, cfg.cache.overwrite)
        if cache is None:
            gb = math.prod(shape) * (2 if cfg.cache.dtype == "float16" else 4) / 1e9
            if gb > cfg.cache.max_gb:
                raise CacheError(
                    f"the {name} feature cache would take {gb:.1f} GB > cache.max_gb={cfg.cache.max_gb}"
                )
            log(runtime, f"building the {name} feature cache {root}: shape {list(shape)}, {gb:.3f} GB")
            info = {"encoder": encoder_info, "split": name}
            cache = build_cache(
                root, src, shape=shape, pinned=pinned, info=info, batch_size=cfg.optimization.batch_size,
                dtype=cfg.cache.dtype, runtime=runtime,
            )  # fmt: skip
        else:
            log(runtime, f"using the {name} feature cache {root}")
        sources[name] = CachedFeatures(cache, runtime.device)
    return sources


def _pinned(
    cfg: EvalConfig, fingerprint: str, ds: Dataset, views: int, precision: Precision
) -> dict[str, Any]:
    """Everything the cached features depend on."""
    d = cfg.data
    return {
        "encoder": fingerprint,
        "dataset": {"kind": d.kind, "videos": videos_fingerprint(ds.records), "num_samples": len(ds)},  # type: ignore[attr-defined,arg-type]
        "clip": {
            "num_frames": d.num_frames,
            "frame_step": d.frame_step,
            "num_segments": d.num_segments,
            "num_views": views,
            "resolution": d.resolution,
            "segments": cfg.probe.segments,
            "max_short_side": d.decode_short_side,
        },
        "precision": precision,
        "dtype": cfg.cache.dtype,
    }


def _open_or_none(
    root: Path, pinned: dict[str, Any], labels: np.ndarray, overwrite: bool
) -> FeatureCache | None:
    try:
        return open_cache(root, pinned, labels)
    except CacheError:
        if overwrite:
            return None
        raise
