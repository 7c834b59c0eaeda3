"""Write the V-JEPA 2 parity fixtures with Hugging Face transformers (run once; the tests never import it).

    pip install transformers          # beside torch, without torchvision
    python tests/data/vjepa2/make_fixtures.py

Builds small random V-JEPA 2 models with ``transformers`` (an encoder + predictor ``VJEPA2Model`` and a
``VJEPA2ForVideoClassification``), randomizes every weight (norms and biases included, so that no part of the
computation is trivially zero or one), and writes into this folder:

- ``hf_model/`` and ``hf_classifier/``: the folders ``save_pretrained`` writes (config.json + model.safetensors);
- ``official_pretrain.pt``: the same encoder / predictor weights in the official V-JEPA 2 checkpoint layout
  (``encoder``, ``target_encoder``, ``predictor`` with ``module.backbone.`` prefixes, fused qkv, ``mask_tokens.i``,
  plus the unused ``pos_embed`` some released files hold), converted here with a key map written independently of
  vjepa's;
- ``official_probe.pt``: the classifier's pooler in the official V-JEPA 2 probe layout (``classifiers``: one DDP
  state dict per head; head 0 is the Hugging Face classifier's, head 1 a perturbed copy);
- ``reference.safetensors``: the inputs and the transformers outputs the tests compare against (fp32, CPU):
  encoder outputs on a clip at the config's resolution and on one at another (non-square) size and frame count,
  the ``hidden_states`` transformers returns, predictor outputs for given context / target indices, and the
  classifier logits on both clips.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import VJEPA2Config, VJEPA2ForVideoClassification, VJEPA2Model

HERE = Path(__file__).resolve().parent

CONFIG = dict(
    crop_size=32,
    patch_size=8,
    frames_per_clip=4,
    tubelet_size=2,
    hidden_size=48,  # head_dim 24: RoPE segments of 8 channels (4 frequencies), every channel rotated
    num_attention_heads=2,
    num_hidden_layers=2,
    mlp_ratio=2.5,
    layer_norm_eps=1e-6,
    pred_hidden_size=32,  # head_dim 16: RoPE segments of 4 channels, 4 channels not rotated
    pred_num_attention_heads=2,
    pred_num_hidden_layers=2,
    pred_num_mask_tokens=3,
    pred_mlp_ratio=2.0,
    num_pooler_layers=3,
)
NUM_LABELS = 5


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter ~ N(0, 0.1^2); LayerNorm weights ~ 1 + N(0, 0.1^2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            is_norm_weight = name.endswith("weight") and p.ndim == 1
            p.copy_(noise + 1.0 if is_norm_weight else noise)


def to_official_encoder(hf: dict[str, torch.Tensor], prefix: str, num_tokens: int) -> dict[str, torch.Tensor]:
    """Hugging Face encoder keys -> official ``module.backbone.`` keys (q, k, v fused into qkv)."""
    out = {}
    layer = re.compile(re.escape(prefix) + r"encoder\.layer\.(\d+)\.(.+)")
    for key, value in hf.items():
        if not key.startswith(prefix + "encoder."):
            continue
        m = layer.fullmatch(key)
        if m is None:
            name = {
                f"{prefix}encoder.embeddings.patch_embeddings.proj.weight": "patch_embed.proj.weight",
                f"{prefix}encoder.embeddings.patch_embeddings.proj.bias": "patch_embed.proj.bias",
                f"{prefix}encoder.layernorm.weight": "norm.weight",
                f"{prefix}encoder.layernorm.bias": "norm.bias",
            }[key]
            out["module.backbone." + name] = value
            continue
        i, rest = m.groups()
        if rest.startswith(("attention.query.", "attention.key.", "attention.value.")):
            continue
        rest = rest.replace("attention.proj.", "attn.proj.")
        out[f"module.backbone.blocks.{i}.{rest}"] = value
    for i in range(CONFIG["num_hidden_layers"]):
        for kind in ("weight", "bias"):
            parts = [hf[f"{prefix}encoder.layer.{i}.attention.{n}.{kind}"] for n in ("query", "key", "value")]
            out[f"module.backbone.blocks.{i}.attn.qkv.{kind}"] = torch.cat(parts, 0)
    out["module.backbone.pos_embed"] = torch.zeros(
        1, num_tokens, CONFIG["hidden_size"]
    )  # unused by RoPE models
    return out


def to_official_predictor(hf: dict[str, torch.Tensor], num_tokens: int) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in hf.items():
        if not key.startswith("predictor."):
            continue
        m = re.fullmatch(r"predictor\.layer\.(\d+)\.(.+)", key)
        if m is not None:
            i, rest = m.groups()
            if rest.startswith(("attention.query.", "attention.key.", "attention.value.")):
                continue
            out[f"module.backbone.predictor_blocks.{i}.{rest.replace('attention.proj.', 'attn.proj.')}"] = (
                value
            )
        elif key == "predictor.embeddings.mask_tokens":
            for j in range(value.shape[0]):
                out[f"module.backbone.mask_tokens.{j}"] = value[j].clone()  # [1, 1, d]
        else:
            name = {
                "predictor.embeddings.predictor_embeddings.weight": "predictor_embed.weight",
                "predictor.embeddings.predictor_embeddings.bias": "predictor_embed.bias",
                "predictor.layernorm.weight": "predictor_norm.weight",
                "predictor.layernorm.bias": "predictor_norm.bias",
                "predictor.proj.weight": "predictor_proj.weight",
                "predictor.proj.bias": "predictor_proj.bias",
            }[key]
            out["module.backbone." + name] = value
    for i in range(CONFIG["pred_num_hidden_layers"]):
        for kind in ("weight", "bias"):
            parts = [hf[f"predictor.layer.{i}.attention.{n}.{kind}"] for n in ("query", "key", "value")]
            out[f"module.backbone.predictor_blocks.{i}.attn.qkv.{kind}"] = torch.cat(parts, 0)
    out["module.backbone.predictor_pos_embed"] = torch.zeros(1, num_tokens, CONFIG["pred_hidden_size"])
    return out


def to_official_probe(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face pooler + classifier -> an official V-JEPA 2 probe (DDP ``module.`` prefix)."""
    out = {"module.pooler.query_tokens": hf["pooler.query_tokens"]}
    for kind in ("weight", "bias"):
        out[f"module.linear.{kind}"] = hf[f"classifier.{kind}"]
        c = "pooler.cross_attention_layer."
        out[f"module.pooler.cross_attention_block.norm1.{kind}"] = hf[c + f"layer_norm1.{kind}"]
        out[f"module.pooler.cross_attention_block.norm2.{kind}"] = hf[c + f"layer_norm2.{kind}"]
        out[f"module.pooler.cross_attention_block.xattn.q.{kind}"] = hf[c + f"cross_attn.q_proj.{kind}"]
        out[f"module.pooler.cross_attention_block.xattn.kv.{kind}"] = torch.cat(
            [hf[c + f"cross_attn.k_proj.{kind}"], hf[c + f"cross_attn.v_proj.{kind}"]], 0
        )
        for fc in ("fc1", "fc2"):
            out[f"module.pooler.cross_attention_block.mlp.{fc}.{kind}"] = hf[c + f"mlp.{fc}.{kind}"]
        for i in range(CONFIG["num_pooler_layers"]):
            s, o = f"pooler.self_attention_layers.{i}.", f"module.pooler.blocks.{i}."
            out[o + f"norm1.{kind}"] = hf[s + f"layer_norm1.{kind}"]
            out[o + f"norm2.{kind}"] = hf[s + f"layer_norm2.{kind}"]
            out[o + f"attn.qkv.{kind}"] = torch.cat([hf[s + f"self_attn.{n}_proj.{kind}"] for n in "qkv"], 0)
            out[o + f"attn.proj.{kind}"] = hf[s + f"self_attn.out_proj.{kind}"]
            for fc in ("fc1", "fc2"):
                out[o + f"mlp.{fc}.{kind}"] = hf[s + f"mlp.{fc}.{kind}"]
    return out


def hf_video(clip: torch.Tensor) -> torch.Tensor:
    return clip.permute(0, 2, 1, 3, 4).contiguous()  # ours [B, C, T, H, W] -> HF [B, T, C, H, W]


def main() -> None:
    torch.manual_seed(0)
    config = VJEPA2Config(**CONFIG)
    model = VJEPA2Model(config).eval()
    randomize(model, seed=1)
    model.save_pretrained(HERE / "hf_model")

    cls_config = VJEPA2Config(**CONFIG, num_labels=NUM_LABELS)
    classifier = VJEPA2ForVideoClassification(cls_config).eval()
    randomize(classifier, seed=2)
    classifier.save_pretrained(HERE / "hf_classifier")

    g = torch.Generator().manual_seed(3)
    native = torch.randn(2, 3, 4, 32, 32, generator=g)  # ours: [B, C, T, H, W]; grid 2 x 4 x 4
    other = torch.randn(1, 3, 6, 48, 40, generator=g)  # grid 3 x 6 x 5: another size, frame count, aspect
    n = 2 * 4 * 4
    context = torch.stack([torch.randperm(n, generator=g)[:12].sort().values for _ in range(2)])  # [2, 12]
    target = torch.stack(
        [torch.tensor([i for i in range(n) if i not in set(row.tolist())])[:9] for row in context]
    )  # [2, 9]
    n_other = 3 * 6 * 5
    context_other = torch.randperm(n_other, generator=g)[:40].sort().values[None]  # [1, 40]
    rest = [i for i in range(n_other) if i not in set(context_other[0].tolist())]
    target_other = torch.tensor(rest[::3])[None]  # [1, K]

    out: dict[str, torch.Tensor] = {
        "clip_native": native,
        "clip_other": other,
        "context_native": context,
        "target_native": target,
        "context_other": context_other,
        "target_other": target_other,
    }
    with torch.no_grad():
        for tag, clip in (("native", native), ("other", other)):
            enc = model(hf_video(clip), skip_predictor=True, output_hidden_states=True)
            out[f"encoder_{tag}"] = enc.last_hidden_state
            if tag == "native":
                for i, h in enumerate(enc.hidden_states):
                    out[f"hidden_states_native_{i}"] = h
            ctx, tgt = out[f"context_{tag}"], out[f"target_{tag}"]
            pred = model(hf_video(clip), context_mask=[ctx], target_mask=[tgt])
            out[f"predictor_{tag}"] = pred.predictor_output.last_hidden_state
            out[f"logits_{tag}"] = classifier(hf_video(clip)).logits
            out[f"classifier_encoder_{tag}"] = classifier.vjepa2(
                hf_video(clip), skip_predictor=True
            ).last_hidden_state
    save_file(
        {k: v.contiguous() for k, v in out.items()},
        str(HERE / "reference.safetensors"),
        metadata={"transformers": transformers.__version__, "torch": torch.__version__},
    )

    hf_state = model.state_dict()
    official = {
        "encoder": to_official_encoder(hf_state, "", n),
        "target_encoder": to_official_encoder(hf_state, "", n),
        "predictor": to_official_predictor(hf_state, n),
        "epoch": 3,
    }
    torch.save(official, HERE / "official_pretrain.pt")

    probe = to_official_probe(classifier.state_dict())
    g2 = torch.Generator().manual_seed(4)
    perturbed = {k: v + 0.01 * torch.randn(v.shape, generator=g2) for k, v in probe.items()}
    torch.save({"classifiers": [probe, perturbed], "epoch": 20}, HERE / "official_probe.pt")

    (HERE / "versions.json").write_text(
        json.dumps({"transformers": transformers.__version__, "torch": torch.__version__}, indent=2) + "\n"
    )
    for path in sorted(HERE.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(HERE)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
