"""Sharded training checkpoints (``runtime.strategy: fsdp``), written with ``torch.distributed.checkpoint``.

Layout, in the run's ``checkpoints/``::

    step_0000300/            one committed checkpoint: the state after 300 optimizer steps
        __0_0.distcp ...     each rank's shards of the models and of the AdamW state (written in parallel)
        .metadata            where every tensor's pieces are (written by rank 0 once every rank has written)
        state.pt             step, config, world size, loss, data position, every rank's RNG states
    .step_0000600.partial/   a checkpoint being written (or the leftovers of a killed write)

Commit protocol: rank 0 creates ``.step_XXXXXXX.partial/``; every rank writes its shards into it; rank 0 adds
``state.pt`` (atomically, last), then renames the folder to ``step_XXXXXXX/`` (one atomic rename), then removes
the older checkpoints that are not kept (``logging.keep_every``). A kill at any moment leaves the newest
committed folder intact and, at worst, a ``.partial`` folder that resume ignores and removes. The newest
committed folder is the latest checkpoint; a folder is committed when its name has no dot prefix and it holds
``state.pt`` and ``.metadata``.

Tensors are stored under their names in the unwrapped objective (``encoder.blocks.0.attn.qkv.weight``, ...),
independent of the number of ranks: a checkpoint written by N processes loads onto any number, sharded or not
(``torch.distributed.checkpoint`` reads the pieces each rank needs). ``state.pt`` holds only tensors and plain
containers and is read with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from vjepa.io import SHARDED_STATE_FORMAT, CheckpointError, atomic_write, first_line, safe_torch_load
from vjepa.pretrain.state import FORMAT as STATE_FORMAT
from vjepa.pretrain.state import LATEST, load_training_state, rng_state
from vjepa.runtime import Runtime

FORMAT = SHARDED_STATE_FORMAT.name
STATE_FILE = "state.pt"
DCP_METADATA = ".metadata"
_COMMITTED = re.compile(r"^step_(\d{7,})$")
_PARTIAL = re.compile(r"^\.step_\d{7,}\.partial$")


def sharded_name(step: int) -> str:
    return f"step_{step:07d}"


def committed_checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """The committed sharded checkpoints of a run, oldest first, as ``(step, folder)``."""
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for path in checkpoint_dir.iterdir():
        match = _COMMITTED.match(path.name)
        if match and path.is_dir() and (path / STATE_FILE).is_file() and (path / DCP_METADATA).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def partial_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The ``.step_XXXXXXX.partial`` folders that writes killed mid-way left."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted(p for p in checkpoint_dir.iterdir() if _PARTIAL.match(p.name) and p.is_dir())


def is_sharded_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / STATE_FILE).is_file()


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The checkpoint a resume continues from: the newest of ``latest.pt`` and the committed sharded
    folders (a run can switch ``runtime.strategy`` between sessions, so both can exist)."""
    single = checkpoint_dir / LATEST
    committed = committed_checkpoints(checkpoint_dir)
    if not committed:
        return single if single.is_file() else None
    step, newest = committed[-1]
    if single.is_file() and int(checkpoint_summary(single)["step"]) > step:
        return single
    return newest


def checkpoint_summary(path: Path) -> dict[str, Any]:
    """The step, world size, config and other small entries of a checkpoint of either format, without
    reading the weights (a single file is memory-mapped)."""
    if is_sharded_checkpoint(path):
        return read_sharded_state(path)
    try:
        state = safe_torch_load(path, mmap=True)
    except CheckpointError:
        return load_training_state(path)  # reads it whole, and names the problem if it is unreadable
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        return load_training_state(path)
    return state


def save_sharded(
    checkpoint_dir: Path,
    *,
    step: int,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    extra: dict[str, Any],
    runtime: Runtime,
    keep_every: int | None,
) -> Path:
    """Write and commit the checkpoint of ``step``; every rank calls this (it is a collective).

    Args:
        checkpoint_dir: the run's ``checkpoints/``.
        step: optimizer steps completed.
        objective: the (sharded or plain) objective.
        optimizer: its optimizer.
        extra: what ``state.pt`` holds besides the step, format and RNG states (config, world size, loss,
            data position); only rank 0's is written.
        runtime: ranks.
        keep_every: the older checkpoints at multiples of it are kept; the others are removed once this one
            is committed.

    Returns:
        the committed folder (already present when this step was committed before: the latest and the kept
        checkpoint of one step are the same folder).
    """
    final = checkpoint_dir / sharded_name(step)
    if is_sharded_checkpoint(final):
        return final
    partial = checkpoint_dir / f".{sharded_name(step)}.partial"
    if runtime.is_main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    runtime.barrier()
    model_state, optim_state = get_state_dict(objective, optimizer)
    with _single_process_note_off():
        dcp.save(
            {"model": model_state, "optimizer": optim_state},
            storage_writer=dcp.FileSystemWriter(partial),
            no_dist=not runtime.distributed,
        )
    rng = _gather(rng_state(), runtime)
    if runtime.is_main:
        payload = {**SHARDED_STATE_FORMAT.header(), "step": step, "rng": rng, **extra}
        atomic_write(partial / STATE_FILE, lambda tmp: torch.save(payload, tmp))
        _fsync_dir(partial)
        os.replace(partial, final)
        _fsync_dir(checkpoint_dir)
        _prune(checkpoint_dir, step, keep_every)
    runtime.barrier()
    return final


def _prune(checkpoint_dir: Path, step: int, keep_every: int | None) -> None:
    """Remove the committed checkpoints older than ``step`` that are not kept."""
    for old_step, path in committed_checkpoints(checkpoint_dir):
        if old_step < step and (keep_every is None or old_step % keep_every):
            # Rename first: a kill mid-removal leaves a .partial folder (ignored), never a half checkpoint.
            doomed = checkpoint_dir / f".{path.name}.partial"
            os.replace(path, doomed)
            shutil.rmtree(doomed)


def read_sharded_state(path: Path) -> dict[str, Any]:
    """The ``state.pt`` of a committed checkpoint folder, format-checked."""
    state = safe_torch_load(path / STATE_FILE)
    SHARDED_STATE_FORMAT.check(state, path / STATE_FILE, CheckpointError)
    if not (path / DCP_METADATA).is_file():
        raise CheckpointError(f"{path}: no {DCP_METADATA}; the checkpoint is incomplete")
    return state


def load_sharded(
    path: Path, objective: nn.Module, optimizer: torch.optim.Optimizer, runtime: Runtime
) -> None:
    """Load the models and the optimizer of a committed checkpoint into ``objective`` (sharded or not, on
    any number of processes) and its optimizer; every rank calls this."""
    model_state, optim_state = get_state_dict(objective, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    try:
        with _single_process_note_off():
            dcp.load(state, storage_reader=dcp.FileSystemReader(path), no_dist=not runtime.distributed)
    except (CheckpointException, RuntimeError, ValueError, KeyError) as err:  # missing keys, shapes
        raise CheckpointError(f"{path}: does not match this run's models ({first_line(err)})") from None
    set_state_dict(objective, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


@contextlib.contextmanager
def _single_process_note_off() -> Iterator[None]:
    """Silence DCP's note that it saves or loads in a single process (we ask for exactly that)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"torch.distributed is disabled, unavailable or uninitialized"
        )
        yield


def _gather(value: Any, runtime: Runtime) -> list[Any]:
    """``value`` of every rank, in rank order (on every rank)."""
    if not runtime.distributed:
        return [value]
    values: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(values, value)
    return values


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
