"""Probe weights on disk: our format (a folder with ``model.safetensors`` + ``config.json``) and the
official eval checkpoints (``classifier`` state dict of a DDP-wrapped ``AttentiveClassifier``, every key
prefixed ``module.``). Both load strictly."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from vjepa.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    atomic_write,
    load_strict,
    safe_torch_load,
)
from vjepa.probe.attentive import AttentiveClassifier
from vjepa.probe.linear import LinearClassifier

ProbeKind = Literal["attentive", "linear"]
PROBE_FORMAT = "vjepa-probe"
PROBE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ProbeArch:
    """What is needed to rebuild a trained probe.

    Args:
        kind: ``attentive`` (official attentive classifier) or ``linear`` (average pooling + Linear).
        embed_dim: token width D.
        num_classes: C.
        num_heads: attention heads (attentive only; the official evals use the encoder's, 16 for L and H).
        mlp_ratio: pooler MLP factor (attentive only).
        standardize: standardize the pooled feature before the Linear layer (linear only).
    """

    kind: ProbeKind
    embed_dim: int
    num_classes: int
    num_heads: int = 16
    mlp_ratio: float = 4.0
    standardize: bool = False

    def build(self) -> nn.Module:
        if self.kind == "attentive":
            return AttentiveClassifier(self.embed_dim, self.num_heads, self.num_classes, self.mlp_ratio)
        if self.kind == "linear":
            return LinearClassifier(self.embed_dim, self.num_classes, self.standardize)
        raise ValueError(f"probe kind must be 'attentive' or 'linear', got {self.kind!r}")


@dataclass
class LoadedProbe:
    """A probe and how it was made.

    Args:
        arch: its architecture.
        model: the module, in eval mode.
        meta: training settings and results saved with it (empty for official files).
    """

    arch: ProbeArch
    model: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)


def save_probe(
    out_dir: str | Path, arch: ProbeArch, model: nn.Module, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``out_dir`` (each atomically)."""
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = {
        "format": PROBE_FORMAT,
        "format_version": PROBE_FORMAT_VERSION,
        "probe": asdict(arch),
        "meta": dict(meta or {}),
    }
    atomic_write(
        out_dir / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata={"format": PROBE_FORMAT})
    )
    atomic_write(
        out_dir / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(config, indent=2, default=str) + "\n")
    )
    return out_dir


def load_probe(path: str | Path, *, num_heads: int = 16) -> LoadedProbe:
    """Load our probe folder, or an official probe checkpoint (``*-probe.pth.tar``).

    Args:
        path: our folder (or its ``model.safetensors``), or an official file.
        num_heads: head count for official files (not stored in their weights; 16 for ViT-L/H probes).
    """
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        return _load_ours(path)
    return load_official_probe(path, num_heads=num_heads)


def official_probe_state(raw: Any, source: str) -> dict[str, Tensor]:
    """The ``classifier`` state dict of an official probe checkpoint with its ``module.`` prefixes stripped
    (a bare classifier state dict is accepted too)."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{source}: expected a dict, found a {type(raw).__name__}")
    state = raw.get("classifier", raw)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"{source}: no 'classifier' state dict (top-level keys: {sorted(map(str, raw))[:8]})"
        )
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = key[len("module.") :] if key.startswith("module.") else key
        if new in out:
            raise CheckpointError(f"{source}: two keys map to {new!r}")
        out[new] = value
    return out


def load_official_probe(path: str | Path, *, num_heads: int = 16) -> LoadedProbe:
    """An official attentive probe checkpoint, strictly (every key present, none extra, shapes equal)."""
    source = f"{path}['classifier']"
    state = official_probe_state(safe_torch_load(path), str(path))
    for key in ("pooler.query_tokens", "linear.weight"):
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key!r}; not an attentive probe")
    num_classes, d = state["linear.weight"].shape
    hidden = state.get("pooler.cross_attention_block.mlp.fc1.weight")
    mlp_ratio = hidden.shape[0] / d if hidden is not None else 4.0
    if d % num_heads:
        raise CheckpointError(f"{source}: width {d} is not divisible by num_heads={num_heads}")
    arch = ProbeArch("attentive", d, num_classes, num_heads, mlp_ratio)
    model = arch.build()
    load_strict(model, state, source)
    return LoadedProbe(arch, model.eval(), {"source": str(path), "format": "official"})


def _load_ours(path: Path) -> LoadedProbe:
    folder = path if path.is_dir() else path.parent
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for p in (config_path, weights_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: missing; a probe folder holds {WEIGHTS_FILE} and {CONFIG_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_path}: not valid JSON ({err})") from None
    if config.get("format") != PROBE_FORMAT or config.get("format_version") != PROBE_FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: not a {PROBE_FORMAT} v{PROBE_FORMAT_VERSION} config")
    try:
        arch = ProbeArch(**config["probe"])
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{config_path}: bad 'probe' entry ({err})") from None
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({err})") from None
    model = arch.build()
    load_strict(model, state, str(weights_path))
    return LoadedProbe(arch, model.eval(), {**config.get("meta", {}), "source": str(folder)})
