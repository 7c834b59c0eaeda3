"""The average-pooling readout: mean over all tokens, then one Linear layer (the paper's "average pooling"
baseline against the attentive probe).

With ``standardize`` the pooled feature is first standardized per dimension with fixed statistics of the
training set (as the BatchNorm without affine parameters that MAE puts before its linear probe, but exact
and the same in training and evaluation). Pooled frozen features share a large common component and differ
by little around it, which leaves an unnormalized linear probe at chance for many epochs (see
docs/evaluation.md, "Defaults and the evidence for them").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed per-dimension statistics (buffers, saved with the probe).

    Args:
        dim: feature width D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:  # [B, D] -> [B, D]
        return (x - self.mean) / self.std


class LinearClassifier(nn.Module):
    """``linear(standardize(mean_n tokens[:, n]))``.

    Args:
        embed_dim: token width D.
        num_classes: output classes C.
        standardize: standardize the pooled feature with the training set's statistics.
    """

    def __init__(self, embed_dim: int, num_classes: int, standardize: bool = False) -> None:
        super().__init__()
        self.standardize = standardize
        if standardize:
            self.norm = Standardize(embed_dim)
        self.linear = nn.Linear(embed_dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [B, C]
        x = tokens.mean(dim=1)  # [B, D]
        if self.standardize:
            x = self.norm(x)
        return self.linear(x)  # [B, C]
