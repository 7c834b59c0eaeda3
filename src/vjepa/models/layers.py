"""Transformer building blocks shared by the encoder, the predictor and the probes (one copy each).

Parameter names follow the official release (``qkv``, ``proj``, ``fc1``, ``fc2``, ``norm1``, ...) so that
official state dicts map onto these modules key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vjepa.models.rope import RopeTables


class Mlp(nn.Module):
    """Two linear layers with an exact (erf) GELU between them.

    Args:
        dim: input and output width.
        hidden_dim: width of the hidden layer.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # [B, N, dim] -> [B, N, dim]
        return self.fc2(self.act(self.fc1(x)))


def _split_heads(x: Tensor, num_heads: int) -> Tensor:  # [B, N, D] -> [B, heads, N, D/heads]
    b, n, d = x.shape
    return x.view(b, n, num_heads, d // num_heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:  # [B, heads, N, dh] -> [B, N, heads*dh]
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``F.scaled_dot_product_attention`` (no mask, default scale): ``[B, heads, N, dh]`` -> same shape.

    On CPU under bf16 autocast it runs in fp32 and returns bf16: PyTorch's CPU attention kernels are 1.3-3.5x
    faster in fp32 than in bf16 at ViT head sizes (and more accurate). Every other case, fp32 included, calls
    SDPA unchanged.
    """
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (no mask, default scale).

    With RoPE tables (V-JEPA 2), q and k are rotated by the tokens' positions before the attention; v never is.

    Args:
        dim: token width; must be divisible by ``num_heads``.
        num_heads: number of heads.
        qkv_bias: whether the fused qkv projection has a bias.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: Tensor, rope: RopeTables | None = None, first_query: int = 0
    ) -> Tensor:  # [B, N, D] -> [B, N - first_query, D]
        """Every token attends to every token; with ``first_query`` > 0 only the outputs of the tokens from
        that one on are computed (the others still serve as keys and values)."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        if rope is not None:  # q and k rotated together: [2, B, heads, N, dh]
            q, k = rope.rotate(qkv[:2]).unbind(0)
            v = qkv[2]
        else:
            q, k, v = qkv.unbind(0)  # each [B, heads, N, dh]
        if first_query:
            q = q[:, :, first_query:]  # [B, heads, N - first_query, dh]
        return self.proj(_merge_heads(attention(q, k, v)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP is ``int(dim * mlp_ratio)``.
        qkv_bias: bias on the qkv projection.
        norm_eps: LayerNorm epsilon (1e-6 in the released models).
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, norm_eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self, x: Tensor, rope: RopeTables | None = None, first_query: int = 0
    ) -> Tensor:  # [B, N, D] -> [B, N - first_query, D]
        """With ``first_query`` > 0, only the outputs of the tokens from that one on are computed: all tokens
        are keys and values, but the attention's queries, its projection and the MLP run on those rows only
        (the predictor's last block, whose context rows nothing reads)."""
        if first_query:
            x = x[:, first_query:] + self.attn(self.norm1(x), rope, first_query)
        else:
            x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


def run_block(
    block: nn.Module, x: Tensor, checkpointed: bool, rope: RopeTables | None = None, first_query: int = 0
) -> Tensor:
    """``block(x, rope, first_query)``, recomputed in the backward pass instead of stored when
    ``checkpointed`` and gradients are on (activation checkpointing; no effect under no_grad)."""
    if checkpointed and torch.is_grad_enabled():
        return checkpoint(block, x, rope, first_query, use_reentrant=False)
    return block(x, rope, first_query)


class CrossAttention(nn.Module):
    """Queries attend to a token set (keys and values from the same tokens).

    ``proj`` exists (V-JEPA layout) so that official V-JEPA probe checkpoints load strictly, but it is NOT
    applied: the released probes were trained without it (official spec §8.1 item 1). The V-JEPA 2 code
    removed it (``unused_proj=False``).

    Args:
        dim: width of queries and tokens.
        num_heads: attention heads.
        qkv_bias: bias on the q and kv projections.
        unused_proj: hold the never-applied ``proj`` Linear (V-JEPA 1 checkpoints have it, V-JEPA 2 ones not).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, unused_proj: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        if unused_proj:
            self.proj = nn.Linear(dim, dim)  # kept for checkpoint compatibility, never applied

    def forward(self, queries: Tensor, x: Tensor) -> Tensor:  # [B, Q, D], [B, N, D] -> [B, Q, D]
        b, n, d = x.shape
        q = _split_heads(self.q(queries), self.num_heads)  # [B, heads, Q, dh]
        kv = self.kv(x).view(b, n, 2, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)  # each [B, heads, N, dh]
        return _merge_heads(attention(q, k, v))


class CrossAttentionBlock(nn.Module):
    """``q + xattn(q, norm1(x))`` then ``q + mlp(norm2(q))``; only the tokens are normalized, not the queries.

    Args:
        dim: width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width factor.
        qkv_bias: bias on q and kv.
        norm_eps: LayerNorm epsilon (the official probe uses PyTorch's default 1e-5).
        unused_proj: give the cross-attention its never-applied ``proj`` (V-JEPA 1 layout).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-5,
        unused_proj: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.xattn = CrossAttention(dim, num_heads, qkv_bias, unused_proj)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, queries: Tensor, x: Tensor) -> Tensor:  # [B, Q, D], [B, N, D] -> [B, Q, D]
        q = queries + self.xattn(queries, self.norm1(x))
        return q + self.mlp(self.norm2(q))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """The initialization V-JEPA pretraining actually uses: every Linear and Conv weight ~ N(0, std^2)
    truncated at +-2 (absolute bounds, as the official ``trunc_normal_``: 100 std away at std 0.02, so a
    clamp of a normal draw is the same distribution and much faster), zero biases, LayerNorms at (1, 0).

    The official models also divide ``attn.proj``/``mlp.fc2`` by sqrt(2 * layer), but the pretraining
    script re-initializes every Linear afterwards, which undoes it; we start from the effective result.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d, nn.Conv2d)):
            with torch.no_grad():
                m.weight.normal_(0.0, std).clamp_(-2.0, 2.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
