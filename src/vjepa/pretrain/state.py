"""Training checkpoints: everything needed to continue a run exactly, written atomically.

``checkpoints/latest.pt`` (and periodic ``checkpoints/step_XXXXXXX.pt``) hold::

    format, version   "vjepa-pretrain", 1
    step              optimizer steps completed (the next step to run)
    encoder, predictor, target_encoder, pixel_head    state dicts (unwrapped; absent models are omitted)
    optimizer         AdamW state dict
    data              the data stream position (epoch, batches delivered, failure counts)
    rng               Python, NumPy, torch CPU and CUDA generator states of rank 0
    config            the resolved run config (plain dict)
    world_size        processes of the run that wrote it
    loss              the loss of the last step

Files hold only tensors and plain containers and are read with ``torch.load(weights_only=True)``. The
model keys are those of official checkpoints, so ``vjepa convert`` and ``load_pretrained`` read them too.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vjepa.checkpoint import load_strict
from vjepa.errors import InvalidArgument
from vjepa.io import PRETRAIN_STATE_FORMAT, CheckpointError, atomic_write, safe_torch_load

FORMAT = PRETRAIN_STATE_FORMAT.name
LATEST = "latest.pt"
MODEL_PARTS = ("encoder", "predictor", "target_encoder", "pixel_head")


def periodic_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def rng_state() -> dict[str, Any]:
    """The generator states of this process (all plain tensors / containers)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # One state per GPU of the machine that saved it; a machine with fewer GPUs restores those it has.
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def save_training_state(
    path: Path,
    *,
    step: int,
    models: dict[str, nn.Module | None],
    optimizer: torch.optim.Optimizer,
    data_state: dict[str, Any],
    config: dict[str, Any],
    world_size: int,
    loss: float,
) -> None:
    """Write a training checkpoint atomically (temporary file, then rename).

    Args:
        path: the file.
        step: optimizer steps completed.
        models: the unwrapped modules by name (None entries are skipped).
        optimizer: the optimizer.
        data_state: the data stream's ``state_dict()``.
        config: the resolved config as a plain dict.
        world_size: processes of the run.
        loss: last step's loss.
    """
    payload: dict[str, Any] = {
        **PRETRAIN_STATE_FORMAT.header(),
        "step": step,
        "optimizer": optimizer.state_dict(),
        "data": data_state,
        "rng": rng_state(),
        "config": config,
        "world_size": world_size,
        "loss": loss,
    }
    for name, module in models.items():
        if name not in MODEL_PARTS:
            raise InvalidArgument(f"unknown model part {name!r}; expected one of {MODEL_PARTS}")
        if module is not None:
            payload[name] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def complete_kept_checkpoint(checkpoint_dir: Path, step: int, keep_every: int | None) -> Path | None:
    """If step ``step`` is a kept step whose ``step_XXXXXXX.pt`` is missing (the session was killed between
    writing ``latest.pt`` and the kept copy), write it now as a copy of ``latest.pt``, which holds exactly
    that state. Returns the file written, or None.
    """
    if keep_every is None or step < 1 or step % keep_every:
        return None
    kept = checkpoint_dir / periodic_name(step)
    if kept.is_file():
        return None
    atomic_write(kept, lambda tmp: shutil.copyfile(checkpoint_dir / LATEST, tmp))
    return kept


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only=True``) and check its format."""
    state = safe_torch_load(path)
    PRETRAIN_STATE_FORMAT.check(state, path, CheckpointError)
    return state


def restore_models(state: dict[str, Any], models: dict[str, nn.Module | None], source: str) -> None:
    """Load every model part strictly; a part the run has but the checkpoint lacks (or the reverse) fails."""
    for name in MODEL_PARTS:
        module = models.get(name)
        if (module is None) != (name not in state):
            have = "has" if module is not None else "has no"
            raise CheckpointError(
                f"{source}: the run {have} a {name!r} but the checkpoint {'lacks' if module else 'holds'} one "
                f"(was it written with another objective.target?)"
            )
        if module is not None:
            load_strict(module, state[name], f"{source}[{name!r}]")


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value
