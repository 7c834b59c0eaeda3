"""Starting a run from another run's weights: V-JEPA 2's cooldown stage (official ``is_anneal`` with
``anneal_ckpt``) loads the encoder, target encoder and predictor of the main stage, then trains with a fresh
optimizer and a fresh schedule (``model.init_from``).

RoPE models carry no position table, so the weights move unchanged to longer clips and higher resolutions
(16 -> 64 frames, 256 -> 384 pixels); sin-cos models hold their table as a buffer and must keep their grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from vjepa.checkpoint import load_pretrained, load_strict
from vjepa.io import PRETRAIN_STATE_FORMAT, CheckpointError, safe_torch_load
from vjepa.pretrain.state import FORMAT, MODEL_PARTS


def source_states(path: str | Path) -> dict[str, Mapping[str, Tensor]]:
    """The model state dicts of ``path``: one of our training checkpoints (``latest.pt``), or any checkpoint
    :func:`vjepa.checkpoint.load_pretrained` reads (our folder, an official file, a Hugging Face folder)."""
    path = Path(path)
    if path.is_file() and path.suffix in (".pt", ".tar"):
        raw = safe_torch_load(path)
        if isinstance(raw, dict) and raw.get("format") == FORMAT:
            PRETRAIN_STATE_FORMAT.check(raw, path, CheckpointError)  # a version this vjepa reads
            return {name: raw[name] for name in MODEL_PARTS if name in raw}
    pretrained = load_pretrained(path)
    return {name: module.state_dict() for name, module in pretrained.models.items()}


def warm_start(models: Mapping[str, nn.Module | None], path: str | Path) -> list[str]:
    """Load every model of the run from ``path``, strictly. A file with only one of ``encoder`` /
    ``target_encoder`` (an export of the EMA weights, a Hugging Face folder) gives it to both.

    Returns:
        One line per model saying where its weights came from.
    """
    states = dict(source_states(path))
    origin = {name: name for name in states}
    for a, b in (("encoder", "target_encoder"), ("target_encoder", "encoder")):
        if a not in states and b in states:
            states[a], origin[a] = states[b], b
    report = []
    for name, module in models.items():
        if module is None:
            continue
        if name not in states:
            raise CheckpointError(f"{path}: holds no {name!r} to start the run's {name} from")
        load_strict(module, states[name], f"{path}[{name!r}]")
        report.append(f"{name} <- {path}[{origin[name]!r}]")
    return report
