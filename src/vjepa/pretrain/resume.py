"""Resuming a run from its latest checkpoint, in either format, on any number of processes.

The latest checkpoint is the newest of ``checkpoints/latest.pt`` (single file, ``runtime.strategy: ddp``)
and the committed sharded folders (``fsdp``, :mod:`vjepa.pretrain.sharded`). Either loads into either
strategy: a sharded checkpoint into plain modules (DCP reads the whole tensors), a single file into sharded
modules (each rank keeps its slice). On the world size that wrote it, resume is exact (same models,
optimizer, data position and RNG states: the following steps are bit-identical). On another world size the
models and the optimizer are the same; the data stream continues at the same place of the same epoch order
(rounded up to a whole global batch: the samples skipped are reported), and ``data.batch_size`` /
``optimization.accumulation_steps`` may change on resume when they keep the global batch
(``batch_size * accumulation_steps * world_size``) the run was started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from vjepa.data.loader import DataStream
from vjepa.io import CheckpointError
from vjepa.pretrain.config import PretrainConfig
from vjepa.pretrain.distributed import is_sharded
from vjepa.pretrain.sharded import (
    checkpoint_summary,
    is_sharded_checkpoint,
    load_sharded,
    read_sharded_state,
)
from vjepa.pretrain.state import MODEL_PARTS, load_training_state, restore_models, set_rng_state
from vjepa.runtime import Runtime, log

GLOBAL_BATCH_KEYS = ("data.batch_size", "optimization.accumulation_steps")


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """Everything but the tensors of the models and the optimizer, for either format (the single file is
    read whole: it holds them all)."""
    if is_sharded_checkpoint(path):
        return read_sharded_state(path)
    return load_training_state(path)


def restore_training(
    path: Path,
    parts: dict[str, nn.Module | None],
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    stream: DataStream,
    runtime: Runtime,
) -> tuple[int, float]:
    """Load a checkpoint of either format into the run; every rank calls this.

    Args:
        path: ``latest.pt`` (or a kept ``step_XXXXXXX.pt``) or a committed sharded folder.
        parts: the objective's models by checkpoint name (``encoder``, ``predictor``, ...).
        objective: the objective (sharded or not) whose models ``parts`` are.
        optimizer: its optimizer, built over the (sharded) parameters.
        stream: the data stream of this rank.
        runtime: ranks.

    Returns:
        the step to continue at and the loss of the step before it.
    """
    if is_sharded_checkpoint(path):
        state = read_sharded_state(path)
        load_sharded(path, objective, optimizer, runtime)
        rngs = state["rng"]
        rng = rngs[runtime.rank] if len(rngs) == runtime.world_size else rngs[0]
    else:
        state = load_training_state(path)
        if is_sharded(objective):
            _load_single_file_into_sharded(state, parts, objective, optimizer, str(path))
        else:
            restore_models(state, parts, str(path))
            optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
    stream.load_state_dict(_data_state_for(state["data"], stream, runtime))
    set_rng_state(rng)
    return int(state["step"]), float(state.get("loss", float("nan")))


def _load_single_file_into_sharded(
    state: dict[str, Any],
    parts: dict[str, nn.Module | None],
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    source: str,
) -> None:
    """A single-file checkpoint (full tensors; optimizer state keyed by parameter number) into sharded
    models: full state dicts keyed by parameter name, which every rank slices."""
    for name in MODEL_PARTS:
        if (parts.get(name) is None) != (name not in state):
            raise CheckpointError(
                f"{source}: the run and the checkpoint differ in holding a {name!r} "
                "(was it written with another objective?)"
            )
    prefix = {id(module): name for name, module in objective.named_children()}
    model_state = {
        f"{prefix[id(module)]}.{key}": value
        for name, module in parts.items()
        if module is not None
        for key, value in state[name].items()
    }
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(objective, model_state, options=options)
    names = {id(p): n for n, p in objective.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    saved = state["optimizer"]
    if len(order) != sum(len(g["params"]) for g in saved["param_groups"]):
        raise CheckpointError(f"{source}: its optimizer state does not match this run's parameters")
    optim_state = {
        "state": {order[int(i)]: s for i, s in saved["state"].items()},
        "param_groups": [
            {**g, "params": [order[int(i)] for i in g["params"]]} for g in saved["param_groups"]
        ],
    }
    set_optimizer_state_dict(objective, optimizer, optim_state, options=options)


def _data_state_for(saved: dict[str, Any], stream: DataStream, runtime: Runtime) -> dict[str, Any]:
    """The saved data position, moved onto this run's world size and batch size when they differ: the same
    epoch, at the first global batch that starts at or after the samples already delivered."""
    world, batch = stream.sampler.world_size, stream.batch_size
    if saved["world_size"] == world and saved["batch_size"] == batch:
        return saved
    delivered = saved["batches_done"] * saved["batch_size"] * saved["world_size"]
    per_batch = batch * world
    epoch, batches = int(saved["epoch"]), -(-delivered // per_batch)
    if batches > stream.batches_per_epoch:
        epoch, batches = epoch + 1, 0
    skipped = batches * per_batch - delivered if batches else 0
    log(
        runtime,
        f"data: the checkpoint was written by {saved['world_size']} process(es) with batch_size "
        f"{saved['batch_size']}; continuing on {world} with batch_size {batch} at sample {batches * per_batch} of "
        f"epoch {epoch} ({delivered} delivered; {skipped} skipped to start on a whole global batch)",
    )
    return {**saved, "epoch": epoch, "batches_done": batches, "batch_size": batch, "world_size": world}


def adapt_saved_config(
    saved: dict[str, Any], config: PretrainConfig, saved_world_size: int, runtime: Runtime
) -> dict[str, Any]:
    """The saved config as :func:`check_compatible` should compare it: when the world size changed and the
    new ``data.batch_size`` and ``optimization.accumulation_steps`` keep the global batch, their new values
    are accepted. A changed global batch is reported (the schedules count steps, not samples)."""
    old_batch = saved["data"]["batch_size"] * saved["optimization"]["accumulation_steps"] * saved_world_size
    d, o = config.data, config.optimization
    new_batch = d.batch_size * o.accumulation_steps * runtime.world_size
    if saved_world_size == runtime.world_size:
        return saved
    if old_batch == new_batch:
        adapted = {**saved, "data": {**saved["data"]}, "optimization": {**saved["optimization"]}}
        adapted["data"]["batch_size"] = d.batch_size
        adapted["optimization"]["accumulation_steps"] = o.accumulation_steps
        return adapted
    if saved["data"]["batch_size"] == d.batch_size and saved["optimization"]["accumulation_steps"] == (
        o.accumulation_steps
    ):
        keep = old_batch / (o.accumulation_steps * runtime.world_size)
        hint = f"data.batch_size={int(keep)}" if keep == int(keep) else "data.batch_size/accumulation_steps"
        log(
            runtime,
            f"WARNING: the run was started on {saved_world_size} process(es) with a global batch of {old_batch} "
            f"clips; on {runtime.world_size} it is {new_batch} (the schedules count steps). Set {hint} to keep "
            f"{old_batch}.",
        )
    return saved


def checkpoint_world_size(path: Path) -> int:
    """The number of processes that wrote a checkpoint (of either format)."""
    value = checkpoint_summary(path).get("world_size")
    if not isinstance(value, int):
        raise CheckpointError(f"{path}: not a vjepa pretraining checkpoint (no world_size)")
    return value
