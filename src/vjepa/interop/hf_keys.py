"""The key map between our modules and Hugging Face's ``VJEPA2Model`` / ``VJEPA2ForVideoClassification``.

Every one of our keys names the Hugging Face key(s) it comes from: usually one (a rename), several for our
fused projections (``attn.qkv`` = HF ``query``, ``key``, ``value`` concatenated along dim 0; the probe's
``xattn.kv`` = ``k_proj``, ``v_proj``), and all our ``mask_tokens.i`` ``[1, 1, d]`` together are HF's one
``mask_tokens`` ``[M, 1, 1, d]``. Reading and writing use the same map, so both directions are strict and exact
(no arithmetic, only copies).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from vjepa.io import CheckpointError

HF_MASK_TOKENS = "predictor.embeddings.mask_tokens"

_BLOCK = {  # our block sub-key -> HF layer sub-keys (encoder and predictor layers)
    "attn.qkv": ("attention.query", "attention.key", "attention.value"),
    "attn.proj": ("attention.proj",),
}
_POOLER_BLOCK = {  # our pooler.blocks.i sub-key -> HF pooler.self_attention_layers.i sub-keys
    "norm1": ("layer_norm1",),
    "norm2": ("layer_norm2",),
    "attn.qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "attn.proj": ("self_attn.out_proj",),
}
_CROSS_BLOCK = {  # our pooler.cross_attention_block sub-key -> HF pooler.cross_attention_layer sub-keys
    "norm1": ("layer_norm1",),
    "norm2": ("layer_norm2",),
    "xattn.q": ("cross_attn.q_proj",),
    "xattn.kv": ("cross_attn.k_proj", "cross_attn.v_proj"),
}
_ENCODER = {
    "patch_embed.proj": "encoder.embeddings.patch_embeddings.proj",
    "norm": "encoder.layernorm",
}
_PREDICTOR = {
    "predictor_embed": "predictor.embeddings.predictor_embeddings",
    "predictor_norm": "predictor.layernorm",
    "predictor_proj": "predictor.proj",
}


def _split(key: str) -> tuple[str, str]:
    """``"blocks.0.attn.qkv.weight"`` -> (``"blocks.0.attn.qkv"``, ``"weight"``)."""
    module, _, leaf = key.rpartition(".")
    return module, leaf


def _sub(table: Mapping[str, tuple[str, ...]], sub: str) -> tuple[str, ...]:
    return table.get(sub, (sub,))


def _model_sources(
    key: str, prefix: str, renames: Mapping[str, str], blocks: str, layers: str
) -> tuple[str, ...]:
    module, leaf = _split(key)
    if module in renames:
        return (f"{prefix}{renames[module]}.{leaf}",)
    m = re.fullmatch(re.escape(blocks) + r"\.(\d+)\.(.+)", module)
    if m is None:
        raise CheckpointError(f"no Hugging Face key for {key!r}")
    i, sub = m.groups()
    return tuple(f"{prefix}{layers}.{i}.{s}.{leaf}" for s in _sub(_BLOCK, sub))


def encoder_sources(key: str, prefix: str = "") -> tuple[str, ...]:
    """The HF keys of our encoder key ``key`` (``prefix``: ``"vjepa2."`` inside a classifier)."""
    return _model_sources(key, prefix, _ENCODER, "blocks", "encoder.layer")


def predictor_sources(key: str, prefix: str = "") -> tuple[str, ...]:
    """The HF keys of our predictor key ``key`` (mask tokens: handled by :func:`to_ours` / :func:`to_hf`)."""
    return _model_sources(key, prefix, _PREDICTOR, "predictor_blocks", "predictor.layer")


def probe_sources(key: str) -> tuple[str, ...]:
    """The HF keys of our attentive-probe key ``key`` (``VJEPA2ForVideoClassification``'s pooler and
    classifier)."""
    if key == "pooler.query_tokens":
        return (key,)
    module, leaf = _split(key)
    if module == "linear":
        return (f"classifier.{leaf}",)
    m = re.fullmatch(r"pooler\.blocks\.(\d+)\.(.+)", module)
    if m is not None:
        i, sub = m.groups()
        return tuple(f"pooler.self_attention_layers.{i}.{s}.{leaf}" for s in _sub(_POOLER_BLOCK, sub))
    if module.startswith("pooler.cross_attention_block."):
        sub = module[len("pooler.cross_attention_block.") :]
        return tuple(f"pooler.cross_attention_layer.{s}.{leaf}" for s in _sub(_CROSS_BLOCK, sub))
    raise CheckpointError(f"no Hugging Face key for probe key {key!r}")


@dataclass(frozen=True)
class Part:
    """One of our modules inside a Hugging Face state dict.

    Args:
        expected: our state dict of the module (names and shapes are what matters).
        sources: our key -> HF keys.
        mask_tokens: the HF key holding all mask tokens (predictors), or None.
    """

    expected: Mapping[str, Tensor]
    sources: Callable[[str], tuple[str, ...]]
    mask_tokens: str | None = None


def to_ours(hf: Mapping[str, Tensor], part: Part, used: set[str], source: str) -> dict[str, Tensor]:
    """Our state dict of ``part`` from the HF tensors; every HF key it reads is added to ``used``."""
    out: dict[str, Tensor] = {}
    tokens = [k for k in part.expected if re.fullmatch(r"mask_tokens\.\d+", k)]
    if tokens:
        stacked = _take(hf, part.mask_tokens or HF_MASK_TOKENS, used, source)  # [M, 1, 1, d]
        if stacked.ndim != 4 or stacked.shape[0] != len(tokens):
            raise CheckpointError(
                f"{source}: {part.mask_tokens!r} has shape {tuple(stacked.shape)}; expected [{len(tokens)}, 1, 1, d]"
            )
        for i in range(len(tokens)):
            out[f"mask_tokens.{i}"] = stacked[i].clone()  # [1, 1, d]
    for key in part.expected:
        if key in out:
            continue
        names = part.sources(key)
        pieces = [_take(hf, k, used, source) for k in names]
        if len({tuple(p.shape[1:]) for p in pieces}) > 1:
            shapes = ", ".join(f"{n!r} {tuple(p.shape)}" for n, p in zip(names, pieces, strict=True))
            raise CheckpointError(f"{source}: the parts of {key!r} have inconsistent shapes: {shapes}")
        out[key] = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)
    return out


def to_hf(ours: Mapping[str, Tensor], part: Part) -> dict[str, Tensor]:
    """The HF tensors of ``part`` from our state dict (fused projections split into equal chunks)."""
    out: dict[str, Tensor] = {}
    tokens = sorted(
        (k for k in ours if re.fullmatch(r"mask_tokens\.\d+", k)), key=lambda k: int(k.split(".")[1])
    )
    if tokens:
        out[part.mask_tokens or HF_MASK_TOKENS] = torch.stack(
            [ours[k] for k in tokens], dim=0
        )  # [M, 1, 1, d]
    for key, value in ours.items():
        if key in tokens:
            continue
        names = part.sources(key)
        for name, piece in zip(names, value.chunk(len(names), dim=0), strict=True):
            out[name] = piece.contiguous()
    return out


def check_all_used(hf_keys: Iterable[str], used: set[str], source: str) -> None:
    """Every HF tensor must have been read: a leftover is an error that names it."""
    left = sorted(set(hf_keys) - used)
    if left:
        shown = ", ".join(repr(k) for k in left[:8]) + (f" (+{len(left) - 8} more)" if len(left) > 8 else "")
        raise CheckpointError(f"{source}: unexpected key(s) that map to no vjepa weight: {shown}")


def _take(hf: Mapping[str, Tensor], key: str, used: set[str], source: str) -> Tensor:
    if key not in hf:
        raise CheckpointError(f"{source}: missing key {key!r}")
    used.add(key)
    return hf[key]
