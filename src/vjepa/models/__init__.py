"""Architecture only: the video encoder, the predictor, the building blocks and the named sizes."""

from vjepa.models.encoder import VideoEncoder
from vjepa.models.predictor import Predictor
from vjepa.models.registry import (
    MODEL_SIZES,
    EncoderConfig,
    PredictorConfig,
    canonical_name,
    encoder_config,
    predictor_config,
)


def build_encoder(
    name: str,
    *,
    num_frames: int = 16,
    img_size: int = 224,
    patch_size: int | None = None,
    tubelet_size: int = 2,
    uniform_power: bool = True,
) -> VideoEncoder:
    """A freshly initialized encoder of a named size (``tiny``, ``small``, ..., ``gigantic``)."""
    return VideoEncoder(
        encoder_config(
            name,
            num_frames=num_frames,
            img_size=img_size,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            uniform_power=uniform_power,
        )
    )


def build_predictor(
    encoder: VideoEncoder | EncoderConfig,
    *,
    predictor_embed_dim: int = 384,
    depth: int = 12,
    num_heads: int | None = None,
    num_mask_tokens: int = 2,
    zero_init_mask_tokens: bool = True,
) -> Predictor:
    """A freshly initialized predictor for ``encoder`` (the paper: width 384, depth 12, the encoder's heads,
    one mask token per mask setting)."""
    config = encoder.config if isinstance(encoder, VideoEncoder) else encoder
    return Predictor(
        predictor_config(
            config,
            predictor_embed_dim=predictor_embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_mask_tokens=num_mask_tokens,
            zero_init_mask_tokens=zero_init_mask_tokens,
        )
    )


__all__ = [
    "build_predictor",
    "MODEL_SIZES",
    "EncoderConfig",
    "Predictor",
    "PredictorConfig",
    "VideoEncoder",
    "build_encoder",
    "canonical_name",
    "encoder_config",
    "predictor_config",
]
