"""The average-pooling readout: mean over all tokens, then one Linear layer (the paper's "average pooling"
baseline against the attentive probe)."""

from __future__ import annotations

from torch import Tensor, nn


class LinearClassifier(nn.Module):
    """``linear(mean_n tokens[:, n])``.

    Args:
        embed_dim: token width D.
        num_classes: output classes C.
    """

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embed_dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:  # [B, N, D] -> [B, C]
        return self.linear(tokens.mean(dim=1))  # [B, D] -> [B, C]
