"""Loaders: a resumable, distributed, optionally weighted sampler and a DataLoader wrapper that counts bad files.

`DrawSampler` has the interface and partitioning of `torch.utils.data.DistributedSampler` (rank r of W takes
positions r, r+W, r+2W, ... of the epoch's order; the order is padded with its first entries to a multiple
of W, or cut with drop_last) and adds:
- weights: a `MixedIndex` with non-uniform weights is sampled WITH replacement, so weights set frequencies;
- draws: it yields `DrawKey(draw, index, padded)` where ``draw = epoch * epoch_size + position`` is unique
  over ranks and epochs, the seed of everything random in the sample;
- resume: `set_epoch(epoch, start=k)` skips the first k samples of this rank's share of that epoch.

`DataStream` wraps a DataLoader around it: it tracks (epoch, batches delivered) for checkpoints, restarts
mid-epoch from a saved state, takes any `collate_fn`, seeds workers by (seed, rank, worker), and receives the
bad-file reports that samples carry from the workers, enforcing the `FailurePolicy`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from vjepa.data.draws import DrawKey
from vjepa.data.errors import FailurePolicy, FailureTracker, SkippedVideo
from vjepa.data.index import MixedIndex
from vjepa.data.workers import StartMethod, iterate_loader, worker_context
from vjepa.runtime import share

logger = logging.getLogger(__name__)


def dist_rank_and_world_size(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """The explicit values, else those of the initialized process group (torchrun), else (0, 1)."""
    if rank is not None and world_size is not None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        return rank, world_size
    if (rank is None) != (world_size is None):
        raise ValueError("give both rank and world_size, or neither")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class DrawSampler(Sampler[DrawKey]):
    """A distributed, resumable sampler yielding `DrawKey`s.

    Args:
        num_records: dataset size N.
        weights: [N] per-record probabilities (e.g. `MixedIndex.weights`); None or uniform = a random
            permutation per epoch; non-uniform = `num_samples` draws with replacement.
        num_samples: samples per epoch over all ranks before padding (default N).
        shuffle: random order (training); False = records in order (evaluation; weights must be None).
        seed: sampler seed; the epoch order depends only on (seed, epoch).
        rank: this process's rank (default: from torch.distributed, else 0).
        world_size: number of ranks (default: from torch.distributed, else 1).
        drop_last: cut the epoch to a multiple of world_size instead of padding it (padded keys are marked).
    """

    def __init__(
        self,
        num_records: int,
        *,
        weights: np.ndarray | None = None,
        num_samples: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if num_records < 1:
            raise ValueError("DrawSampler needs at least one record")
        self.num_records = num_records
        self.rank, self.world_size = dist_rank_and_world_size(rank, world_size)
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (num_records,):
                raise ValueError(f"weights has shape {weights.shape}, expected ({num_records},)")
            if np.allclose(weights, weights[0]):
                weights = None
        if weights is not None and not shuffle:
            raise ValueError("weighted sampling is random: use shuffle=True")
        self.weights = None if weights is None else torch.from_numpy(weights / weights.sum())
        self.num_samples = num_samples if num_samples is not None else num_records
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        if drop_last:
            self.per_rank = self.num_samples // self.world_size
            if self.per_rank == 0:
                raise ValueError(
                    f"{self.num_samples} samples cannot give every one of {self.world_size} ranks one"
                )
        else:
            self.per_rank = -(-self.num_samples // self.world_size)
        self.epoch_size = self.per_rank * self.world_size  # positions per epoch over all ranks
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and skip the first `start` samples of this rank's share (for resume)."""
        if epoch < 0 or not 0 <= start <= self.per_rank:
            raise ValueError(
                f"invalid epoch {epoch} / start {start} (this rank has {self.per_rank} per epoch)"
            )
        self.epoch = epoch
        self.start = start

    def epoch_order(self, epoch: int) -> list[int]:
        """Record indices of every position of `epoch` over all ranks ([epoch_size], padded)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g).tolist()
        elif self.shuffle:
            order = torch.randperm(self.num_records, generator=g).tolist()
            while len(order) < self.num_samples:  # more samples than records: further permutations
                order += torch.randperm(self.num_records, generator=g).tolist()
            order = order[: self.num_samples]
        else:
            order = [i % self.num_records for i in range(self.num_samples)]
        if len(order) < self.epoch_size:  # pad like DistributedSampler, repeating the start
            reps = -(-self.epoch_size // len(order))
            order = (order * reps)[: self.epoch_size]
        return order[: self.epoch_size]

    def __iter__(self) -> Iterator[DrawKey]:
        order = self.epoch_order(self.epoch)
        base = self.epoch * self.epoch_size
        for position in share(self.epoch_size, self.rank, self.world_size, skip=self.start):
            yield DrawKey(base + position, order[position], position >= self.num_samples)

    def __len__(self) -> int:
        return self.per_rank - self.start


class _WorkerSeeder:
    """worker_init_fn: seeds Python, NumPy and torch global RNGs from (seed, rank, worker id), for any code
    that uses them (ours does not: samples are seeded per draw)."""

    def __init__(self, seed: int, rank: int) -> None:
        self.seed = seed
        self.rank = rank

    def __call__(self, worker_id: int) -> None:
        ss = np.random.SeedSequence([self.seed, self.rank, worker_id])
        s = int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)


class _ReportingCollate:
    """Runs the user's collate_fn in the worker and sends the samples' failure reports alongside."""

    def __init__(self, collate_fn: Callable[[list[Any]], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list[Any]) -> tuple[Any, int, list[SkippedVideo]]:
        skipped = [k for s in samples for k in getattr(s, "skipped", ())]
        return self.collate_fn(samples), len(samples), skipped


class DataStream:
    """A DataLoader over a `DrawSampler` that can be checkpointed and resumed mid-epoch.

    Iterating yields the batches of the current epoch from the current position; after a complete pass the
    epoch advances. `batches()` yields forever. `state_dict()` after k batches of an epoch resumes at batch
    k + 1 with the same remaining samples (same draws, hence same augmentations and masks).

    Args:
        dataset: a map-style dataset taking `DrawKey`s (ours) whose samples may carry `skipped`.
        sampler: the sampler.
        batch_size: samples per batch on this rank.
        collate_fn: any collate function (e.g. `collate_samples`, or the MaskCollator).
        num_workers: DataLoader worker processes (0 = in this process).
        drop_last: drop the last incomplete batch of an epoch.
        pin_memory: pin batches (CUDA); batch objects need a `pin_memory()` method.
        prefetch_factor: batches prefetched per worker.
        persistent_workers: keep workers alive between epochs.
        failure_policy: when bad files stop the run.
        seed: seed for worker-global RNGs.
        worker_start: how workers start (`vjepa.data.workers.worker_context`; default ``forkserver``).
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: DrawSampler,
        *,
        batch_size: int,
        collate_fn: Callable[[list[Any]], Any],
        num_workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        failure_policy: FailurePolicy | None = None,
        seed: int = 0,
        worker_start: StartMethod | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if drop_last and sampler.per_rank < batch_size:
            raise ValueError(
                f"batch_size {batch_size} exceeds the {sampler.per_rank} samples per epoch of this rank "
                "(with drop_last=True no batch would be made)"
            )
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.epoch = 0
        self.batches_done = 0
        self.failures = FailureTracker(failure_policy or FailurePolicy())
        self._loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=_ReportingCollate(collate_fn),
            num_workers=num_workers,
            drop_last=drop_last,
            pin_memory=pin_memory,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            persistent_workers=persistent_workers and num_workers > 0,
            worker_init_fn=_WorkerSeeder(seed, sampler.rank) if num_workers > 0 else None,
            multiprocessing_context=worker_context(worker_start) if num_workers > 0 else None,
        )

    @property
    def batches_per_epoch(self) -> int:
        n = self.sampler.per_rank
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        """Batches left in the current epoch."""
        return self.batches_per_epoch - self.batches_done

    def __iter__(self) -> Iterator[Any]:
        self.sampler.set_epoch(self.epoch, start=self.batches_done * self.batch_size)
        for batch, num_samples, skipped in iterate_loader(self._loader):
            self.batches_done += 1
            self.failures.update(num_samples, skipped)
            yield batch
        self.epoch += 1
        self.batches_done = 0

    def batches(self) -> Iterator[Any]:
        """Batches forever, epoch after epoch, from the current position."""
        while True:
            yield from self

    def state_dict(self) -> dict[str, Any]:
        """Position to resume from (and the failure counts so far)."""
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "batch_size": self.batch_size,
            "world_size": self.sampler.world_size,
            "seed": self.sampler.seed,
            "failures": self.failures.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at a saved position; the batch size, world size and seed must be those of the saved run."""
        for key, mine in (
            ("batch_size", self.batch_size),
            ("world_size", self.sampler.world_size),
            ("seed", self.sampler.seed),
        ):
            if state[key] != mine:
                raise ValueError(
                    f"cannot resume the data stream: saved {key}={state[key]} but this run has {mine}"
                )
        if not 0 <= state["batches_done"] <= self.batches_per_epoch:
            raise ValueError(
                f"saved batches_done={state['batches_done']} outside 0..{self.batches_per_epoch}"
            )
        self.epoch = int(state["epoch"])
        self.batches_done = int(state["batches_done"])
        self.failures.load_state_dict(state["failures"])


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any],
    seed: int,
    shuffle: bool = True,
    weights: MixedIndex | np.ndarray | Sequence[float] | None = None,
    num_samples: int | None = None,
    num_workers: int = 0,
    drop_last: bool = True,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    persistent_workers: bool = False,
    failure_policy: FailurePolicy | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    worker_start: StartMethod | None = None,
) -> DataStream:
    """Build the sampler and the `DataStream` for a dataset (the usual entry point).

    Args:
        dataset: one of our datasets (or any map-style dataset accepting `DrawKey`).
        batch_size: per-rank batch size.
        collate_fn: any collate function.
        seed: sampler and worker seed (use the same seed as the dataset's).
        shuffle: random order per epoch (training) or in order (evaluation, then drop_last=False).
        weights: per-record weights or a `MixedIndex` (default: the dataset's own `index`, if it has one).
        num_samples: samples per epoch over all ranks (default: dataset size).
        num_workers: DataLoader workers.
        drop_last: drop the incomplete last batch and cut the epoch to a multiple of the world size.
        pin_memory: pin batches.
        prefetch_factor: batches prefetched per worker.
        persistent_workers: keep workers between epochs.
        failure_policy: bad-file bounds (default: the dataset's, if it has one).
        rank: override the distributed rank.
        world_size: override the distributed world size.
        worker_start: how workers start: ``forkserver`` (default where available), ``spawn`` or ``fork``
            (see `vjepa.data.workers`).
    """
    sampler = DrawSampler(
        len(dataset),
        weights=_record_weights(dataset, weights, shuffle),
        num_samples=num_samples,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
    )
    return DataStream(
        dataset,
        sampler,
        batch_size=batch_size,
        collate_fn=collate_fn,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor,
        persistent_workers=persistent_workers,
        failure_policy=failure_policy or getattr(dataset, "failure_policy", None),
        seed=seed,
        worker_start=worker_start,
    )


def _record_weights(
    dataset: Dataset, weights: MixedIndex | np.ndarray | Sequence[float] | None, shuffle: bool
) -> np.ndarray | None:
    """``[N]`` sampling weights: the given ones, else (when shuffling) those of the dataset's own index."""
    if weights is None and shuffle:
        weights = getattr(dataset, "index", None)
    if isinstance(weights, MixedIndex):
        weights = weights.weights
    return None if weights is None else np.asarray(weights, dtype=np.float64)
