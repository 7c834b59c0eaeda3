"""A grid of probe heads trained side by side: G probes of one architecture whose weights are stacked along a
leading axis, so every operation of a training step runs once for all G heads and the features of a batch
are read once.

The heads stay ordinary probe modules (``grid.heads[g]``): the optimizer updates them, the selection keeps
their weights, and head ``g`` is saved and loaded as any other probe. Each forward stacks their parameters
(one copy, differentiable) and computes exactly the function of the G separate probes (pinned by tests).

- :class:`AttentiveGrid`: the official attentive probe (one query, one cross-attention block, MLP, Linear).
  With a single query, attention scores and values can be taken in token space: the score of token ``x``
  is ``q . (W_k (gamma * xhat + beta) + b_k) / sqrt(dh)`` = ``(gamma * W_k^T q) . xhat / sqrt(dh)`` plus a
  term constant over tokens (which the softmax cancels), and since the attention weights sum to one the
  values are ``W_v (gamma * sum_n a_n xhat_n + beta) + b_v``. A step then costs ``O(N D)`` per head and
  attention head instead of the ``O(N D^2)`` of projecting every token into keys and values (about D/3
  times less work: the probes of ``vjepa demo`` train in seconds on a CPU).
- :class:`LinearGrid`: mean over tokens, optional standardization, Linear.
- :class:`StackedGrid`: any other probe module, run per head with ``torch.func.vmap`` over the stacked
  weights (correct for every architecture :class:`~vjepa.probe.checkpoint.ProbeArch` builds, without the
  shortcut).
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from vjepa.probe.attentive import AttentiveClassifier
from vjepa.probe.linear import LinearClassifier


class HeadGrid(nn.Module):
    """G probes of one architecture, kept as G ordinary modules (``heads``: what is optimized, saved and
    exported) whose parameters are stacked along a new leading axis at each forward, so every operation runs
    once for all heads.

    Args:
        template: one probe; every head starts from a copy of its weights.
        num_heads: G.
    """

    def __init__(self, template: nn.Module, num_heads: int) -> None:
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"a grid needs at least one head, got {num_heads}")
        self.heads = nn.ModuleList(copy.deepcopy(template) for _ in range(num_heads))

    @property
    def num_grid_heads(self) -> int:
        return len(self.heads)

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [G, B, C]
        raise NotImplementedError

    def stacked(self, skip: str | None = None) -> dict[str, Tensor]:
        """The heads' parameters stacked: ``name -> [G, *shape]`` (differentiable); names starting with
        ``skip`` are left out."""
        names = [n for n, _ in self.heads[0].named_parameters() if not (skip and n.startswith(skip))]
        per_head = [dict(h.named_parameters()) for h in self.heads]
        return {n: torch.stack([p[n] for p in per_head]) for n in names}

    def export(self, g: int) -> nn.Module:
        """Head ``g`` as a standalone probe (a copy), in eval mode, on the CPU."""
        return copy.deepcopy(self.heads[g]).cpu().eval()


class AttentiveGrid(HeadGrid):
    """G official attentive probes (:class:`~vjepa.probe.attentive.AttentiveClassifier`), computed in token
    space (see the module docstring).

    Args:
        template: the probe every head starts from.
        num_heads: G.
    """

    def __init__(self, template: AttentiveClassifier, num_heads: int) -> None:
        super().__init__(template, num_heads)
        if template.pooler.query_tokens.shape[1] != 1:
            raise ValueError("AttentiveGrid needs a single-query probe")
        if template.pooler.blocks:
            raise ValueError("AttentiveGrid computes the one-block (V-JEPA) probe; use StackedGrid for more")
        self.attn_heads = template.pooler.cross_attention_block.xattn.num_heads
        self.eps = template.pooler.cross_attention_block.norm1.eps  # norm2 has the same

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [G, B, C]
        blk = "pooler.cross_attention_block."
        p = self.stacked(skip=blk + "xattn.proj.")  # proj is stored, never applied (as the official probe)
        b, n, d = tokens.shape
        g, h = self.num_grid_heads, self.attn_heads
        dh = d // h
        xhat = F.layer_norm(tokens, (d,), eps=self.eps)  # [B, N, D], the affine part is per head
        gamma, beta = p[blk + "norm1.weight"], p[blk + "norm1.bias"]  # [G, D]
        query = p["pooler.query_tokens"][:, 0, 0]  # [G, D]
        q = torch.einsum("ge,gde->gd", query, p[blk + "xattn.q.weight"]) + p[blk + "xattn.q.bias"]
        w_kv, b_kv = p[blk + "xattn.kv.weight"], p[blk + "xattn.kv.bias"]  # [G, 2D, D], [G, 2D]
        w_k = w_kv[:, :d].reshape(g, h, dh, d)  # [G, H, dh, D]
        w_v, b_v = w_kv[:, d:].reshape(g, h, dh, d), b_kv[:, d:].reshape(g, h, dh)
        u = torch.einsum("ghc,ghcd->ghd", q.view(g, h, dh), w_k) * gamma[:, None] / math.sqrt(dh)  # [G, H, D]
        scores = xhat @ u.reshape(g * h, d).T.to(xhat.dtype)  # [B, N, G*H]
        weights = scores.softmax(dim=1)  # over tokens
        pooled = (weights.transpose(1, 2) @ xhat).view(b, g, h, d)  # [B, G, H, D]
        pooled = pooled * gamma[None, :, None] + beta[None, :, None]
        values = torch.einsum("bghd,ghcd->bghc", pooled, w_v) + b_v  # [B, G, H, dh]
        x = query + values.reshape(b, g, d)  # [B, G, D]
        y = F.layer_norm(x, (d,), eps=self.eps) * p[blk + "norm2.weight"] + p[blk + "norm2.bias"]
        y = torch.einsum("bgd,gkd->bgk", y, p[blk + "mlp.fc1.weight"]) + p[blk + "mlp.fc1.bias"]
        x = x + torch.einsum("bgk,gdk->bgd", F.gelu(y), p[blk + "mlp.fc2.weight"]) + p[blk + "mlp.fc2.bias"]
        logits = torch.einsum("bgd,gcd->gbc", x, p["linear.weight"])
        return logits + p["linear.bias"][:, None]  # [G, B, C]


class LinearGrid(HeadGrid):
    """G average-pooling probes (:class:`~vjepa.probe.linear.LinearClassifier`).

    Args:
        template: the probe every head starts from.
        num_heads: G.
    """

    def __init__(self, template: LinearClassifier, num_heads: int) -> None:
        super().__init__(template, num_heads)
        self.standardize = template.standardize

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [G, B, C]
        x = tokens.mean(dim=1)  # [B, D], shared by every head
        if self.standardize:
            x = self.heads[0].norm(x)  # the same statistics in every head
        params = self.stacked()
        logits = torch.einsum("bd,gcd->gbc", x, params["linear.weight"])
        return logits + params["linear.bias"][:, None]  # [G, B, C]

    def set_input_stats(self, mean: Tensor, std: Tensor) -> None:
        """Standardization statistics ``[D]`` of the pooled training features (the same for every head)."""
        for head in self.heads:
            head.norm.mean.copy_(mean)
            head.norm.std.copy_(std)


class StackedGrid(HeadGrid):
    """Any probe module, one call per head under ``torch.func.vmap`` over the stacked weights.

    Args:
        template: the probe every head starts from.
        num_heads: G.
    """

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [G, B, C]
        model = self.heads[0]
        buffers = dict(model.named_buffers())  # the same in every head

        def one(params: dict[str, Tensor]) -> Tensor:
            return functional_call(model, {**params, **buffers}, (tokens,))

        with warnings.catch_warnings():  # vmap falls back to a loop for CPU attention: correct, and says so
            warnings.filterwarnings("ignore", message="There is a performance drop")
            return vmap(one, randomness="same")(self.stacked())


def make_grid(template: nn.Module, num_heads: int) -> HeadGrid:
    """The fastest grid for a probe: token-space attention for the official attentive probe, a shared mean
    for the linear one, ``vmap`` for anything else."""
    pooler = getattr(template, "pooler", None)
    if isinstance(template, AttentiveClassifier) and pooler.query_tokens.shape[1] == 1 and not pooler.blocks:
        return AttentiveGrid(template, num_heads)
    if isinstance(template, LinearClassifier):
        return LinearGrid(template, num_heads)
    return StackedGrid(template, num_heads)
