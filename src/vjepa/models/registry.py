"""Architecture settings: typed configs for the encoder and predictor, and the named sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args

from vjepa.errors import InvalidArgument
from vjepa.grid import TokenGrid
from vjepa.renamed_keys import renamed_keys

PositionScheme = Literal["sincos", "rope"]
RopeGrid = Literal["clip", "config"]


class _GridConfig:
    """What the encoder and predictor configs share: the grid of their position table, and a strict
    round trip through plain dicts (the JSON of our checkpoints)."""

    num_frames: int
    resolution: int
    patch_size: int
    tubelet_size: int

    @property
    def grid(self) -> TokenGrid:
        """The token grid of the clips the model is built for (the position table's, or the layout of RoPE
        positions when ``rope_grid="config"``)."""
        return self.token_grid(self.num_frames, self.resolution)

    def token_grid(self, num_frames: int, resolution: int | tuple[int, int]) -> TokenGrid:
        """The token grid a clip of ``num_frames`` frames of ``resolution`` pixels a side (or ``(height,
        width)``) gives with this model's tubelet and patch sizes: the one place a grid is derived."""
        height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
        return TokenGrid.from_clip(
            num_frames, height, width, tubelet_size=self.tubelet_size, patch_size=self.patch_size
        )

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict):
        """Build from a dict (keys of earlier versions are renamed through :data:`vjepa.renamed_keys.RENAMED_KEYS`,
        with a warning); an unknown key is an error listing the valid ones."""
        what = cls.__name__.removesuffix("Config").lower()
        valid = {f.name for f in fields(cls)}
        return cls(**_known(cls, renamed_keys(data, valid, f"{what} config"), what))


@dataclass(frozen=True)
class EncoderConfig(_GridConfig):
    """The video ViT.

    Args:
        embed_dim: token width D.
        depth: number of transformer blocks.
        num_heads: attention heads (D must be divisible by it).
        mlp_ratio: MLP hidden width is ``int(D * mlp_ratio)``.
        patch_size: spatial patch side in pixels.
        tubelet_size: frames per tubelet.
        num_frames: frames of the clips the position table is built for.
        resolution: square side in pixels the position table is built for.
        in_chans: input channels.
        uniform_power: position-table layout; True in every released model.
        qkv_bias: bias on the qkv projections.
        norm_eps: LayerNorm epsilon inside the blocks and of the final norm.
        positions: ``sincos`` (V-JEPA: a fixed 3D table added to the tokens) or ``rope`` (V-JEPA 2: 3D rotary
            embedding of q and k in every block, no table).
        rope_grid: where RoPE positions are read: ``clip`` (the official code: each token's (t, h, w) on the
            grid of the clip being encoded) or ``config`` (Hugging Face: token indices laid out on the grid
            of ``resolution``; differs from ``clip`` only for clips of another resolution).
    """

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    num_frames: int = 16
    resolution: int = 224
    in_chans: int = 3
    uniform_power: bool = True
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    positions: PositionScheme = "sincos"
    rope_grid: RopeGrid = "clip"

    def __post_init__(self) -> None:
        _check_positive(self, ("embed_dim", "depth", "num_heads", "patch_size", "tubelet_size", "in_chans"))
        if self.embed_dim % self.num_heads:
            raise InvalidArgument(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        _check_positions(self, self.embed_dim // self.num_heads)
        if self.num_frames < self.tubelet_size or self.resolution < self.patch_size:
            raise InvalidArgument(
                f"num_frames={self.num_frames}, resolution={self.resolution} give no token with "
                f"tubelet_size={self.tubelet_size}, patch_size={self.patch_size}"
            )


@dataclass(frozen=True)
class PredictorConfig(_GridConfig):
    """The narrow predictor ViT.

    Args:
        embed_dim: width of the encoder it predicts for (input and output width).
        predictor_embed_dim: its own width (384 in the paper).
        depth: number of blocks (12 in the paper).
        num_heads: attention heads (the encoder's head count in the official code).
        num_mask_tokens: one learned mask token per mask setting.
        mlp_ratio, qkv_bias, norm_eps: as for the encoder.
        patch_size, tubelet_size, num_frames, resolution: the grid of its position table (the encoder's).
        uniform_power: position-table layout.
        zero_init_mask_tokens: mask tokens start at zero (paper) instead of N(0, 0.02^2).
        positions, rope_grid: the position scheme, as for the encoder (the official trainer uses the
            encoder's).
    """

    embed_dim: int
    predictor_embed_dim: int = 384
    depth: int = 12
    num_heads: int = 16
    num_mask_tokens: int = 2
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    num_frames: int = 16
    resolution: int = 224
    uniform_power: bool = True
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    zero_init_mask_tokens: bool = True
    positions: PositionScheme = "sincos"
    rope_grid: RopeGrid = "clip"

    def __post_init__(self) -> None:
        _check_positive(self, ("embed_dim", "predictor_embed_dim", "depth", "num_heads", "num_mask_tokens"))
        if self.predictor_embed_dim % self.num_heads:
            raise InvalidArgument(
                f"predictor_embed_dim {self.predictor_embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        _check_positions(self, self.predictor_embed_dim // self.num_heads)


@dataclass(frozen=True)
class ModelSize:
    """A named ViT size of the official release."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 16


# The official factory functions. vit_gigantic asks for mlp_ratio 64/13 through a misspelled keyword that is
# swallowed, so its real ratio is 4; giant's 48/11 gives a hidden width of int(1408 * 48 / 11) = 6144.
MODEL_SIZES: dict[str, ModelSize] = {
    "vit_tiny": ModelSize(192, 12, 3),
    "vit_small": ModelSize(384, 12, 6),
    "vit_base": ModelSize(768, 12, 12),
    "vit_large": ModelSize(1024, 24, 16),
    "vit_huge": ModelSize(1280, 32, 16),
    "vit_giant": ModelSize(1408, 40, 16, mlp_ratio=48 / 11),
    "vit_gigantic": ModelSize(1664, 48, 16, patch_size=14),
}


@dataclass(frozen=True)
class Vjepa2Model:
    """A released V-JEPA 2 encoder: a named size with RoPE positions, at its native resolution.

    Args:
        size: the :data:`MODEL_SIZES` entry.
        resolution: native clip side in pixels.
        num_heads: head count when it differs from the size's (V-JEPA 2's giant: 22, official
            ``vit_giant_xformers``).
    """

    size: str
    resolution: int = 256
    num_heads: int | None = None


# The official hub entries vjepa2_vit_large / _huge / _giant / _giant_384 (Hugging Face: vjepa2-vitl-fpc64-256,
# vjepa2-vith-fpc64-256, vjepa2-vitg-fpc64-256, vjepa2-vitg-fpc64-384).
VJEPA2_MODELS: dict[str, Vjepa2Model] = {
    "vjepa2_vit_large": Vjepa2Model("vit_large"),
    "vjepa2_vit_huge": Vjepa2Model("vit_huge"),
    "vjepa2_vit_giant": Vjepa2Model("vit_giant", num_heads=22),
    "vjepa2_vit_giant_384": Vjepa2Model("vit_giant", resolution=384, num_heads=22),
}
# The released V-JEPA 2 predictors (all sizes): width 384, 12 blocks, 12 heads, 10 mask tokens.
VJEPA2_PREDICTOR_HEADS = 12
VJEPA2_MASK_TOKENS = 10


def canonical_name(name: str) -> str:
    """A named size (``"large"``, ``"vit_large"``, ``"ViT-L"``, ``"vitl"`` -> ``"vit_large"``) or a V-JEPA 2
    model (``"vjepa2_vit_large"``, ``"vjepa2-vitg-384"`` -> ``"vjepa2_vit_giant_384"``)."""
    key = name.lower().replace("-", "_")
    if key.startswith("vjepa2_"):
        rest, suffix = key[len("vjepa2_") :], ""
        for res in ("_256", "_384"):
            if rest.endswith(res):
                rest, suffix = rest[: -len(res)], res if res != "_256" else ""
        try:
            full = "vjepa2_" + _size_name(rest) + suffix
        except InvalidArgument:
            full = ""
        if full not in VJEPA2_MODELS:
            raise InvalidArgument(f"unknown V-JEPA 2 model {name!r}; known: {', '.join(VJEPA2_MODELS)}")
        return full
    return _size_name(key, name)


def model_size(name: str) -> ModelSize:
    """The architecture size of a named size or V-JEPA 2 model (see :func:`canonical_name`)."""
    key = canonical_name(name)
    preset = VJEPA2_MODELS.get(key)
    return MODEL_SIZES[preset.size if preset else key]


def _size_name(key: str, name: str | None = None) -> str:
    short = {"t": "tiny", "s": "small", "b": "base", "l": "large", "h": "huge", "g": "giant"}
    if key.startswith("vit") and not key.startswith("vit_"):
        key = "vit_" + key[3:]
    if key.startswith("vit_") and key[4:] in short:
        key = "vit_" + short[key[4:]]
    if not key.startswith("vit_"):
        key = "vit_" + key
    if key not in MODEL_SIZES:
        raise InvalidArgument(
            f"unknown model size {name or key!r}; known: {', '.join(MODEL_SIZES)}, or a V-JEPA 2 model: "
            f"{', '.join(VJEPA2_MODELS)}"
        )
    return key


def encoder_config(
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
) -> EncoderConfig:
    """The config of a named size (``tiny`` .. ``gigantic``) or V-JEPA 2 model (``vjepa2_vit_large`` ..) for
    clips of ``num_frames`` x ``resolution``^2.

    Args:
        name: see :func:`canonical_name`.
        resolution: None: 224 for named sizes, the native resolution (256 or 384) for V-JEPA 2 models.
        positions: None: ``sincos`` for named sizes, ``rope`` for V-JEPA 2 models.
        num_heads: None: the size's (V-JEPA 2's giant: 22).
        embed_dim, depth: None: the size's; set them for a smaller ViT than the named ones (e.g. the demo's
            64-wide, 4-deep encoder for CPU runs of minutes).
        num_frames, patch_size, tubelet_size, uniform_power, rope_grid: see :class:`EncoderConfig`.
    """
    key = canonical_name(name)
    preset = VJEPA2_MODELS.get(key)
    size = MODEL_SIZES[preset.size if preset else key]
    return EncoderConfig(
        embed_dim=embed_dim or size.embed_dim,
        depth=depth or size.depth,
        num_heads=num_heads or (preset and preset.num_heads) or size.num_heads,
        mlp_ratio=size.mlp_ratio,
        patch_size=patch_size or size.patch_size,
        tubelet_size=tubelet_size,
        num_frames=num_frames,
        resolution=resolution or (preset.resolution if preset else 224),
        uniform_power=uniform_power,
        positions=positions or ("rope" if preset else "sincos"),
        rope_grid=rope_grid,
    )


def predictor_config(
    encoder: EncoderConfig,
    *,
    predictor_embed_dim: int = 384,
    depth: int = 12,
    num_heads: int | None = None,
    num_mask_tokens: int | None = None,
    zero_init_mask_tokens: bool = True,
) -> PredictorConfig:
    """The predictor for ``encoder``, as the official trainers build it: the encoder's grid and position
    scheme, MLP ratio 4 whatever the encoder's.

    Args:
        num_heads: None: the encoder's head count (V-JEPA) or 12 (V-JEPA 2, RoPE encoders).
        num_mask_tokens: None: 2 (V-JEPA) or 10 (V-JEPA 2), as in the released predictors.
    """
    rope = encoder.positions == "rope"
    default_heads = VJEPA2_PREDICTOR_HEADS if rope else encoder.num_heads
    return PredictorConfig(
        embed_dim=encoder.embed_dim,
        predictor_embed_dim=predictor_embed_dim,
        depth=depth,
        num_heads=num_heads or default_heads,
        num_mask_tokens=num_mask_tokens or (VJEPA2_MASK_TOKENS if rope else 2),
        patch_size=encoder.patch_size,
        tubelet_size=encoder.tubelet_size,
        num_frames=encoder.num_frames,
        resolution=encoder.resolution,
        uniform_power=encoder.uniform_power,
        qkv_bias=encoder.qkv_bias,
        norm_eps=encoder.norm_eps,
        zero_init_mask_tokens=zero_init_mask_tokens,
        positions=encoder.positions,
        rope_grid=encoder.rope_grid,
    )


def size_name_of(embed_dim: int, depth: int) -> str | None:
    """The named size with this width and depth, if any."""
    for name, size in MODEL_SIZES.items():
        if (size.embed_dim, size.depth) == (embed_dim, depth):
            return name
    return None


def _check_positive(cfg: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidArgument(f"{type(cfg).__name__}.{name} must be a positive integer, got {value!r}")


def _check_positions(cfg: object, head_dim: int) -> None:
    positions, rope_grid = cfg.positions, cfg.rope_grid  # type: ignore[attr-defined]
    if positions not in get_args(PositionScheme):
        raise InvalidArgument(f"{type(cfg).__name__}.positions must be 'sincos' or 'rope', got {positions!r}")
    if rope_grid not in get_args(RopeGrid):
        raise InvalidArgument(f"{type(cfg).__name__}.rope_grid must be 'clip' or 'config', got {rope_grid!r}")
    if positions == "rope" and head_dim < 6:
        raise InvalidArgument(f"{type(cfg).__name__}: 3D RoPE needs >= 6 channels per head, got {head_dim}")


def _known(cls: type, data: dict, what: str) -> dict:
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise InvalidArgument(f"unknown {what} config key(s) {unknown}; valid keys: {sorted(valid)}")
    return dict(data)
