"""The attentive probes of V-JEPA and V-JEPA 2: learned queries cross-attend to the frozen tokens, then a
linear head.

- V-JEPA (``depth=1``): one cross-attention block. ``xattn.proj`` is stored but never applied, as in the
  released probes (official spec §6.1 and §8.1 item 1).
- V-JEPA 2 (``depth=4``, ``unused_proj=False``): 3 self-attention blocks over the tokens (``pooler.blocks.i``,
  fused ``qkv``), then the cross-attention block with the learned query; the V-JEPA 2 code has no
  ``xattn.proj``. Official probes: 16 heads, LayerNorm eps 1e-5; the Hugging Face classifier computes the same
  layers with the encoder's head count and eps 1e-6 (``num_heads``, ``norm_eps`` here).

Parameter names match the official ``AttentiveClassifier`` (``pooler.query_tokens``, ``pooler.blocks.i.*``,
``pooler.cross_attention_block.{norm1, xattn.{q, kv[, proj]}, norm2, mlp.fc1, mlp.fc2}``, ``linear``), so an
official probe state dict loads key for key once its ``module.`` prefixes are stripped.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vjepa.models.layers import Block, CrossAttentionBlock

PROBE_NORM_EPS = 1e-5  # the official probe uses PyTorch's default LayerNorm epsilon (the encoder: 1e-6)


def _trunc_normal_(tensor: Tensor, std: float) -> None:
    """N(0, std^2) truncated at +-2 absolute, as the official ``trunc_normal_`` (no truncation at std 0.02)."""
    with torch.no_grad():
        tensor.normal_(0.0, std).clamp_(-2.0, 2.0)


class AttentivePooler(nn.Module):
    """``depth - 1`` self-attention blocks over the tokens, then learned queries attend to them through one
    cross-attention block with an MLP.

    Args:
        embed_dim: token width D.
        num_heads: attention heads (V-JEPA evals: the encoder's; V-JEPA 2 evals: 16).
        num_queries: learned queries (1 for classification).
        mlp_ratio: MLP hidden width factor.
        qkv_bias: bias on the q and kv projections.
        init_std: std of the truncated-normal init of the queries and every Linear.
        depth: blocks in all (1: V-JEPA; 4: V-JEPA 2).
        norm_eps: LayerNorm epsilon (official probes: 1e-5; Hugging Face's classifier: 1e-6).
        unused_proj: hold the never-applied ``xattn.proj`` (V-JEPA layout; V-JEPA 2 probes have none).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_queries: int = 1,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        init_std: float = 0.02,
        depth: int = 1,
        norm_eps: float = PROBE_NORM_EPS,
        unused_proj: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"an attentive pooler needs depth >= 1 (the cross-attention block), got {depth}")
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))  # [1, Q, D]
        self.cross_attention_block = CrossAttentionBlock(
            embed_dim, num_heads, mlp_ratio, qkv_bias, norm_eps=norm_eps, unused_proj=unused_proj
        )
        self.blocks = (
            nn.ModuleList(
                Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_eps) for _ in range(depth - 1)
            )
            if depth > 1
            else None
        )
        self._init(init_std)

    def _init(self, std: float) -> None:
        _trunc_normal_(self.query_tokens, std)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _trunc_normal_(m.weight, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # The official _rescale_blocks: self-attention block i (1-based) divided by sqrt(2 i); the cross block
        # by sqrt(2 * max(1, number of self-attention blocks)) (it reuses the last block's index).
        with torch.no_grad():
            for i, blk in enumerate(self.blocks or [], start=1):
                blk.attn.proj.weight.div_(math.sqrt(2.0 * i))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * i))
            block = self.cross_attention_block
            scale = math.sqrt(2.0 * max(1, len(self.blocks or [])))
            if hasattr(block.xattn, "proj"):
                block.xattn.proj.weight.div_(scale)
            block.mlp.fc2.weight.div_(scale)

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [B, Q, D]
        for blk in self.blocks or []:
            tokens = blk(tokens)  # [B, N, D]
        queries = self.query_tokens.expand(tokens.shape[0], -1, -1)  # [B, Q, D]
        return self.cross_attention_block(queries, tokens)


class AttentiveClassifier(nn.Module):
    """The official attentive probe: ``linear(pooler(tokens)[:, 0])``.

    Args:
        embed_dim: token width D.
        num_heads: attention heads of the pooler.
        num_classes: output classes C.
        mlp_ratio: MLP hidden width factor of the pooler.
        qkv_bias: bias on the pooler's q and kv projections.
        init_std: init std of the pooler (``linear`` keeps PyTorch's default init, as the official one).
        depth, norm_eps, unused_proj: see :class:`AttentivePooler` (V-JEPA 2 probe: 4, 1e-5, False).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_classes: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        init_std: float = 0.02,
        depth: int = 1,
        norm_eps: float = PROBE_NORM_EPS,
        unused_proj: bool = True,
    ) -> None:
        super().__init__()
        self.pooler = AttentivePooler(
            embed_dim, num_heads, 1, mlp_ratio, qkv_bias, init_std, depth, norm_eps, unused_proj
        )
        self.linear = nn.Linear(embed_dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [B, C]
        return self.linear(self.pooler(tokens)[:, 0])  # [B, D] -> [B, C]
