"""The narrow predictor: context tokens plus learnable mask tokens at the target positions -> predictions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vjepa.grid import TokenGrid
from vjepa.models import pos_embed
from vjepa.models.layers import Block, init_weights, run_block
from vjepa.models.registry import PredictorConfig
from vjepa.models.rope import RopeTables, tables_for
from vjepa.models.tokens import gather_tokens


class Predictor(nn.Module):
    """The V-JEPA predictor (module names as in the official ``VisionTransformerPredictor``).

    The sequence is the embedded context tokens followed by one mask token per target position (the mask
    token of the current mask setting plus the target's position); no re-ordering. The outputs at the mask
    tokens, projected back to the encoder width, are the predictions; the last block computes only those
    (its context rows would be discarded): the same predictions and gradients for less work. Positions are
    a sin-cos table added to the tokens (V-JEPA) or RoPE in every block (V-JEPA 2; the official code sorts
    the tokens by position first, which attention does not depend on).

    Args:
        config: the architecture.
    """

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        d = config.predictor_embed_dim
        self.predictor_embed = nn.Linear(config.embed_dim, d)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, d)) for _ in range(config.num_mask_tokens)
        )
        self.predictor_pos_embed: Tensor | None  # [1, N, d], or None with RoPE
        pos_embed.register_table(self, "predictor_pos_embed", d, config)
        self.predictor_blocks = nn.ModuleList(
            Block(d, config.num_heads, config.mlp_ratio, config.qkv_bias, config.norm_eps)
            for _ in range(config.depth)
        )
        self.predictor_norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.predictor_proj = nn.Linear(d, config.embed_dim)
        self.grad_checkpointing = False
        init_weights(self)
        if not config.zero_init_mask_tokens:
            for token in self.mask_tokens:
                nn.init.trunc_normal_(token, std=0.02, a=-2.0, b=2.0)

    def forward(
        self,
        context: Tensor,
        context_index: Tensor,
        target_index: Tensor,
        mask_index: int = 0,
        grid: TokenGrid | None = None,
    ) -> Tensor:
        """Predict the target tokens of one mask setting.

        Args:
            context: the context encoder's output, ``[B, K_ctx, D]``.
            context_index: token indices of ``context``, ``[B, K_ctx]``.
            target_index: token indices to predict, ``[B, K_tgt]``.
            mask_index: which mask setting (and so which mask token), taken modulo the number of tokens.
            grid: the clip's token grid when it differs from the one the predictor was built for.

        Returns:
            ``[B, K_tgt, D]`` predictions, in the order of ``target_index``.
        """
        grid = grid or self.config.grid
        token = self.mask_tokens[mask_index % len(self.mask_tokens)]  # [1, 1, d]
        rope = None
        if self.predictor_pos_embed is not None:
            positions = pos_embed.resample(self.predictor_pos_embed, self.config.grid, grid)
            x = self.predictor_embed(context) + gather_tokens(positions, context_index)  # [B, K_ctx, d]
            queries = token + gather_tokens(positions, target_index)  # [B, K_tgt, d]
        else:
            x = self.predictor_embed(context)  # [B, K_ctx, d]
            queries = token.expand(target_index.shape[0], target_index.shape[1], -1)  # [B, K_tgt, d]
            rope = self._rope(torch.cat([context_index, target_index], dim=1), grid)
        x = torch.cat([x, queries], dim=1)  # [B, K_ctx + K_tgt, d]
        k_ctx = context.shape[1]
        last = len(self.predictor_blocks) - 1  # depth >= 1 (PredictorConfig)
        for i, block in enumerate(self.predictor_blocks):
            # nothing reads the last block's outputs at the context tokens: it computes the targets' only
            x = run_block(block, x, self.grad_checkpointing, rope, k_ctx if i == last else 0)
        return self.predictor_proj(self.predictor_norm(x))  # [B, K_tgt, d] -> [B, K_tgt, D]

    def _rope(self, index: Tensor, grid: TokenGrid) -> RopeTables:
        c = self.config
        layout = grid if c.rope_grid == "clip" else c.grid
        head_dim = c.predictor_embed_dim // c.num_heads
        return tables_for(index, grid, layout, head_dim, self.predictor_embed.weight.device)
