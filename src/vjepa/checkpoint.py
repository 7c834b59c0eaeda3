"""Reading and writing model weights: the official ``.pth.tar`` layout, and our own format
(``model.safetensors`` + ``config.json``). Loading never executes pickled code and is always strict.

Official checkpoints hold ``encoder``, ``predictor`` and ``target_encoder`` state dicts whose keys carry
``module.`` (DDP) and ``backbone.`` (multi-mask wrapper) prefixes; bare keys load too. Our module names
match the official ones after those prefixes, so the key map is: strip the prefixes, nothing else.

Every tensor is checked against the model before it is loaded: shape, a floating-point dtype
(`FLOAT_DTYPES`; integer or boolean tensors are refused, never cast) and finite values (a NaN or an
infinity is refused naming the tensor). A pretraining run folder (``config.yaml`` + ``export/``) is
accepted wherever a checkpoint is: its export is loaded, and named. V-JEPA 2
files have the same layout without position tables (RoPE); some hold an unused ``pos_embed``, which is dropped
and recorded (``meta["ignored_keys"]``). Hugging Face folders are read by :mod:`vjepa.interop.hf`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vjepa.errors import InvalidArgument, VjepaError, shown
from vjepa.io import (
    EXPORT_FORMAT,
    CheckpointError,
    load_safetensors,
    read_json,
    safe_torch_load,
    write_json,
    write_safetensors,
)
from vjepa.models.encoder import VideoEncoder
from vjepa.models.pos_embed import infer_grid
from vjepa.models.predictor import Predictor
from vjepa.models.registry import (
    MODEL_SIZES,
    VJEPA2_MASK_TOKENS,
    VJEPA2_MODELS,
    VJEPA2_PREDICTOR_HEADS,
    EncoderConfig,
    PositionScheme,
    PredictorConfig,
    size_name_of,
)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MODEL_KEYS = ("encoder", "target_encoder", "predictor")
EncoderKey = Literal["target_encoder", "encoder"]
# dtypes a model's floating-point weights may be stored in (they are cast to the model's dtype on load).
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# Files of a pretraining run folder (see vjepa.pretrain.rundir; repeated here so that loading a model does
# not import the training code).
RUN_CONFIG_FILE = "config.yaml"
RUN_EXPORT_DIR = "export"
PositionChoice = Literal["auto", "sincos", "rope"]
VJEPA2_DEFAULT_SIZE = 256  # clip side recorded for official V-JEPA 2 files (their weights do not say it)


# ------------------------------------------------------------------------------------------------ key map

_WRAPPER_PREFIXES = ("module.", "backbone.")


def official_key(key: str) -> str:
    """The key map from the official layout to ours: drop leading ``module.`` / ``backbone.`` prefixes."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def map_official_state(state: Mapping[str, Any], source: str) -> dict[str, Tensor]:
    """Apply :func:`official_key` to every key; two keys that map to one, or a non-tensor value, fail."""
    mapped: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        new = official_key(key)
        if new in mapped:
            raise CheckpointError(f"{source}: keys {origin[new]!r} and {key!r} both map to {new!r}")
        mapped[new], origin[new] = value, key
    return mapped


def check_state(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Strict comparison of ``state`` against ``model.state_dict()``: every missing key, unexpected key and
    shape mismatch is listed in one error."""
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problems.append(f"missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {_listing(unexpected)}")
    for key, value in state.items():
        if key in expected:
            problems += _tensor_problems(key, value, expected[key])
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))


def _tensor_problems(key: str, value: Tensor, expected: Tensor) -> list[str]:
    """What is wrong with one tensor: its shape, its dtype, non-finite values (checked in that order)."""
    if tuple(value.shape) != tuple(expected.shape):
        return [f"wrong shape for {key!r}: checkpoint {tuple(value.shape)}, model {tuple(expected.shape)}"]
    if not expected.is_floating_point():
        if value.dtype != expected.dtype:
            return [f"{key!r} has dtype {value.dtype}; the model holds {expected.dtype}"]
        return []
    return _value_problems(key, value)


def _value_problems(key: str, value: Tensor) -> list[str]:
    """A floating-point tensor's dtype and non-finite values."""
    if value.dtype not in FLOAT_DTYPES:
        return [
            f"{key!r} has dtype {value.dtype}, not a floating-point type (float32, bfloat16, float16, "
            f"float64): refused rather than cast"
        ]
    bad = value.numel() - int(torch.isfinite(value).sum())
    if bad:
        return [f"{key!r} holds {bad} non-finite value(s) (NaN or infinity) of {value.numel()}"]
    return []


def load_strict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    check_state(model, state, source)
    model.load_state_dict(state, strict=True)


def _listing(keys: list[str], most: int = 8) -> str:
    shown = ", ".join(repr(k) for k in keys[:most])
    return shown + (f" (+{len(keys) - most} more)" if len(keys) > most else "")


# ------------------------------------------------------------------------------------ architecture inference


def infer_encoder_config(
    state: Mapping[str, Tensor],
    *,
    num_heads: int | None = None,
    source: str = "checkpoint",
    positions: PositionScheme = "sincos",
    resolution: int | None = None,
) -> EncoderConfig:
    """Read the encoder architecture off its (already key-mapped) weights.

    Width, input channels, patch and tubelet sizes come from the patch embedding, depth from the block
    indices, MLP ratio from ``fc1``, and frames, resolution and table layout from the position table. The
    head count is not in the weights: it comes from ``num_heads`` or from the named size with this width and
    depth (V-JEPA 2's giant: 22). RoPE encoders (``positions="rope"``) have no table: their clip size is
    ``resolution`` (default 256) x 16 frames, which only matters for ``rope_grid="config"`` and exports.
    """
    weight = _need(state, "patch_embed.proj.weight", source)
    if weight.ndim != 5:
        raise CheckpointError(
            f"{source}: patch_embed.proj.weight has shape {tuple(weight.shape)}; a video encoder has a "
            f"Conv3d tubelet embedding [D, C, t, p, p]"
        )
    d, in_chans, tubelet, patch, patch_w = weight.shape
    if patch != patch_w:
        raise CheckpointError(f"{source}: non-square patches {patch}x{patch_w} are not supported")
    depth = _count_blocks(state, "blocks.", source)
    hidden = _need(state, "blocks.0.mlp.fc1.weight", source).shape[0]
    if positions == "rope":
        frames, size, uniform_power = 16, resolution or VJEPA2_DEFAULT_SIZE, True
    else:
        grid, uniform_power = _grid_of(_need(state, "pos_embed", source), source, "pos_embed")
        frames, size = grid.depth * tubelet, grid.height * patch
    heads = _heads(num_heads, d, depth, source, rope=positions == "rope")
    named = size_name_of(d, depth)
    mlp_ratio = (
        MODEL_SIZES[named].mlp_ratio
        if named and int(d * MODEL_SIZES[named].mlp_ratio) == hidden
        else hidden / d
    )
    return EncoderConfig(
        embed_dim=d,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        patch_size=patch,
        tubelet_size=tubelet,
        num_frames=frames,
        resolution=size,
        in_chans=in_chans,
        uniform_power=uniform_power,
        positions=positions,
    )


def infer_predictor_config(
    state: Mapping[str, Tensor],
    encoder: EncoderConfig,
    *,
    num_heads: int | None = None,
    source: str = "checkpoint",
) -> PredictorConfig:
    """Read the predictor architecture off its weights; heads default to the encoder's (as the official
    V-JEPA trainer builds it), or 12 for RoPE (the released V-JEPA 2 predictors)."""
    embed = _need(state, "predictor_embed.weight", source)  # [d, D]
    d, width = embed.shape
    if width != encoder.embed_dim:
        raise CheckpointError(
            f"{source}: predictor_embed takes width {width}, but the encoder's width is {encoder.embed_dim}"
        )
    depth = _count_blocks(state, "predictor_blocks.", source)
    hidden = _need(state, "predictor_blocks.0.mlp.fc1.weight", source).shape[0]
    num_tokens = sum(1 for k in state if re.fullmatch(r"mask_tokens\.\d+", k))
    if num_tokens == 0:
        raise CheckpointError(f"{source}: the predictor has no mask_tokens.* entries")
    rope = encoder.positions == "rope"
    if rope:  # no table: the encoder's clip size
        frames, size, uniform_power = encoder.num_frames, encoder.resolution, encoder.uniform_power
    else:
        key = "predictor_pos_embed"
        grid, uniform_power = _grid_of(_need(state, key, source), source, key)
        frames, size = grid.depth * encoder.tubelet_size, grid.height * encoder.patch_size
    return PredictorConfig(
        embed_dim=encoder.embed_dim,
        predictor_embed_dim=d,
        depth=depth,
        num_heads=num_heads or (VJEPA2_PREDICTOR_HEADS if rope else encoder.num_heads),
        num_mask_tokens=num_tokens,
        mlp_ratio=hidden / d,
        patch_size=encoder.patch_size,
        tubelet_size=encoder.tubelet_size,
        num_frames=frames,
        resolution=size,
        uniform_power=uniform_power,
        qkv_bias=encoder.qkv_bias,
        norm_eps=encoder.norm_eps,
        positions=encoder.positions,
        rope_grid=encoder.rope_grid,
    )


def _need(state: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key!r}, needed to infer the architecture")
    return state[key]


def _count_blocks(state: Mapping[str, Tensor], prefix: str, source: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if not found:
        raise CheckpointError(f"{source}: no {prefix}N.* entries")
    depth = max(found) + 1
    if found != set(range(depth)):
        raise CheckpointError(
            f"{source}: missing block(s) {sorted(set(range(depth)) - found)} under {prefix}"
        )
    return depth


def _grid_of(table: Tensor, source: str, key: str):
    inferred = infer_grid(table)
    if inferred is None:
        raise CheckpointError(
            f"{source}: {key} of shape {tuple(table.shape)} is not a 3D sin-cos table, so the clip size "
            f"cannot be inferred (a V-JEPA 2 checkpoint with an unused {key}? convert it once with "
            f"`vjepa convert FILE OUT_DIR --positions rope`, or load it with positions='rope')"
        )
    grid, uniform_power = inferred
    if grid.height != grid.width:
        raise CheckpointError(f"{source}: {key} is laid out on a non-square grid {grid.as_tuple()}")
    return grid, uniform_power


def _heads(num_heads: int | None, d: int, depth: int, source: str, rope: bool = False) -> int:
    if num_heads is not None:
        return num_heads
    named = size_name_of(d, depth)
    if named is None:
        raise CheckpointError(
            f"{source}: width {d} and depth {depth} match no named size, and the head count is not stored in "
            f"weights; pass num_heads (--num-heads)"
        )
    if rope:  # the V-JEPA 2 model of this size (its giant has 22 heads)
        preset = next((p for p in VJEPA2_MODELS.values() if p.size == named and p.num_heads), None)
        if preset is not None:
            return preset.num_heads  # type: ignore[return-value]
    return MODEL_SIZES[named].num_heads


# ------------------------------------------------------------------------------------------------- loading


@dataclass
class Pretrained:
    """The models of a pretraining checkpoint (those it holds), with their configs.

    Args:
        encoder_config: architecture of both encoders.
        predictor_config: architecture of the predictor, or None when the checkpoint holds none.
        models: ``encoder`` / ``target_encoder`` / ``predictor`` present in the file, loaded strictly.
        meta: anything else worth keeping (source file, epoch, format).
    """

    encoder_config: EncoderConfig
    predictor_config: PredictorConfig | None
    models: dict[str, nn.Module]
    meta: dict[str, Any] = field(default_factory=dict)

    def encoder(self, which: EncoderKey = "target_encoder") -> VideoEncoder:
        """The chosen encoder; ``target_encoder`` (the EMA weights) is what the paper evaluates."""
        if which not in MODEL_KEYS[:2]:
            raise InvalidArgument(f"which must be 'target_encoder' or 'encoder', got {which!r}")
        if which not in self.models:
            raise CheckpointError(
                f"{self.meta.get('source', 'checkpoint')} holds no {which!r}; it has {sorted(self.models)}"
            )
        return self.models[which]  # type: ignore[return-value]

    @property
    def predictor(self) -> Predictor:
        if "predictor" not in self.models:
            raise CheckpointError(f"{self.meta.get('source', 'checkpoint')} holds no predictor")
        return self.models["predictor"]  # type: ignore[return-value]


def load_pretrained(
    path: str | Path, *, num_heads: int | None = None, positions: PositionChoice = "auto"
) -> Pretrained:
    """Load a checkpoint of any format: an official V-JEPA / V-JEPA 2 ``.pth.tar``/``.pt`` (or a bare
    encoder state dict), our directory / ``model.safetensors`` with its ``config.json``, or a Hugging Face
    V-JEPA 2 folder (``config.json`` with ``"model_type": "vjepa2"``; its encoder is the ``target_encoder``).

    Args:
        path: the file or the directory.
        num_heads: the head count, needed for official weights whose size is not a named one.
        positions: for official files: ``auto`` (RoPE when the encoder has no ``pos_embed``), ``sincos``
            (V-JEPA) or ``rope`` (V-JEPA 2, also when the file holds an unused ``pos_embed``).
    """
    path = Path(path)
    export = run_folder_export(path)
    if export is not None:
        _announce(f"{shown(path)} is a pretraining run folder: loading its export {shown(export)}")
        loaded = _load_ours(export)
        loaded.meta["run_dir"] = str(path)
        return loaded
    if path.is_dir():
        # Here, not at the top: vjepa.interop.hf builds on this module (Pretrained, load_strict).
        from vjepa.interop.hf import is_hf_folder, load_hf

        if is_hf_folder(path):
            return load_hf(path).pretrained
    if path.is_dir() or path.suffix == ".safetensors":
        return _load_ours(path)
    return load_official(path, num_heads=num_heads, positions=positions)


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a pretraining run folder (it holds the run's ``config.yaml``)."""
    path = Path(path)
    return path.is_dir() and (path / RUN_CONFIG_FILE).is_file() and not (path / WEIGHTS_FILE).exists()


def run_folder_export(path: str | Path) -> Path | None:
    """The export of a pretraining run folder; None when ``path`` is not a run folder.

    Raises:
        CheckpointError: a run folder without a complete export (the run has not finished, or was killed
            while exporting), naming its latest training checkpoint, which loads too.
    """
    path = Path(path)
    if not is_run_folder(path):
        return None
    export = path / RUN_EXPORT_DIR
    if (export / WEIGHTS_FILE).is_file() and (export / CONFIG_FILE).is_file():
        return export
    latest = path / "checkpoints" / "latest.pt"
    hint = (
        f"; pass its latest training checkpoint {shown(latest)} instead, or finish the run with "
        f"'vjepa pretrain --resume --run-dir {shown(path)}'"
        if latest.is_file()
        else "; it holds no checkpoint yet"
    )
    raise CheckpointError(
        f"{shown(path)} is a pretraining run folder without a complete export ({RUN_EXPORT_DIR}/"
        f"{WEIGHTS_FILE} and {CONFIG_FILE}){hint}"
    )


def check_clip_fits(
    config: EncoderConfig,
    num_frames: int,
    resolution: int,
    names: tuple[str, str],
    source: str = "the encoder",
) -> None:
    """Refuse a clip that does not split into whole tubelets and patches of the encoder (the strided patch
    embedding would silently drop the remainder).

    Args:
        config: the encoder's architecture.
        num_frames: clip frames.
        resolution: clip side in pixels.
        names: how the user set ``num_frames`` and ``resolution`` (config keys or CLI options), for the message.
        source: the checkpoint, for the message.
    """
    if num_frames % config.tubelet_size:
        raise VjepaError(
            f"{names[0]} {num_frames} is not a multiple of the tubelet size {config.tubelet_size} of {shown(source)}"
        )
    if resolution % config.patch_size:
        raise VjepaError(
            f"{names[1]} {resolution} is not a multiple of the patch size {config.patch_size} of {shown(source)}"
        )


def _folder_hint(path: Path) -> str:
    if is_run_folder(path):
        return f" (a pretraining run folder: its models are in {shown(path / RUN_EXPORT_DIR)})"
    if (path / WEIGHTS_FILE).is_file():
        return " (a vjepa checkpoint folder, already in vjepa's format: load it as it is)"
    return ""


def _announce(message: str) -> None:
    """Print a note on stderr, from rank 0 only."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        print(message, file=sys.stderr, flush=True)


def load_encoder(
    path: str | Path, which: EncoderKey = "target_encoder", *, num_heads: int | None = None
) -> VideoEncoder:
    """The encoder of a checkpoint, in eval mode: ``target_encoder`` (default, as the paper) or ``encoder``."""
    return load_pretrained(path, num_heads=num_heads).encoder(which).eval()


def load_official(
    path: str | Path,
    *,
    num_heads: int | None = None,
    positions: PositionChoice = "auto",
    pred_num_heads: int | None = None,
    resolution: int | None = None,
) -> Pretrained:
    """Load an official V-JEPA or V-JEPA 2 pretraining checkpoint (or a bare encoder state dict) into our
    modules, strictly.

    Args:
        path: the file.
        num_heads: encoder heads for sizes that are not named ones.
        positions: see :func:`load_pretrained`.
        pred_num_heads: predictor heads (default: the encoder's for V-JEPA, 12 for V-JEPA 2).
        resolution: clip side recorded for V-JEPA 2 files (default 256; 384 for vitg-384).
    """
    raw = safe_torch_load(path, folder_hint=_folder_hint)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict of state dicts, found a {type(raw).__name__}")
    if any(k in raw for k in MODEL_KEYS):
        states = {k: raw[k] for k in MODEL_KEYS if k in raw and raw[k] is not None}
    elif all(isinstance(v, Tensor) for v in raw.values()):
        states = {"target_encoder": raw}  # a bare encoder state dict
    else:
        raise CheckpointError(
            f"{path}: found none of the keys {list(MODEL_KEYS)} and it is not a bare state dict "
            f"(top-level keys: {_listing(sorted(map(str, raw)))})"
        )
    mapped = {
        k: map_official_state(_as_mapping(v, f"{path}[{k!r}]"), f"{path}[{k!r}]") for k, v in states.items()
    }
    first = "target_encoder" if "target_encoder" in mapped else "encoder"
    if first not in mapped:
        raise CheckpointError(f"{path}: holds a predictor but no encoder")
    scheme = resolve_positions(mapped, first, positions, str(path))
    ignored = _drop_unused_tables(mapped) if scheme == "rope" else []
    enc_cfg = infer_encoder_config(
        mapped[first],
        num_heads=num_heads,
        source=f"{path}[{first!r}]",
        positions=scheme,
        resolution=resolution,
    )
    pred_cfg = None
    if "predictor" in mapped:
        pred_cfg = infer_predictor_config(
            mapped["predictor"], enc_cfg, num_heads=pred_num_heads, source=f"{path}['predictor']"
        )
    meta: dict[str, Any] = {"source": str(path), "format": "official", "positions": scheme}
    if ignored:
        meta["ignored_keys"] = ignored
    for key in ("epoch", "batch_size", "world_size", "lr"):
        if isinstance(raw.get(key), (int, float)):
            meta[key] = raw[key]
    return Pretrained(enc_cfg, pred_cfg, _build_all(mapped, enc_cfg, pred_cfg, str(path)), meta)


def resolve_positions(
    mapped: Mapping[str, Mapping[str, Tensor]], first: str, positions: PositionChoice, source: str
) -> PositionScheme:
    """The position scheme of an official file: as asked, or ``auto``: RoPE when the encoder holds no
    ``pos_embed``. A file with a ``pos_embed`` and a predictor with V-JEPA 2's 10 mask tokens is ambiguous
    (released V-JEPA 2 files may hold an unused table) and must be told."""
    if positions != "auto":
        return positions
    if "pos_embed" not in mapped[first]:
        return "rope"
    tokens = sum(1 for k in mapped.get("predictor", {}) if re.fullmatch(r"mask_tokens\.\d+", k))
    if tokens == VJEPA2_MASK_TOKENS:
        raise CheckpointError(
            f"{source}: holds a pos_embed and a predictor with {tokens} mask tokens, like a V-JEPA 2 checkpoint "
            f"whose pos_embed is unused; say which it is: `vjepa convert FILE OUT_DIR --positions rope` (V-JEPA 2) "
            f"or `--positions sincos` (V-JEPA), or positions= in Python"
        )
    return "sincos"


def _drop_unused_tables(mapped: dict[str, dict[str, Tensor]]) -> list[str]:
    """Remove the position tables a RoPE model does not use; returns the removed ``model.key`` names."""
    dropped = []
    for model, state in mapped.items():
        key = "predictor_pos_embed" if model == "predictor" else "pos_embed"
        if key in state:
            del state[key]
            dropped.append(f"{model}.{key}")
    return dropped


def _as_mapping(value: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{source}: expected a state dict, found a {type(value).__name__}")
    return value


def _build_all(
    states: Mapping[str, Mapping[str, Tensor]],
    enc_cfg: EncoderConfig,
    pred_cfg: PredictorConfig | None,
    source: str,
) -> dict[str, nn.Module]:
    for key, state in states.items():  # refuse bad values before building anything
        problems = [p for name, value in state.items() for p in _value_problems(name, value)]
        if problems:
            raise CheckpointError(f"{source}[{key!r}]: " + "; ".join(problems[:8]))
    models: dict[str, nn.Module] = {}
    for key, state in states.items():
        model: nn.Module = Predictor(pred_cfg) if key == "predictor" else VideoEncoder(enc_cfg)  # type: ignore[arg-type]
        load_strict(model, state, f"{source}[{key!r}]")
        models[key] = model
    return models


def _load_ours(path: Path) -> Pretrained:
    folder = path if path.is_dir() else path.parent
    weights_path = folder / WEIGHTS_FILE if path.is_dir() else path
    config_path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"{shown(path)}: no such checkpoint file or folder")
    for p in (weights_path, config_path):
        if not p.is_file():
            raise CheckpointError(
                f"{shown(p)}: missing; a vjepa checkpoint is a folder with {WEIGHTS_FILE} and {CONFIG_FILE}"
            )
    config = read_json(config_path, EXPORT_FORMAT, CheckpointError)
    try:
        enc_cfg = EncoderConfig.from_dict(config["encoder"])
        pred_cfg = PredictorConfig.from_dict(config["predictor"]) if config.get("predictor") else None
    except (KeyError, TypeError, ValueError, VjepaError) as err:
        raise CheckpointError(f"{config_path}: bad model config ({err})") from None
    flat = load_safetensors(weights_path)
    states: dict[str, dict[str, Tensor]] = {}
    for key, value in flat.items():
        model_key, _, name = key.partition(".")
        if model_key not in MODEL_KEYS or not name:
            raise CheckpointError(f"{weights_path}: unexpected tensor {key!r} (expected <model>.<name>)")
        states.setdefault(model_key, {})[name] = value
    if "predictor" in states and pred_cfg is None:
        raise CheckpointError(f"{config_path}: the weights hold a predictor but the config describes none")
    models = _build_all(states, enc_cfg, pred_cfg, str(weights_path))
    return Pretrained(
        enc_cfg, pred_cfg, models, {**config.get("meta", {}), "source": str(folder), "format": "vjepa"}
    )


# ------------------------------------------------------------------------------------------------- saving


def save_pretrained(
    out_dir: str | Path,
    models: Mapping[str, nn.Module],
    encoder_config: EncoderConfig,
    predictor_config: PredictorConfig | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``models`` (any of encoder / target_encoder / predictor) as ``model.safetensors`` plus
    ``config.json`` into ``out_dir``; each file is written atomically."""
    unknown = set(models) - set(MODEL_KEYS)
    if unknown:
        raise InvalidArgument(f"unknown model name(s) {sorted(unknown)}; allowed: {list(MODEL_KEYS)}")
    if "predictor" in models and predictor_config is None:
        raise InvalidArgument("saving a predictor needs its predictor_config")
    out_dir = Path(out_dir)
    flat = {
        f"{name}.{key}": value.detach().to("cpu").contiguous()
        for name, model in models.items()
        for key, value in model.state_dict().items()
    }
    config = {
        "encoder": encoder_config.to_dict(),
        "predictor": predictor_config.to_dict() if predictor_config else None,
        "models": sorted(models),
        "meta": dict(meta or {}),
    }
    write_safetensors(out_dir / WEIGHTS_FILE, flat, EXPORT_FORMAT.metadata())
    write_json(out_dir / CONFIG_FILE, config, EXPORT_FORMAT)
    return out_dir


def convert_official(
    src: str | Path,
    out_dir: str | Path,
    *,
    num_heads: int | None = None,
    positions: PositionChoice = "auto",
    pred_num_heads: int | None = None,
    resolution: int | None = None,
) -> Path:
    """``vjepa convert``: an official checkpoint -> our format (every model it holds, exact weights)."""
    loaded = load_official(
        src, num_heads=num_heads, positions=positions, pred_num_heads=pred_num_heads, resolution=resolution
    )
    meta = {k: v for k, v in loaded.meta.items() if k != "format"}
    meta["converted_from"] = meta.pop("source")
    return save_pretrained(out_dir, loaded.models, loaded.encoder_config, loaded.predictor_config, meta)
