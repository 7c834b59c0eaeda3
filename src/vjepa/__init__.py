"""vjepa: V-JEPA video encoders (pretraining, frozen evaluation, feature extraction).

The public API::

    import vjepa
    encoder = vjepa.build_encoder("large", num_frames=16, resolution=224)
    pretrained = vjepa.load_pretrained("vitl16.pth.tar")      # official file or our folder
    encoder = pretrained.encoder("target_encoder")
    tokens = encoder(clip)                                     # [B, 3, T, H, W] -> [B, N, D]

    config, _ = vjepa.load_eval_config("synthetic_motion", ["encoder.checkpoint=runs/tiny"])
    metrics = vjepa.run_eval(config)                           # frozen evaluation (vjepa eval)
    probe = vjepa.load_probe("vitl16/k400-probe.pth.tar")      # official or our probe checkpoints

    encoder = vjepa.build_encoder("vjepa2_vit_large")          # V-JEPA 2: 3D RoPE, 256 px
    pretrained = vjepa.load_pretrained("vjepa2-vitl-fpc64-256/")  # a Hugging Face folder, an official file, ours
    vjepa.export_hf("runs/x/export", "x-hf/")                  # a folder transformers' VJEPA2Model loads
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vjepa.checkpoint import (
        CheckpointError,
        Pretrained,
        convert_official,
        load_encoder,
        load_pretrained,
        save_pretrained,
    )
    from vjepa.errors import VjepaError
    from vjepa.extract import ExtractSpec, extract_features
    from vjepa.grid import TokenGrid
    from vjepa.interop.hf import load_hf
    from vjepa.interop.hf_export import export_hf
    from vjepa.models import (
        MODEL_SIZES,
        VJEPA2_MODELS,
        EncoderConfig,
        Predictor,
        PredictorConfig,
        VideoEncoder,
        build_encoder,
        build_predictor,
    )
    from vjepa.probe.attentive import AttentiveClassifier, AttentivePooler
    from vjepa.probe.checkpoint import load_probe, save_probe
    from vjepa.probe.config import EvalConfig, load_eval_config
    from vjepa.probe.loop import run_eval

# The public names and the modules that define them. They are imported on first use (PEP 562), so that
# ``import vjepa`` (and the ``vjepa`` command) does not import torch: the command sets the OpenMP
# environment first (see vjepa.threads).
_EXPORTS = {
    "vjepa.checkpoint": (
        "CheckpointError",
        "Pretrained",
        "convert_official",
        "load_encoder",
        "load_pretrained",
        "save_pretrained",
    ),
    "vjepa.errors": ("VjepaError",),
    "vjepa.extract": ("ExtractSpec", "extract_features"),
    "vjepa.grid": ("TokenGrid",),
    "vjepa.interop.hf": ("load_hf",),
    "vjepa.interop.hf_export": ("export_hf",),
    "vjepa.models": (
        "MODEL_SIZES",
        "VJEPA2_MODELS",
        "EncoderConfig",
        "Predictor",
        "PredictorConfig",
        "VideoEncoder",
        "build_encoder",
        "build_predictor",
    ),
    "vjepa.probe.attentive": ("AttentiveClassifier", "AttentivePooler"),
    "vjepa.probe.checkpoint": ("load_probe", "save_probe"),
    "vjepa.probe.config": ("EvalConfig", "load_eval_config"),
    "vjepa.probe.loop": ("run_eval",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'vjepa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


__version__ = "0.1.0"

__all__ = [
    "AttentiveClassifier",
    "AttentivePooler",
    "CheckpointError",
    "EncoderConfig",
    "EvalConfig",
    "ExtractSpec",
    "MODEL_SIZES",
    "VJEPA2_MODELS",
    "Predictor",
    "PredictorConfig",
    "Pretrained",
    "TokenGrid",
    "VideoEncoder",
    "VjepaError",
    "build_encoder",
    "build_predictor",
    "convert_official",
    "export_hf",
    "extract_features",
    "load_encoder",
    "load_eval_config",
    "load_hf",
    "load_pretrained",
    "load_probe",
    "run_eval",
    "save_pretrained",
    "save_probe",
]
