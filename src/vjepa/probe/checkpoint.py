"""Probe weights on disk: our format (a folder with ``model.safetensors`` + ``config.json``) and the
official eval checkpoints: V-JEPA's ``classifier`` (the state dict of a DDP-wrapped ``AttentiveClassifier``,
every key prefixed ``module.``) and V-JEPA 2's ``classifiers`` (a list of them, one per lr x wd setting of the
probe sweep; pick one with ``head``). All load strictly."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import Tensor, nn

from vjepa.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_strict
from vjepa.errors import InvalidArgument, VjepaError
from vjepa.io import (
    PROBE_FORMAT,
    CheckpointError,
    load_safetensors,
    read_json,
    safe_torch_load,
    write_json,
    write_safetensors,
)
from vjepa.probe.attentive import AttentiveClassifier
from vjepa.probe.linear import LinearClassifier

ProbeKind = Literal["attentive", "linear"]


@dataclass(frozen=True)
class ProbeArch:
    """What is needed to rebuild a trained probe.

    Args:
        kind: ``attentive`` (official attentive classifier) or ``linear`` (average pooling + Linear).
        embed_dim: token width D.
        num_classes: C.
        num_heads: attention heads (attentive only; the official evals use the encoder's, 16 for L and H).
        mlp_ratio: pooler MLP factor (attentive only).
        depth: attentive blocks in all: 1 (V-JEPA) or 4 (V-JEPA 2: 3 self-attention blocks, then the
            cross-attention block).
        norm_eps: LayerNorm epsilon of the pooler (official probes 1e-5; Hugging Face classifiers 1e-6).
        xattn_proj: the pooler holds the never-applied ``xattn.proj`` (V-JEPA layout; V-JEPA 2 has none).
        standardize: standardize the pooled feature before the Linear layer (linear only).
    """

    kind: ProbeKind
    embed_dim: int
    num_classes: int
    num_heads: int = 16
    mlp_ratio: float = 4.0
    depth: int = 1
    norm_eps: float = 1e-5
    xattn_proj: bool = True
    standardize: bool = False

    def build(self) -> nn.Module:
        if self.kind == "attentive":
            return AttentiveClassifier(
                self.embed_dim,
                self.num_heads,
                self.num_classes,
                self.mlp_ratio,
                depth=self.depth,
                norm_eps=self.norm_eps,
                unused_proj=self.xattn_proj,
            )
        if self.kind == "linear":
            return LinearClassifier(self.embed_dim, self.num_classes, self.standardize)
        raise InvalidArgument(f"probe kind must be 'attentive' or 'linear', got {self.kind!r}")


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
    config = {"probe": asdict(arch), "meta": dict(meta or {})}
    write_safetensors(out_dir / WEIGHTS_FILE, state, PROBE_FORMAT.metadata())
    write_json(out_dir / CONFIG_FILE, config, PROBE_FORMAT, default=str)
    return out_dir


def load_probe(path: str | Path, *, num_heads: int = 16, head: int | None = None) -> LoadedProbe:
    """Load our probe folder, or an official probe checkpoint (V-JEPA ``*-probe.pth.tar``, V-JEPA 2
    ``evals/*.pt``).

    Args:
        path: our folder (or its ``model.safetensors``), or an official file.
        num_heads: head count for official files (not stored in their weights; 16 for the released probes).
        head: which probe of a V-JEPA 2 file's ``classifiers`` list (needed when it holds several).
    """
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        return _load_ours(path)
    return load_official_probe(path, num_heads=num_heads, head=head)


def official_probe_state(raw: Any, source: str, head: int | None = None) -> dict[str, Tensor]:
    """The ``classifier`` state dict of an official probe checkpoint (V-JEPA 2: entry ``head`` of
    ``classifiers``) with its ``module.`` prefixes stripped (a bare classifier state dict is accepted too)."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{source}: expected a dict, found a {type(raw).__name__}")
    if "classifiers" in raw:
        raw = {"classifier": _select_head(raw["classifiers"], source, head)}
    elif head not in (None, 0):
        raise CheckpointError(
            f"{source}: holds a single probe (no 'classifiers' list); head={head} is invalid"
        )
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


def _select_head(heads: Any, source: str, head: int | None) -> Any:
    if not isinstance(heads, (list, tuple)) or not heads:
        raise CheckpointError(f"{source}: 'classifiers' is not a non-empty list of probe state dicts")
    if head is None:
        if len(heads) > 1:
            raise CheckpointError(
                f"{source}: holds {len(heads)} probes (one per lr x wd setting of the sweep); choose one with "
                f"head=0..{len(heads) - 1} (--probe-head)"
            )
        head = 0
    if not 0 <= head < len(heads):
        raise CheckpointError(
            f"{source}: head={head} is out of range; it holds {len(heads)} probes (0..{len(heads) - 1})"
        )
    return heads[head]


def load_official_probe(path: str | Path, *, num_heads: int = 16, head: int | None = None) -> LoadedProbe:
    """An official attentive probe checkpoint, strictly (every key present, none extra, shapes equal).

    V-JEPA files hold one ``classifier``; V-JEPA 2 files a ``classifiers`` list (``head`` selects one). The
    depth (``pooler.blocks.i``) and the presence of ``xattn.proj`` are read off the keys; LayerNorm eps is the
    official 1e-5.
    """
    raw = safe_torch_load(path)
    many = isinstance(raw, Mapping) and "classifiers" in raw
    source = f"{path}['classifiers'][{head or 0}]" if many else f"{path}['classifier']"
    state = official_probe_state(raw, str(path), head)
    for key in ("pooler.query_tokens", "linear.weight"):
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key!r}; not an attentive probe")
    num_classes, d = state["linear.weight"].shape
    hidden = state.get("pooler.cross_attention_block.mlp.fc1.weight")
    mlp_ratio = hidden.shape[0] / d if hidden is not None else 4.0
    if d % num_heads:
        raise CheckpointError(f"{source}: width {d} is not divisible by num_heads={num_heads}")
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"pooler\.blocks\.(\d+)\.", k))}
    proj = any(k.startswith("pooler.cross_attention_block.xattn.proj.") for k in state)
    arch = ProbeArch("attentive", d, num_classes, num_heads, mlp_ratio, len(blocks) + 1, 1e-5, proj)
    model = arch.build()
    load_strict(model, state, source)
    meta = {"source": str(path), "format": "official"}
    if many:
        meta["head"] = head or 0
    return LoadedProbe(arch, model.eval(), meta)


def _load_ours(path: Path) -> LoadedProbe:
    folder = path if path.is_dir() else path.parent
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for p in (config_path, weights_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: missing; a probe folder holds {WEIGHTS_FILE} and {CONFIG_FILE}")
    config = read_json(config_path, PROBE_FORMAT, CheckpointError)
    try:
        arch = ProbeArch(**config["probe"])
    except (KeyError, TypeError, ValueError, VjepaError) as err:
        raise CheckpointError(f"{config_path}: bad 'probe' entry ({err})") from None
    state = load_safetensors(weights_path)
    model = arch.build()
    load_strict(model, state, str(weights_path))
    return LoadedProbe(arch, model.eval(), {**config.get("meta", {}), "source": str(folder)})
