"""Selecting tokens by index: the one operation that connects masks to models."""

from __future__ import annotations

import torch
from torch import Tensor


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """Keep, for every sample, the tokens at ``index`` in the order given.

    Args:
        x: token features, ``[B, N, D]``.
        index: token indices per sample, ``[B, K]`` int64 (broadcast over a batch of 1 is allowed).

    Returns:
        ``[B, K, D]``.
    """
    if index.ndim != 2:
        raise ValueError(f"token indices must be [B, K], got shape {tuple(index.shape)}")
    if index.shape[0] != x.shape[0]:
        if x.shape[0] == 1:
            x = x.expand(index.shape[0], -1, -1)
        else:
            raise ValueError(f"{index.shape[0]} rows of token indices for a batch of {x.shape[0]}")
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
