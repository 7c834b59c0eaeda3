"""Import of the official V-JEPA / V-JEPA 2 pretraining checkpoints (``.pth.tar`` / ``.pt``).

Official checkpoints hold ``encoder``, ``predictor`` and ``target_encoder`` state dicts whose keys carry
``module.`` (DDP) and ``backbone.`` (multi-mask wrapper) prefixes; bare keys load too. Our module names
match the official ones after those prefixes, so the key map is: strip the prefixes, nothing else. The
architecture is read off the weights (:func:`infer_encoder_config`, :func:`infer_predictor_config`). V-JEPA 2
files have the same layout without position tables (RoPE); some hold an unused ``pos_embed``, which is dropped
and recorded (``meta["ignored_keys"]``). Loading never executes pickled code and is always strict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from vjepa.checkpoint.export import folder_hint, save_pretrained
from vjepa.checkpoint.strict import MODEL_KEYS, Pretrained, build_models, key_listing
from vjepa.io import CheckpointError, safe_torch_load
from vjepa.models.pos_embed import infer_grid
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
    raw = safe_torch_load(path, folder_hint=folder_hint)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict of state dicts, found a {type(raw).__name__}")
    if any(k in raw for k in MODEL_KEYS):
        states = {k: raw[k] for k in MODEL_KEYS if k in raw and raw[k] is not None}
    elif all(isinstance(v, Tensor) for v in raw.values()):
        states = {"target_encoder": raw}  # a bare encoder state dict
    else:
        raise CheckpointError(
            f"{path}: found none of the keys {list(MODEL_KEYS)} and it is not a bare state dict "
            f"(top-level keys: {key_listing(sorted(map(str, raw)))})"
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
    return Pretrained(enc_cfg, pred_cfg, build_models(mapped, enc_cfg, pred_cfg, str(path)), meta)


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
