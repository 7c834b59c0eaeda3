"""Writing Hugging Face V-JEPA 2 folders (``vjepa export --hf``): the inverse of :mod:`vjepa.interop.hf`'s
key map, so ours -> HF -> ours is bit-identical, and a refusal for anything transformers would compute
differently (the message says what and why)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from vjepa.checkpoint import EncoderKey, Pretrained, load_pretrained
from vjepa.interop.hf import (
    CLASSIFIER_PREFIX,
    CONFIG_FILE,
    HF_CLIP_KEYS,
    HF_DEFAULTS,
    MODEL_TYPE,
    POOLER_MLP_RATIO,
    WEIGHTS_FILE,
)
from vjepa.interop.hf_keys import Part, encoder_sources, predictor_sources, probe_sources, to_hf
from vjepa.io import CheckpointError, write_json, write_safetensors
from vjepa.models.registry import EncoderConfig, PredictorConfig
from vjepa.probe.checkpoint import LoadedProbe, ProbeArch, load_probe


def hf_config(
    enc: EncoderConfig, pred: PredictorConfig, probe: ProbeArch | None, class_names: list[str] | None
) -> dict:
    """The config.json of a VJEPA2Model (or, with ``probe``, a VJEPA2ForVideoClassification)."""
    cfg: dict[str, Any] = {
        "architectures": ["VJEPA2ForVideoClassification" if probe else "VJEPA2Model"],
        "model_type": MODEL_TYPE,
        **HF_DEFAULTS,
        "patch_size": enc.patch_size,
        **{hf: getattr(enc, ours) for hf, ours in HF_CLIP_KEYS.items()},
        "tubelet_size": enc.tubelet_size,
        "hidden_size": enc.embed_dim,
        "in_chans": enc.in_chans,
        "num_attention_heads": enc.num_heads,
        "num_hidden_layers": enc.depth,
        "mlp_ratio": enc.mlp_ratio,
        "layer_norm_eps": enc.norm_eps,
        "qkv_bias": enc.qkv_bias,
        "num_pooler_layers": probe.depth - 1 if probe else HF_DEFAULTS["num_pooler_layers"],
        "pred_hidden_size": pred.predictor_embed_dim,
        "pred_num_attention_heads": pred.num_heads,
        "pred_num_hidden_layers": pred.depth,
        "pred_num_mask_tokens": pred.num_mask_tokens,
        "pred_zero_init_mask_tokens": pred.zero_init_mask_tokens,
        "pred_mlp_ratio": pred.mlp_ratio,
        "dtype": "float32",
    }
    if probe is not None:
        names = class_names or [f"LABEL_{i}" for i in range(probe.num_classes)]
        cfg["id2label"] = {str(i): name for i, name in enumerate(names)}
        cfg["label2id"] = {name: i for i, name in enumerate(names)}
    return cfg


def check_exportable(enc: EncoderConfig, pred: PredictorConfig, probe: ProbeArch | None, source: str) -> None:
    """Refuse what transformers would compute differently (the message says what and why)."""
    if enc.positions != "rope":
        raise CheckpointError(f"{source}: a V-JEPA (sin-cos) encoder has no Hugging Face VJEPA2 equivalent")
    for name, ours, theirs in (
        ("predictor width", pred.embed_dim, enc.embed_dim),
        ("predictor LayerNorm eps", pred.norm_eps, enc.norm_eps),
        ("predictor qkv bias", pred.qkv_bias, enc.qkv_bias),
        ("predictor position scheme", pred.positions, enc.positions),
        ("predictor grid", pred.grid, enc.grid),
        ("predictor patch/tubelet", (pred.patch_size, pred.tubelet_size), (enc.patch_size, enc.tubelet_size)),
    ):
        if ours != theirs:
            raise CheckpointError(
                f"{source}: {name} {ours} differs from the encoder's {theirs}; transformers' VJEPA2Config shares one"
            )
    if probe is None:
        return
    problems = []
    if probe.kind != "attentive":
        problems.append(f"a {probe.kind} probe (VJEPA2ForVideoClassification has an attentive pooler)")
    if probe.embed_dim != enc.embed_dim:
        problems.append(f"width {probe.embed_dim} for an encoder of width {enc.embed_dim}")
    if probe.num_heads != enc.num_heads:
        problems.append(f"{probe.num_heads} heads (transformers uses num_attention_heads={enc.num_heads})")
    if probe.norm_eps != enc.norm_eps:
        problems.append(f"LayerNorm eps {probe.norm_eps} (transformers uses layer_norm_eps={enc.norm_eps})")
    if probe.mlp_ratio != POOLER_MLP_RATIO:
        problems.append(f"MLP ratio {probe.mlp_ratio} (transformers' pooler: {POOLER_MLP_RATIO})")
    if problems:
        raise CheckpointError(
            f"{source}: the probe would compute differently in transformers: " + "; ".join(problems)
        )


def export_hf(
    checkpoint: str | Path | Pretrained,
    out_dir: str | Path,
    *,
    probe: str | Path | LoadedProbe | None = None,
    probe_head: int | None = None,
    which: EncoderKey = "target_encoder",
    class_names: list[str] | None = None,
) -> Path:
    """``vjepa export --hf``: our checkpoint (or an official file / HF folder) -> a folder that
    ``VJEPA2Model.from_pretrained`` (with ``probe``: ``VJEPA2ForVideoClassification.from_pretrained``) loads
    with every key, computing what ours computes.

    Args:
        checkpoint: a V-JEPA 2 checkpoint with a predictor (transformers' VJEPA2Model always has one).
        out_dir: the folder to write ``config.json`` and ``model.safetensors`` into.
        probe: a probe folder or official probe file (or a loaded probe) to export as the classifier head.
        probe_head: which probe of an official V-JEPA 2 file's ``classifiers`` list.
        which: ``target_encoder`` (default) or ``encoder``.
        class_names: label names for ``id2label`` (default: the probe's saved ones, else ``LABEL_i``).
    """
    pretrained = checkpoint if isinstance(checkpoint, Pretrained) else load_pretrained(checkpoint)
    source = str(pretrained.meta.get("source", checkpoint))
    encoder = pretrained.encoder(which)
    if pretrained.predictor_config is None:
        raise CheckpointError(
            f"{source}: holds no predictor, and transformers' VJEPA2Model always has one (export a checkpoint "
            f"with its predictor)"
        )
    loaded = load_probe(probe, head=probe_head) if isinstance(probe, (str, Path)) else probe
    arch = loaded.arch if loaded else None
    check_exportable(encoder.config, pretrained.predictor_config, arch, source)
    prefix = CLASSIFIER_PREFIX if loaded else ""
    enc_state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    tensors = to_hf(enc_state, Part(enc_state, partial(encoder_sources, prefix=prefix)))
    pred_state = {k: v.detach().cpu() for k, v in pretrained.predictor.state_dict().items()}
    pred_part = Part(
        pred_state, partial(predictor_sources, prefix=prefix), prefix + "predictor.embeddings.mask_tokens"
    )
    tensors.update(to_hf(pred_state, pred_part))
    if loaded is not None:
        probe_state = {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()}
        probe_state.pop(
            "pooler.cross_attention_block.xattn.proj.weight", None
        )  # never applied (V-JEPA layout)
        probe_state.pop("pooler.cross_attention_block.xattn.proj.bias", None)
        tensors.update(to_hf(probe_state, Part(probe_state, probe_sources)))
        class_names = class_names or loaded.meta.get("class_names")
        if class_names is not None and len(class_names) != loaded.arch.num_classes:
            raise CheckpointError(
                f"{len(class_names)} class names for a probe of {loaded.arch.num_classes} classes"
            )
    config = hf_config(encoder.config, pretrained.predictor_config, arch, class_names)
    out = Path(out_dir)
    flat = {k: v.contiguous() for k, v in tensors.items()}
    write_safetensors(out / WEIGHTS_FILE, flat, {"format": "pt"})  # transformers' own header
    write_json(out / CONFIG_FILE, config)
    return out
