"""vjepa: V-JEPA video encoders (pretraining, frozen evaluation, feature extraction).

The public API::

    import vjepa
    encoder = vjepa.build_encoder("large", num_frames=16, img_size=224)
    pretrained = vjepa.load_pretrained("vitl16.pth.tar")      # official file or our folder
    encoder = pretrained.encoder("target_encoder")
    tokens = encoder(clip)                                     # [B, 3, T, H, W] -> [B, N, D]
"""

from vjepa.checkpoint import (
    CheckpointError,
    Pretrained,
    convert_official,
    load_encoder,
    load_pretrained,
    save_pretrained,
)
from vjepa.grid import TokenGrid
from vjepa.models import (
    MODEL_SIZES,
    EncoderConfig,
    Predictor,
    PredictorConfig,
    VideoEncoder,
    build_encoder,
    build_predictor,
)

__version__ = "0.1.0"

__all__ = [
    "MODEL_SIZES",
    "CheckpointError",
    "EncoderConfig",
    "Predictor",
    "PredictorConfig",
    "Pretrained",
    "TokenGrid",
    "VideoEncoder",
    "build_encoder",
    "build_predictor",
    "convert_official",
    "load_encoder",
    "load_pretrained",
    "save_pretrained",
]
