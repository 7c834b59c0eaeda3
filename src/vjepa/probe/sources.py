"""Feature sources: where the probes' tokens come from, batch by batch.

- :class:`OnlineFeatures` runs the frozen encoder on every batch (the only choice with train-time
  augmentation);
- :class:`CachedFeatures` reads a feature cache (:mod:`vjepa.probe.features`);
- :class:`MemoryFeatures` holds small features in memory (the mean-pooled tokens of the linear and k-NN
  readouts, computed in one pass);
- :class:`SubsetSource` renumbers a subset of another source (the held-out selection split).

Every source yields :class:`FeatureBatch` es for the dataset positions it is asked for; sharding across
processes is :func:`epoch_order` (training) and :meth:`vjepa.runtime.Runtime.share` (scoring: every sample
exactly once, unpadded).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from vjepa.data.draws import DrawKey
from vjepa.data.workers import iterate_loader, worker_context
from vjepa.errors import InvalidArgument
from vjepa.precision import Precision
from vjepa.probe.features import FeatureCache, SegmentMode, encode_views
from vjepa.runtime import share


@dataclass
class FeatureBatch:
    """Tokens of a batch of samples.

    Args:
        index: ``[B]`` dataset positions.
        tokens: ``[B, V', N', D]`` float32.
        labels: ``[B]`` int64.
        counted: ``[B]`` bool; False for samples whose file was replaced (not scored).
        sources: ``[B]`` the record whose video each sample holds (``index`` but where a bad file was
            replaced; what a feature cache stores); None where the source does not know.
    """

    index: Tensor
    tokens: Tensor
    labels: Tensor
    counted: Tensor
    sources: Tensor | None = None


class FeatureSource(Protocol):
    labels: np.ndarray  # [M] label of every sample

    def __len__(self) -> int: ...

    def batches(self, indices: np.ndarray, batch_size: int, epoch: int) -> Iterator[FeatureBatch]: ...


def epoch_order(indices: np.ndarray, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of a seeded shuffle of ``indices``: equal shares on every rank (the remainder of
    ``len % world_size`` samples is left out of this epoch), so every rank takes the same number of steps."""
    if len(indices) < world_size:
        raise InvalidArgument(f"{len(indices)} training samples cannot be shared by {world_size} processes")
    perm = np.random.default_rng([seed, epoch]).permutation(indices)
    usable = len(perm) - len(perm) % world_size
    return perm[np.asarray(share(usable, rank, world_size), dtype=np.int64)]


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
            return index, self.dataset[DrawKey(draw, index)]
        return index, self.dataset[index]


def collate_keyed(items: Sequence[tuple[int, Any]]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(index [B], clips [B, ...], labels [B], counted [B], sources [B])`` from ``(index, sample)`` pairs;
    a sample has ``.clip``, ``.label`` and optionally ``.counted`` and ``.index`` (the record it holds)."""
    return (
        torch.tensor([i for i, _ in items], dtype=torch.int64),
        torch.stack([s.clip for _, s in items]),
        torch.tensor([s.label for _, s in items], dtype=torch.int64),
        torch.tensor([getattr(s, "counted", True) for _, s in items], dtype=torch.bool),
        torch.tensor([getattr(s, "index", i) for i, s in items], dtype=torch.int64),
    )


class OnlineFeatures:
    """Runs the frozen encoder on every batch.

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
        self.fresh_draws = fresh_draws

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
            multiprocessing_context=worker_context() if self.num_workers > 0 else None,
        )
        for index, clips, labels, counted, sources in iterate_loader(loader):
            tokens = encode_views(
                self.encoder, clips.to(self.device), segments=self.segments, precision=self.precision
            )
            yield FeatureBatch(index, tokens, labels.to(self.device), counted, sources)


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


class MemoryFeatures:
    """Features held in memory, e.g. mean-pooled tokens ``[M, V, 1, D]``.

    Args:
        tokens: ``[M, V', N', D]``.
        labels: ``[M]``.
        counted: ``[M]`` bool.
    """

    def __init__(self, tokens: Tensor, labels: Tensor, counted: Tensor) -> None:
        self.tokens, self.label_tensor, self.counted = tokens, labels, counted
        self.labels = labels.cpu().numpy()

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def batches(self, indices: np.ndarray, batch_size: int, epoch: int) -> Iterator[FeatureBatch]:
        for start in range(0, len(indices), batch_size):
            i = torch.as_tensor(np.asarray(indices[start : start + batch_size]), dtype=torch.int64)
            idx = i.to(self.tokens.device)
            yield FeatureBatch(
                i, self.tokens[idx], self.label_tensor[idx], self.counted[i.to(self.counted.device)]
            )


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
