"""The attentive probe of V-JEPA: one learned query cross-attends to the frozen tokens, then a linear head.

Parameter names match the official ``AttentiveClassifier`` (``pooler.query_tokens``,
``pooler.cross_attention_block.{norm1, xattn.{q, kv, proj}, norm2, mlp.fc1, mlp.fc2}``, ``linear``), so an
official probe state dict loads key for key once its ``module.`` prefixes are stripped. ``xattn.proj`` is
stored but never applied, as in the released probes (official spec §6.1 and §8.1 item 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vjepa.models.layers import CrossAttentionBlock

PROBE_NORM_EPS = 1e-5  # the official probe uses PyTorch's default LayerNorm epsilon (the encoder: 1e-6)


def _trunc_normal_(tensor: Tensor, std: float) -> None:
    """N(0, std^2) truncated at +-2 absolute, as the official ``trunc_normal_`` (no truncation at std 0.02)."""
    with torch.no_grad():
        tensor.normal_(0.0, std).clamp_(-2.0, 2.0)


class AttentivePooler(nn.Module):
    """Learned queries attend to a token set through one cross-attention block with an MLP.

    Args:
        embed_dim: token width D.
        num_heads: attention heads (the official evals use the encoder's head count).
        num_queries: learned queries (1 for classification).
        mlp_ratio: MLP hidden width factor.
        qkv_bias: bias on the q and kv projections.
        init_std: std of the truncated-normal init of the queries and every Linear.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_queries: int = 1,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))  # [1, Q, D]
        self.cross_attention_block = CrossAttentionBlock(
            embed_dim, num_heads, mlp_ratio, qkv_bias, norm_eps=PROBE_NORM_EPS
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
        block = self.cross_attention_block
        with torch.no_grad():  # the official _rescale_blocks (layer 1): divide by sqrt(2)
            block.xattn.proj.weight.div_(math.sqrt(2.0))
            block.mlp.fc2.weight.div_(math.sqrt(2.0))

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [B, Q, D]
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
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_classes: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.pooler = AttentivePooler(embed_dim, num_heads, 1, mlp_ratio, qkv_bias, init_std)
        self.linear = nn.Linear(embed_dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [B, C]
        return self.linear(self.pooler(tokens)[:, 0])  # [B, D] -> [B, C]
