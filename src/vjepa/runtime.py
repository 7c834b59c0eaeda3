"""Where and how a run executes: device, precision, threads, seeding and torch.distributed (torchrun).

Nothing here runs at import time; a command calls :func:`setup` once when it starts.

**Precision.** :func:`setup` resolves the configured ``auto | fp32 | bf16`` once, by the rule in
:mod:`vjepa.precision`, and the :class:`Runtime` it returns offers autocast of that precision.

**Threads.** :func:`setup` sets the intra-op thread count (``runtime.threads``, else ``OMP_NUM_THREADS``,
else the CPUs this process may use, see :mod:`vjepa.threads`); :class:`vjepa.threads.StepTimeWatch` notices step times
that swing by more than 2x, the sign of other processes competing for the cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist

from vjepa.config import InvalidValue
from vjepa.errors import InvalidArgument
from vjepa.precision import Precision, PrecisionChoice, PrecisionDecision, autocast, resolve_precision
from vjepa.process_group import join_process_group
from vjepa.progress import Mode, Progress, track
from vjepa.threads import ThreadSettings, usable_cpus, user_thread_count, wait_policy

DeviceName = Literal["auto", "cpu", "cuda"]


@dataclass
class RuntimeSpec:
    """Where and how a command runs, in the words every command's config uses (pretraining ``runtime``, the
    top level of evaluation; extraction and the demo take the same flags). The configs inherit these fields.

    Args:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        precision: ``auto`` (the default of every command: bf16 autocast where bf16 is native and faster, fp32
            elsewhere; see :func:`vjepa.precision.resolve_precision`), ``fp32`` or ``bf16``.
        threads: CPU intra-op threads per process (None: ``OMP_NUM_THREADS`` if set, else the CPUs this
            process may use; see :func:`configure_threads`).
        seed: the run's seed.
    """

    device: DeviceName = "auto"
    precision: PrecisionChoice = "auto"
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise InvalidValue("seed", f"must be >= 0, got {self.seed}")
        if isinstance(self.threads, int) and self.threads < 1:
            raise InvalidValue("threads", f"must be >= 1 or null, got {self.threads}")


@dataclass(frozen=True)
class Runtime:
    """The run context: the process's place in the run and how it computes, resolved once by :func:`setup`;
    every command (pretraining, probes, extraction, the demo) asks it for autocast, barriers, progress and
    its share of the work instead of doing its own.

    Args:
        device: where tensors live.
        rank: global rank (0 when single-process).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        threads: the CPU thread settings :func:`setup` made (None when built by hand).
        decision: the resolved precision and why (None when built by hand: fp32).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    threads: ThreadSettings | None = None
    decision: PrecisionDecision | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def precision(self) -> Precision:
        """The precision this run computes in (``fp32`` unless resolved otherwise)."""
        return "fp32" if self.decision is None else self.decision.precision

    def autocast(self, precision: Precision | None = None) -> contextlib.AbstractContextManager:
        """Autocast of the run's precision (or ``precision``) on the run's device."""
        return autocast(precision or self.precision, self.device)

    def barrier(self) -> None:
        """Wait for every rank (nothing when single-process)."""
        if self.distributed:
            dist.barrier()

    def share(self, count: int, skip: int = 0) -> range:
        """This rank's positions of ``count`` (see :func:`share`)."""
        return share(count, self.rank, self.world_size, skip)

    def progress(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        initial: int = 0,
        bar: bool = True,
        lines: bool = True,
    ) -> Progress:
        """A run's main :class:`vjepa.progress.Progress`, shown by rank 0 only and kept when done.

        Args:
            total: units of work.
            desc: what is being done.
            unit: name of one unit.
            initial: units already done (a resumed run).
            bar: a bar when stderr is a terminal; False: always lines.
            lines: False when the caller prints its own periodic lines.
        """
        mode: Mode = "auto" if bar else "lines"
        return Progress(
            total, desc, unit=unit, initial=initial, enabled=self.is_main, mode=mode, lines=lines, leave=True
        )

    def track(self, items: Iterable[Any], total: int | None, desc: str, unit: str = "it") -> Iterator[Any]:
        """Iterate over ``items`` with a progress display on rank 0 (see :func:`vjepa.progress.track`)."""
        return track(items, total, desc, unit=unit, enabled=self.is_main)

    def log(self, message: str) -> None:
        """Print from rank 0 only."""
        log(self, message)

    def resolved(self, requested: str) -> Runtime:
        """This runtime with its precision resolved from ``requested`` if :func:`setup` did not resolve one
        (a runtime built by hand, e.g. by a library caller)."""
        if self.decision is not None:
            return self
        return dataclasses.replace(self, decision=resolve_precision(requested, self.device))


def share(count: int, rank: int, world_size: int, skip: int = 0) -> range:
    """The positions of ``count`` that rank ``rank`` of ``world_size`` takes: ``rank, rank + W, ...``
    (every position exactly once over the ranks), without its first ``skip`` (a resumed pass).

    Args:
        count: positions to share.
        rank: this process's rank.
        world_size: number of ranks W.
        skip: positions of this rank's share already done.
    """
    return range(rank + skip * world_size, count, world_size)


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgument("device 'cuda' was asked for but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise InvalidArgument(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device("cpu")


@functools.cache
def _torch_default_threads() -> int:
    """torch's own thread count (one per physical core), read before :func:`configure_threads` changes it."""
    return torch.get_num_threads()


def configure_threads(threads: int | None = None) -> ThreadSettings:
    """Set torch's intra-op thread count: ``threads`` if given, else ``OMP_NUM_THREADS`` if the user set it
    (torch read it at start), else the default: torch's count (one per physical core) capped by the CPUs
    this process may use, divided among the processes torchrun started on this node.

    Args:
        threads: the configured count (``runtime.threads``), or None for the default.
    """
    default = _torch_default_threads()
    usable = usable_cpus()
    if threads is not None:
        if threads < 1:
            raise InvalidArgument(f"threads must be >= 1, got {threads}")
        count, source = threads, "runtime.threads / --threads"
    elif user_thread_count() is not None:
        count, source = torch.get_num_threads(), "OMP_NUM_THREADS"
    else:
        local_procs = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        count = max(1, min(default, usable) // local_procs)
        source = "default" + (f", {local_procs} processes on this node" if local_procs > 1 else "")
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
    policy, policy_source = wait_policy()
    return ThreadSettings(count, source, usable, policy, policy_source)


def setup(device: str = "auto", threads: int | None = None, precision: str | None = None) -> Runtime:
    """Start the run: join the torchrun process group when launched by torchrun (gloo on CPU, NCCL on
    CUDA), pick the device, set the CPU thread count (see :func:`configure_threads`), resolve the precision
    (see :func:`vjepa.precision.resolve_precision`; printed by the caller with :func:`log_precision`).

    Args:
        device: ``auto`` | ``cpu`` | ``cuda``.
        threads: intra-op CPU threads (None: the default of :func:`configure_threads`).
        precision: ``auto`` | ``fp32`` | ``bf16`` (None: fp32, nothing resolved).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    thread_settings = configure_threads(threads)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        join_process_group("nccl" if dev.type == "cuda" else "gloo", rank, world_size)
    decision = None if precision is None else resolve_precision(precision, dev)
    return Runtime(dev, rank, world_size, local_rank, thread_settings, decision)


def finish(runtime: Runtime) -> None:
    """The end of a command that succeeded, before :func:`teardown`: every rank waits for the others.

    A rank that tears down right after a collective destroys its gloo process group while gloo's worker thread
    may still be releasing that collective's tensors. Until pytorch/pytorch#154976 (merged in June 2025) the
    group's destructor joins that thread while holding the GIL, which the thread needs to free a tensor, and
    the rank hangs for good: seen twice with torch 2.4.1 (``vjepa eval`` under torchrun, py-spy showed that
    stack). Waiting in a barrier releases the GIL, so the thread is done before the group goes.
    """
    runtime.barrier()


def teardown() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(
    device: str = "auto", threads: int | None = None, precision: str | None = None
) -> Iterator[Runtime]:
    """A command's runtime from start to end: :func:`setup`; on success :func:`finish` (every rank waits for
    the others); :func:`teardown` in any case."""
    runtime = setup(device, threads, precision)
    try:
        yield runtime
        finish(runtime)
    finally:
        teardown()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def log_precision(runtime: Runtime | None, decision: PrecisionDecision) -> None:
    """Print the decision (and its warning, to stderr) from rank 0."""
    log(runtime, decision.describe())
    if decision.warning and (runtime is None or runtime.is_main):
        print(f"WARNING: {decision.warning}", file=sys.stderr, flush=True)


def log(runtime: Runtime | None, message: str) -> None:
    """Print from rank 0 only."""
    if runtime is None or runtime.is_main:
        print(message, flush=True)
