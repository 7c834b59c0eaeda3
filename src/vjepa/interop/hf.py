"""Hugging Face ``VJEPA2Model`` / ``VJEPA2ForVideoClassification`` folders, read and written without
``transformers`` (a folder is ``config.json`` + ``model.safetensors``, or safetensors shards with their index).

Reading gives our modules: the encoder (as ``target_encoder``), the predictor when the folder has one, and the
4-block attentive probe of a classifier folder, each loaded strictly through :mod:`vjepa.interop.hf_keys`.
Writing (:mod:`vjepa.interop.hf_export`) is the inverse map, so ours -> HF -> ours is bit-identical.

What differs from the official V-JEPA 2 code, and how it is kept (docs/vjepa2.md):

- transformers reads RoPE positions on the grid of the config.json's clip side (``rope_grid="config"``), the
  official code on the grid of the clip (``"clip"``, our default); outputs differ for clips of another resolution.
- the classifier's pooler uses ``num_attention_heads`` heads and ``layer_norm_eps`` (the official probes: 16
  heads, eps 1e-5), so a probe exports only when it computes exactly what transformers will.
- ``VJEPA2Model``'s predictor uses mask token 1 (``mask_index=1``); pass ``mask_index=1`` to ours to match.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from vjepa.checkpoint import Pretrained, load_strict, save_pretrained
from vjepa.interop.hf_keys import (
    Part,
    check_all_used,
    encoder_sources,
    predictor_sources,
    probe_sources,
    to_ours,
)
from vjepa.io import CheckpointError, load_safetensors
from vjepa.models.encoder import VideoEncoder
from vjepa.models.predictor import Predictor
from vjepa.models.registry import EncoderConfig, PredictorConfig, RopeGrid
from vjepa.probe.checkpoint import LoadedProbe, ProbeArch, save_probe

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
MODEL_TYPE = "vjepa2"
CLASSIFIER_PREFIX = "vjepa2."
POOLER_MLP_RATIO = 4.0  # transformers' VJEPA2 pooler MLPs are always 4x wide

# The clip's keys in a Hugging Face config.json (VJEPA2Config) -> ours: the external format keeps its names, and
# this is the one place they are spelled.
HF_CLIP_KEYS: dict[str, str] = {"crop_size": "resolution", "frames_per_clip": "num_frames"}
_HF_CLIP_DEFAULTS = {"resolution": 256, "num_frames": 64}

# VJEPA2Config's defaults (transformers 5.x), used for keys a config.json leaves out.
HF_DEFAULTS: dict[str, Any] = {
    "patch_size": 16,
    **{hf: _HF_CLIP_DEFAULTS[ours] for hf, ours in HF_CLIP_KEYS.items()},
    "tubelet_size": 2,
    "hidden_size": 1024,
    "in_chans": 3,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "drop_path_rate": 0.0,
    "mlp_ratio": 4.0,
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "attention_probs_dropout_prob": 0.0,
    "hidden_act": "gelu",
    "initializer_range": 0.02,
    "attention_dropout": 0.0,
    "num_pooler_layers": 3,
    "pred_hidden_size": 384,
    "pred_num_attention_heads": 12,
    "pred_num_hidden_layers": 12,
    "pred_num_mask_tokens": 10,
    "pred_zero_init_mask_tokens": True,
    "pred_mlp_ratio": 4.0,
}


@dataclass
class HFCheckpoint:
    """What a Hugging Face V-JEPA 2 folder holds, as our modules.

    Args:
        pretrained: the encoder (``target_encoder``) and the predictor when present.
        probe: the classifier's probe (V-JEPA 2 layout, the folder's heads and eps), or None.
        class_names: ``id2label`` of a classifier, in label order.
        hf_config: the folder's config.json with transformers' defaults filled in.
    """

    pretrained: Pretrained
    probe: LoadedProbe | None = None
    class_names: list[str] | None = None
    hf_config: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- reading


def is_hf_folder(path: str | Path) -> bool:
    """A folder whose ``config.json`` says ``"model_type": "vjepa2"``."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == MODEL_TYPE
    except (json.JSONDecodeError, AttributeError):
        return False


def read_hf_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable JSON config ({err})") from None
    if not isinstance(raw, dict) or raw.get("model_type") != MODEL_TYPE:
        raise CheckpointError(
            f"{path}: not a Hugging Face V-JEPA 2 config (model_type must be {MODEL_TYPE!r})"
        )
    return {**HF_DEFAULTS, **raw}


def read_hf_weights(folder: Path) -> dict[str, Tensor]:
    """All tensors of the folder: ``model.safetensors``, or the shards its index names."""
    files = [folder / WEIGHTS_FILE]
    index = folder / INDEX_FILE
    if not files[0].is_file() and index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index}: not a safetensors index ({err})") from None
        files = [folder / name for name in sorted(set(weight_map.values()))]
    weights: dict[str, Tensor] = {}
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"{file}: missing; a Hugging Face folder holds {WEIGHTS_FILE} (or shards)")
        weights.update(load_safetensors(file))
    return weights


def configs_from_hf(
    cfg: Mapping[str, Any], rope_grid: RopeGrid, source: str
) -> tuple[EncoderConfig, PredictorConfig]:
    """Our encoder and predictor configs for a VJEPA2Config (RoPE; predictor on the encoder's grid)."""
    if cfg["hidden_act"] != "gelu":
        raise CheckpointError(f"{source}: hidden_act {cfg['hidden_act']!r} is not supported (only 'gelu')")
    patch = cfg["patch_size"]
    if isinstance(patch, (list, tuple)):
        if len(set(patch)) != 1:
            raise CheckpointError(f"{source}: non-square patch_size {patch} is not supported")
        patch = patch[0]
    common = dict(
        patch_size=int(patch),
        tubelet_size=int(cfg["tubelet_size"]),
        **{ours: int(cfg[hf]) for hf, ours in HF_CLIP_KEYS.items()},
        qkv_bias=bool(cfg["qkv_bias"]),
        norm_eps=float(cfg["layer_norm_eps"]),
        positions="rope",
        rope_grid=rope_grid,
    )
    try:
        encoder = EncoderConfig(
            embed_dim=int(cfg["hidden_size"]),
            depth=int(cfg["num_hidden_layers"]),
            num_heads=int(cfg["num_attention_heads"]),
            mlp_ratio=float(cfg["mlp_ratio"]),
            in_chans=int(cfg["in_chans"]),
            **common,  # type: ignore[arg-type]
        )
        predictor = PredictorConfig(
            embed_dim=encoder.embed_dim,
            predictor_embed_dim=int(cfg["pred_hidden_size"]),
            depth=int(cfg["pred_num_hidden_layers"]),
            num_heads=int(cfg["pred_num_attention_heads"]),
            num_mask_tokens=int(cfg["pred_num_mask_tokens"]),
            mlp_ratio=float(cfg["pred_mlp_ratio"]),
            zero_init_mask_tokens=bool(cfg["pred_zero_init_mask_tokens"]),
            **common,  # type: ignore[arg-type]
        )
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: unsupported configuration ({err})") from None
    return encoder, predictor


def class_names_of(cfg: Mapping[str, Any], source: str) -> list[str] | None:
    id2label = cfg.get("id2label")
    if not id2label:
        return None
    try:
        labels = {int(k): str(v) for k, v in id2label.items()}
    except (AttributeError, ValueError):
        raise CheckpointError(f"{source}: id2label is not a mapping of label ids to names") from None
    if sorted(labels) != list(range(len(labels))):
        raise CheckpointError(f"{source}: id2label ids are not 0..{len(labels) - 1}")
    return [labels[i] for i in range(len(labels))]


def load_hf(path: str | Path, *, rope_grid: RopeGrid = "clip") -> HFCheckpoint:
    """Read a Hugging Face V-JEPA 2 folder (encoder only, ``VJEPA2Model``, or ``VJEPA2ForVideoClassification``)
    into our modules, strictly: every tensor of the folder maps to one of our weights and back.

    Args:
        path: the folder.
        rope_grid: ``clip`` (official V-JEPA 2 positions; default) or ``config`` (transformers' own).
    """
    folder = Path(path)
    source = str(folder)
    cfg = read_hf_config(folder)
    weights = read_hf_weights(folder)
    classifier = any(k.startswith(("pooler.", "classifier.", CLASSIFIER_PREFIX)) for k in weights)
    prefix = CLASSIFIER_PREFIX if classifier else ""
    enc_cfg, pred_cfg = configs_from_hf(cfg, rope_grid, source)
    used: set[str] = set()
    models: dict[str, nn.Module] = {}
    encoder = VideoEncoder(enc_cfg)
    _load_part(
        encoder, weights, Part(encoder.state_dict(), partial(encoder_sources, prefix=prefix)), used, source
    )
    models["target_encoder"] = encoder.eval()
    has_predictor = any(k.startswith(prefix + "predictor.") for k in weights)
    if has_predictor:
        predictor = Predictor(pred_cfg)
        part = Part(
            predictor.state_dict(),
            partial(predictor_sources, prefix=prefix),
            prefix + "predictor.embeddings.mask_tokens",
        )
        _load_part(predictor, weights, part, used, source)
        models["predictor"] = predictor.eval()
    probe = None
    names = class_names_of(cfg, source)
    if classifier:
        probe = _load_probe(cfg, weights, enc_cfg, used, source)
    check_all_used(weights, used, source)
    meta = {"source": source, "format": "huggingface", "architectures": cfg.get("architectures")}
    pretrained = Pretrained(enc_cfg, pred_cfg if has_predictor else None, models, meta)
    return HFCheckpoint(pretrained, probe, names, cfg)


def _load_part(
    model: nn.Module, weights: Mapping[str, Tensor], part: Part, used: set[str], source: str
) -> None:
    load_strict(model, to_ours(weights, part, used, source), source)


def _load_probe(
    cfg: Mapping[str, Any], weights: Mapping[str, Tensor], enc: EncoderConfig, used: set[str], source: str
) -> LoadedProbe:
    if "classifier.weight" not in weights:
        raise CheckpointError(f"{source}: a classifier folder needs 'classifier.weight'")
    num_classes = int(weights["classifier.weight"].shape[0])
    arch = ProbeArch(
        "attentive",
        enc.embed_dim,
        num_classes,
        num_heads=enc.num_heads,
        mlp_ratio=POOLER_MLP_RATIO,
        depth=int(cfg["num_pooler_layers"]) + 1,
        norm_eps=enc.norm_eps,
        xattn_proj=False,
    )
    model = arch.build()
    _load_part(model, weights, Part(model.state_dict(), probe_sources), used, source)
    return LoadedProbe(arch, model.eval(), {"source": source, "format": "huggingface"})


def convert_hf(src: str | Path, out_dir: str | Path, *, rope_grid: RopeGrid = "clip") -> list[Path]:
    """``vjepa convert`` of a Hugging Face folder: our checkpoint in ``out_dir`` and, for a classifier, our
    probe folder in ``out_dir/probe``. Returns the folders written."""
    loaded = load_hf(src, rope_grid=rope_grid)
    p = loaded.pretrained
    meta = {"converted_from": str(src), "format_of_source": "huggingface"}
    written = [save_pretrained(out_dir, p.models, p.encoder_config, p.predictor_config, meta)]
    if loaded.probe is not None:
        probe_meta = {"converted_from": str(src), "class_names": loaded.class_names}
        written.append(save_probe(Path(out_dir) / "probe", loaded.probe.arch, loaded.probe.model, probe_meta))
    return written
