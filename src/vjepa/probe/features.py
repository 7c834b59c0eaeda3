"""Frozen features: the encoder's tokens for every view of a sample, computed once and optionally cached.

A video sample is ``num_segments`` temporal segments x ``num_views`` spatial views. As the official
``attend_across_segments``, all segments of one view are encoded separately and their tokens concatenated
(time-major order is kept, so this equals concatenating along time): one token set of ``S * N`` tokens per
view. With ``segments="separate"`` each (segment, view) pair is its own token set instead.

The feature cache is a folder with ``tokens.npy`` ``[M, V', N', D]`` (a memmap: rows are read on demand),
``sources.npy`` ``[M]`` (the record whose video each row holds: a bad file's row holds its replacement),
``counted.npy`` ``[M]`` and ``manifest.json``. The manifest pins everything the features depend on (encoder
weights, clip and view layout, the videos, precision); a cache whose manifest differs from what the run would
compute is refused, and one without a finished manifest is rebuilt. Labels are not pinned: they are read from
the run's own index through ``sources``, so runs that probe the same videos for different labels share one
cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from vjepa.errors import VjepaError
from vjepa.io import FEATURE_CACHE_FORMAT, write_json
from vjepa.precision import Precision, autocast

SegmentMode = Literal["concat", "separate"]
CacheDtype = Literal["float32", "float16"]
MANIFEST_FILE = "manifest.json"


class CacheError(VjepaError):
    """A feature cache that does not match the run (stale) or cannot be read; names the folder and keys."""


def as_views(clips: Tensor) -> Tensor:
    """Bring a batch to ``[B, S, V, 3, T, H, W]``: clips ``[B, 3, T, H, W]`` become one segment and one view,
    ``[B, S, 3, T, H, W]`` (training clips of several segments) one view per segment."""
    if clips.ndim == 5:
        return clips[:, None, None]
    if clips.ndim == 6:
        return clips[:, :, None]
    if clips.ndim == 7:
        return clips
    raise ValueError(
        f"expected clips [B, 3, T, H, W], [B, S, 3, T, H, W] or [B, S, V, 3, T, H, W], got {tuple(clips.shape)}"
    )


def encode_views(
    encoder: nn.Module,
    clips: Tensor,
    *,
    segments: SegmentMode = "concat",
    precision: Precision = "fp32",
    chunk: int | None = None,
) -> Tensor:
    """Tokens of every view of a batch, with the encoder frozen (no graph is kept).

    Args:
        encoder: the frozen encoder, ``[b, 3, T, H, W] -> [b, N, D]``.
        clips: ``[B, S, V, 3, T, H, W]`` (or a shape :func:`as_views` accepts), on the encoder's device.
        segments: ``concat`` gives ``[B, V, S*N, D]``; ``separate`` gives ``[B, S*V, N, D]``.
        precision: ``bf16`` runs the encoder under bf16 autocast; the tokens are returned as float32.
        chunk: encode at most this many clips per forward (None: all ``B*S*V`` in one forward).

    Returns:
        float32 tokens, one token set per view.
    """
    clips = as_views(clips)
    b, s, v = clips.shape[:3]
    flat = clips.flatten(0, 2)  # [B*S*V, 3, T, H, W], batch order (sample, segment, view)
    step = chunk or flat.shape[0]
    with torch.no_grad(), autocast(precision, flat.device):
        out = torch.cat([encoder(flat[i : i + step]) for i in range(0, flat.shape[0], step)])  # [B*S*V, N, D]
    n, d = out.shape[1:]
    out = out.float().view(b, s, v, n, d)
    if segments == "concat":
        return out.transpose(1, 2).reshape(b, v, s * n, d)  # [B, V, S*N, D]
    if segments == "separate":
        return out.reshape(b, s * v, n, d)  # [B, S*V, N, D]
    raise ValueError(f"segments must be 'concat' or 'separate', got {segments!r}")


def token_set_shape(
    num_segments: int, num_views: int, tokens_per_clip: int, segments: SegmentMode
) -> tuple[int, int]:
    """``(V', N')``: token sets per sample and tokens per set."""
    if segments == "concat":
        return num_views, num_segments * tokens_per_clip
    return num_segments * num_views, tokens_per_clip


# ---------------------------------------------------------------------------------------------- fingerprints


def videos_fingerprint(records: Iterable[Any]) -> str:
    """SHA-256 of an index's paths, in order (its labels are left out: the features do not depend on them)."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(f"{r.path}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- the cache


@dataclass
class FeatureCache:
    """An opened feature cache.

    Args:
        root: its folder.
        tokens: ``[M, V', N', D]`` memmap (read-only once finished).
        labels: ``[M]`` int64: the run's label of the record each row holds.
        counted: ``[M]`` bool: False for samples whose file was replaced by another (not scored).
        manifest: what the features depend on.
    """

    root: Path
    tokens: np.ndarray
    labels: np.ndarray
    counted: np.ndarray
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def rows(self, index: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        """``(tokens [B, V', N', D] float32, labels [B], counted [B])`` for the given rows."""
        idx = np.asarray(index, dtype=np.int64)
        order = np.argsort(idx, kind="stable")  # sorted reads are sequential on disk
        tokens = np.empty((len(idx), *self.tokens.shape[1:]), dtype=self.tokens.dtype)
        tokens[order] = self.tokens[idx[order]]
        return (
            torch.from_numpy(tokens).float(),
            torch.from_numpy(self.labels[idx]),
            torch.from_numpy(self.counted[idx]),
        )


def manifest_differences(
    found: Mapping[str, Any], expected: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Dotted keys whose values differ between two manifests (``pinned`` sections only are compared)."""
    diffs = []
    for key in sorted(set(found) | set(expected)):
        a, b = found.get(key), expected.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += manifest_differences(a, b, name + ".")
        elif a != b:
            diffs.append(f"{name}: cache has {a!r}, this run needs {b!r}")
    return diffs


def open_cache(root: str | Path, pinned: Mapping[str, Any], labels: np.ndarray) -> FeatureCache | None:
    """Open a finished cache whose pinned manifest equals ``pinned``; None when there is no finished cache.

    Args:
        root: the cache folder.
        pinned: what this run's features depend on.
        labels: ``[M]`` this run's label of every record; row ``i`` gets the label of the record it holds.

    Raises:
        CacheError: the cache is finished but was computed for something else (listed key by key), or was
            written by an older vjepa.
    """
    root = Path(root)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise CacheError(f"{manifest_path}: not valid JSON ({err}); delete the folder to rebuild") from None
    try:
        FEATURE_CACHE_FORMAT.check(manifest, manifest_path, CacheError)
    except CacheError as err:  # e.g. an older vjepa's cache: recomputing it is the way out
        raise CacheError(f"{err}. Set cache.overwrite=true to recompute it, or delete the folder.") from None
    diffs = manifest_differences(manifest.get("pinned", {}), _jsonable(pinned))
    if diffs:
        raise CacheError(
            f"{root}: stale feature cache, computed for different inputs: "
            + "; ".join(diffs)
            + ". Point cache.dir elsewhere or set cache.overwrite=true to recompute it."
        )
    try:
        tokens = np.load(root / "tokens.npy", mmap_mode="r")
        sources = np.load(root / "sources.npy")
        counted = np.load(root / "counted.npy")
    except (OSError, ValueError) as err:
        raise CacheError(f"{root}: unreadable cache file ({err}); delete the folder to rebuild") from None
    if list(tokens.shape) != manifest["shape"] or sources.shape != tokens.shape[:1]:
        raise CacheError(
            f"{root}: tokens.npy has shape {tokens.shape}, the manifest says {manifest['shape']}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if sources.size and not (sources.min() >= 0 and sources.max() < len(labels)):
        raise CacheError(
            f"{root}: sources.npy names records outside this run's {len(labels)}; delete the folder"
        )
    return FeatureCache(root, tokens, labels[sources], counted, manifest)


class CacheWriter:
    """Fills a new cache row by row (several ranks may fill disjoint rows of the same files).

    Args:
        root: the cache folder.
        shape: ``(M, V', N', D)``.
        dtype: storage dtype of the tokens.
        create: True on the one process that creates the files (rank 0); the others open them after it.
    """

    def __init__(self, root: str | Path, shape: Sequence[int], dtype: CacheDtype, create: bool) -> None:
        self.root = Path(root)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / MANIFEST_FILE).unlink(missing_ok=True)  # unfinished until the manifest is back
            np.lib.format.open_memmap(
                self.root / "tokens.npy", mode="w+", dtype=dtype, shape=self.shape
            ).flush()
            for name, dt in (("sources", np.int64), ("counted", np.bool_)):
                np.lib.format.open_memmap(
                    self.root / f"{name}.npy", mode="w+", dtype=dt, shape=self.shape[:1]
                ).flush()
        self._tokens: np.memmap | None = None

    def open(self) -> None:
        self._tokens = np.load(self.root / "tokens.npy", mmap_mode="r+")
        self._sources = np.load(self.root / "sources.npy", mmap_mode="r+")
        self._counted = np.load(self.root / "counted.npy", mmap_mode="r+")

    def write(self, index: Tensor, tokens: Tensor, sources: Tensor, counted: Tensor) -> None:
        """Rows ``index [B]`` get ``tokens [B, V', N', D]``, ``sources [B]`` (the record each row's video is)
        and ``counted [B]``."""
        if self._tokens is None:
            self.open()
        if tuple(tokens.shape[1:]) != self.shape[1:]:
            raise CacheError(
                f"{self.root}: tokens of shape {tuple(tokens.shape[1:])} per sample, expected {self.shape[1:]}"
            )
        idx = index.cpu().numpy()
        self._tokens[idx] = tokens.detach().cpu().float().numpy().astype(self.dtype)
        self._sources[idx] = sources.cpu().numpy()
        self._counted[idx] = counted.cpu().numpy()

    def flush(self) -> None:
        if self._tokens is not None:
            for array in (self._tokens, self._sources, self._counted):
                array.flush()

    def finish(self, pinned: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        """Write the manifest (only then is the cache valid). Call once, after every rank flushed."""
        manifest = {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "pinned": _jsonable(pinned),
            "info": _jsonable(info),
        }
        write_json(self.root / MANIFEST_FILE, manifest, FEATURE_CACHE_FORMAT)


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so tuples and lists compare equal."""
    return json.loads(json.dumps(value, default=str))
