"""By hand, with transformers installed (``pip install -e '.[hf]'``, never needed by the tests or at run time):
check that folders written by ``vjepa export --hf`` load in transformers with every key and compute what vjepa
computes.

    python tests/data/vjepa2/check_with_transformers.py

1. The committed Hugging Face fixtures -> ``vjepa convert`` -> ``vjepa export --hf`` -> transformers: loading info
   (missing / unexpected / mismatched keys) and the outputs against ``reference.safetensors``.
2. A model made by vjepa (random V-JEPA 2 encoder, predictor and 4-block probe with transformers' heads and eps)
   -> ``export_hf`` -> transformers, outputs compared with vjepa's on the same clip (at the native resolution and,
   with ``rope_grid="config"``, at another one).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import VJEPA2ForVideoClassification, VJEPA2Model

from vjepa.checkpoint import save_pretrained
from vjepa.interop.hf_export import export_hf
from vjepa.models import VideoEncoder, build_predictor
from vjepa.models.registry import EncoderConfig
from vjepa.models.tokens import gather_tokens
from vjepa.probe.checkpoint import LoadedProbe, ProbeArch

HERE = Path(__file__).resolve().parent


def hf(clip: torch.Tensor) -> torch.Tensor:
    return clip.permute(0, 2, 1, 3, 4)  # [B, C, T, H, W] -> [B, T, C, H, W]


def vjepa(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "vjepa", *args], check=True, capture_output=True)


def strict(info: dict) -> bool:
    return not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"))


def check_fixtures(tmp: Path) -> None:
    ref = load_file(HERE / "reference.safetensors")
    vjepa("convert", str(HERE / "hf_model"), str(tmp / "model"))
    vjepa("export", str(tmp / "model"), str(tmp / "model_hf"), "--hf")
    vjepa("convert", str(HERE / "hf_classifier"), str(tmp / "cls"))
    vjepa("export", str(tmp / "cls"), str(tmp / "cls_hf"), "--hf", "--probe", str(tmp / "cls" / "probe"))
    model, info = VJEPA2Model.from_pretrained(tmp / "model_hf", output_loading_info=True)
    classifier, cls_info = VJEPA2ForVideoClassification.from_pretrained(
        tmp / "cls_hf", output_loading_info=True
    )
    print(
        f"fixtures: VJEPA2Model strict load: {strict(info)}; VJEPA2ForVideoClassification: {strict(cls_info)}"
    )
    with torch.no_grad():
        for tag in ("native", "other"):
            clip, ctx, tgt = ref[f"clip_{tag}"], ref[f"context_{tag}"], ref[f"target_{tag}"]
            out = model.eval()(hf(clip), context_mask=[ctx], target_mask=[tgt])
            enc = (out.last_hidden_state - ref[f"encoder_{tag}"]).abs().max().item()
            pred = (out.predictor_output.last_hidden_state - ref[f"predictor_{tag}"]).abs().max().item()
            logits = (classifier.eval()(hf(clip)).logits - ref[f"logits_{tag}"]).abs().max().item()
            print(f"  {tag}: max |diff| encoder {enc:.2e}, predictor {pred:.2e}, logits {logits:.2e}")


def check_ours(tmp: Path) -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(embed_dim=96, depth=3, num_heads=3, num_frames=8, resolution=64, positions="rope")
    encoder = VideoEncoder(cfg).eval()
    predictor = build_predictor(
        encoder, predictor_embed_dim=48, depth=2, num_heads=4, num_mask_tokens=4
    ).eval()
    arch = ProbeArch("attentive", 96, 7, num_heads=3, depth=4, norm_eps=1e-6, xattn_proj=False)
    probe = arch.build().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in (encoder, predictor, probe):
            for p in module.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    ours = save_pretrained(
        tmp / "ours", {"target_encoder": encoder, "predictor": predictor}, cfg, predictor.config
    )
    export_hf(ours, tmp / "ours_hf", probe=LoadedProbe(arch, probe))
    classifier, info = VJEPA2ForVideoClassification.from_pretrained(tmp / "ours_hf", output_loading_info=True)
    classifier.eval()
    print(f"vjepa-made model: VJEPA2ForVideoClassification strict load: {strict(info)}")
    clip = torch.randn(2, 3, 8, 64, 64, generator=g)
    ctx, tgt = torch.arange(0, 64, 2).expand(2, -1), torch.arange(1, 64, 2).expand(2, -1)
    with torch.no_grad():
        z = encoder(clip)
        out = classifier.vjepa2(hf(clip), context_mask=[ctx], target_mask=[tgt])
        pred = predictor(gather_tokens(z, ctx), ctx, tgt, mask_index=1)
        print(
            f"  native: max |diff| encoder {(out.last_hidden_state - z).abs().max().item():.2e}, predictor "
            f"{(out.predictor_output.last_hidden_state - pred).abs().max().item():.2e}, logits "
            f"{(classifier(hf(clip)).logits - probe(z)).abs().max().item():.2e}"
        )
        other = torch.randn(1, 3, 4, 96, 80, generator=g)
        config_grid = VideoEncoder(EncoderConfig(**{**cfg.to_dict(), "rope_grid": "config"})).eval()
        config_grid.load_state_dict(encoder.state_dict())
        diff = (
            (classifier.vjepa2(hf(other), skip_predictor=True).last_hidden_state - config_grid(other))
            .abs()
            .max()
        )
        print(f"  96x80 clip, rope_grid='config': max |diff| encoder {diff.item():.2e}")


def main() -> None:
    import transformers

    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        check_fixtures(Path(tmp))
        check_ours(Path(tmp))


if __name__ == "__main__":
    main()
