"""The video ViT encoder: tubelet embedding, 3D positions (a fixed sin-cos table, or RoPE in every block),
pre-norm blocks, final LayerNorm. V-JEPA and V-JEPA 2 encoders differ only in the position scheme."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vjepa.grid import TokenGrid
from vjepa.models import pos_embed
from vjepa.models.layers import Block, init_weights, run_block
from vjepa.models.patch_embed import PatchEmbed3D
from vjepa.models.registry import EncoderConfig
from vjepa.models.rope import RopeTables, tables_for
from vjepa.models.tokens import gather_tokens

Masks = Tensor | Sequence[Tensor] | None


class VideoEncoder(nn.Module):
    """The V-JEPA / V-JEPA 2 video encoder (no CLS token; all tokens in time-major order).

    Module names match the official ``VisionTransformer`` so official state dicts map key for key. With
    ``positions="sincos"`` the position table is a buffer (never trained) stored in the state dict; with
    ``positions="rope"`` there is no table: every block rotates q and k by the tokens' (t, h, w).

    Args:
        config: the architecture.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.patch_embed = PatchEmbed3D(config.in_chans, d, config.patch_size, config.tubelet_size)
        self.pos_embed: Tensor | None  # [1, N, D], or None with RoPE (positions enter every block instead)
        pos_embed.register_table(self, "pos_embed", d, config)
        self.blocks = nn.ModuleList(
            Block(d, config.num_heads, config.mlp_ratio, config.qkv_bias, config.norm_eps)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.grad_checkpointing = False
        init_weights(self)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def grid_for(self, clip: Tensor) -> TokenGrid:
        """The token grid of a clip ``[B, C, T, H, W]``."""
        _, _, t, h, w = clip.shape
        return self.config.token_grid(t, (h, w))

    def as_video(self, x: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` become clips by repeating them ``num_frames`` times along time."""
        if x.ndim == 4:
            return x.unsqueeze(2).expand(-1, -1, self.config.num_frames, -1, -1)
        if x.ndim != 5:
            raise ValueError(f"expected a clip [B, C, T, H, W] or images [B, C, H, W], got {tuple(x.shape)}")
        return x

    def embed(self, clip: Tensor) -> Tensor:
        """Tubelet embedding plus the sin-cos positions (resampled if the clip's grid differs from the built
        one); RoPE encoders add nothing here.

        Args:
            clip: ``[B, C, T, H, W]`` (or images ``[B, C, H, W]``).

        Returns:
            ``[B, N, D]`` for every token of the clip.
        """
        clip = self.as_video(clip)
        if clip.shape[1] != self.config.in_chans:
            raise ValueError(f"expected {self.config.in_chans} channels, got clip shape {tuple(clip.shape)}")
        tokens = self.patch_embed(clip)  # [B, N, D]
        if self.pos_embed is None:
            return tokens
        return tokens + pos_embed.resample(self.pos_embed, self.config.grid, self.grid_for(clip))

    def rope_for(self, grid: TokenGrid, index: Tensor | None = None) -> RopeTables | None:
        """The RoPE tables of the tokens ``index`` (``[B, K]``; None: all) of a clip with token grid ``grid``;
        None for sin-cos encoders."""
        c = self.config
        if c.positions != "rope":
            return None
        layout = grid if c.rope_grid == "clip" else c.grid
        return tables_for(
            index, grid, layout, c.embed_dim // c.num_heads, self.patch_embed.proj.weight.device
        )

    def forward(
        self, clip: Tensor, masks: Masks = None, layers: Sequence[int] | None = None
    ) -> Tensor | list[Tensor] | list[list[Tensor]]:
        """Encode a clip, or only the tokens each mask keeps.

        Args:
            clip: ``[B, 3, T, H, W]``, or images ``[B, 3, H, W]`` (repeated along time).
            masks: None for every token; a ``[B, K]`` index tensor of tokens to keep; or a list of them, one
                output per mask (the embedding is computed once and shared).
            layers: block indices (negative counts from the end) whose outputs, each through the final
                LayerNorm, are returned as a list instead of the last block's output.

        Returns:
            ``[B, N or K, D]``; a list of those per layer when ``layers`` is given; a list of either per mask
            when ``masks`` is a list.
        """
        clip = self.as_video(clip)
        grid = self.grid_for(clip)
        tokens = self.embed(clip)  # [B, N, D]
        if masks is None:
            return self.run_blocks(tokens, layers, self.rope_for(grid))
        if isinstance(masks, Tensor):
            return self.run_blocks(gather_tokens(tokens, masks), layers, self.rope_for(grid, masks))
        return [  # each [B, K_m, D]
            self.run_blocks(gather_tokens(tokens, m), layers, self.rope_for(grid, m)) for m in masks
        ]

    def run_blocks(
        self, x: Tensor, layers: Sequence[int] | None = None, rope: RopeTables | None = None
    ) -> Tensor | list[Tensor]:
        """The transformer on already embedded tokens ``[B, K, D]`` (RoPE encoders need the tokens' tables,
        see :meth:`rope_for`)."""
        if rope is None and self.config.positions == "rope":
            raise ValueError("a RoPE encoder needs the tokens' RoPE tables (encoder.rope_for(grid, index))")
        wanted = self._layer_indices(layers)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = run_block(block, x, self.grad_checkpointing, rope)
            if i in wanted:
                outputs.append(self.norm(x))
        return self.norm(x) if layers is None else outputs

    def _layer_indices(self, layers: Sequence[int] | None) -> list[int]:
        if layers is None:
            return []
        depth = self.config.depth
        resolved = []
        for layer in layers:
            if not -depth <= layer < depth:
                raise ValueError(f"layer {layer} does not exist in an encoder of depth {depth}")
            resolved.append(layer % depth)
        if resolved != sorted(set(resolved)):
            raise ValueError(f"layers must be distinct and in increasing order, got {list(layers)}")
        return resolved
