"""Architecture only: the video encoder, the predictor, the building blocks and the named sizes.

V-JEPA (sin-cos position table) and V-JEPA 2 (3D RoPE) models are the same modules with another position
scheme (``EncoderConfig.positions``); ``build_encoder("vjepa2_vit_large")`` gives a released V-JEPA 2 size.
"""

from vjepa.models.encoder import VideoEncoder
from vjepa.models.predictor import Predictor
from vjepa.models.registry import (
    MODEL_SIZES,
    VJEPA2_MODELS,
    EncoderConfig,
    PositionScheme,
    PredictorConfig,
    RopeGrid,
    canonical_name,
    encoder_config,
    predictor_config,
)


def build_encoder(
    name: str,
    *,
    num_frames: int = 16,
    resolution: int | None = None,
    patch_size: int | None = None,
    tubelet_size: int = 2,
    uniform_power: bool = True,
    positions: PositionScheme | None = None,
    num_heads: int | None = None,
    rope_grid: RopeGrid = "clip",
    embed_dim: int | None = None,
    depth: int | None = None,
) -> VideoEncoder:
    """A freshly initialized encoder of a named size (``tiny``, ``small``, ..., ``gigantic``; sin-cos
    positions, 224 pixels) or V-JEPA 2 model (``vjepa2_vit_large``, ``vjepa2_vit_huge``, ``vjepa2_vit_giant``
    with 22 heads, ``vjepa2_vit_giant_384``; RoPE, 256 or 384 pixels). See :func:`encoder_config`."""
    return VideoEncoder(
        encoder_config(
            name,
            num_frames=num_frames,
            resolution=resolution,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            uniform_power=uniform_power,
            positions=positions,
            num_heads=num_heads,
            rope_grid=rope_grid,
            embed_dim=embed_dim,
            depth=depth,
        )
    )


def build_predictor(
    encoder: VideoEncoder | EncoderConfig,
    *,
    predictor_embed_dim: int = 384,
    depth: int = 12,
    num_heads: int | None = None,
    num_mask_tokens: int | None = None,
    zero_init_mask_tokens: bool = True,
) -> Predictor:
    """A freshly initialized predictor for ``encoder``: width 384, depth 12, and as the released models of
    the encoder's family: V-JEPA (sin-cos) the encoder's heads and 2 mask tokens (one per mask setting),
    V-JEPA 2 (RoPE) 12 heads and 10 mask tokens."""
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
    "VJEPA2_MODELS",
    "EncoderConfig",
    "Predictor",
    "PredictorConfig",
    "VideoEncoder",
    "build_encoder",
    "canonical_name",
    "encoder_config",
    "predictor_config",
]
