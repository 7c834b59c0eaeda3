"""k-nearest-neighbour readout on pooled features: cosine similarity, temperature-weighted votes.

Each sample's tokens are averaged (over tokens, and over views for the memory bank) and L2-normalized. A
query's class scores are ``sum_{j in top-k} exp(sim_j / T) * onehot(label_j)``, normalized to sum to one (the
weighting of Wu et al. 2018 and DINO; k = 20, T = 0.07 by default). Multi-view queries average the per-view
score distributions, as the probes average their softmaxes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pooled(tokens: Tensor) -> Tensor:  # [B, V, N, D] -> [B, V, D], mean over tokens, L2-normalized
    return F.normalize(tokens.float().mean(dim=2), dim=-1)


class KNNClassifier:
    """A memory bank of labelled pooled features.

    Args:
        bank: ``[M, D]`` features (normalized here).
        labels: ``[M]`` int64 labels.
        num_classes: C.
        k: neighbours that vote.
        temperature: vote weight ``exp(similarity / temperature)``.
    """

    def __init__(
        self, bank: Tensor, labels: Tensor, num_classes: int, k: int = 20, temperature: float = 0.07
    ):
        if bank.ndim != 2 or labels.shape != bank.shape[:1]:
            raise ValueError(
                f"bank must be [M, D] with labels [M], got {tuple(bank.shape)}, {tuple(labels.shape)}"
            )
        if k < 1 or temperature <= 0:
            raise ValueError(f"need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
        self.bank = F.normalize(bank.float(), dim=-1)  # [M, D]
        self.labels = labels.long()
        self.num_classes = num_classes
        self.k = min(k, bank.shape[0])
        self.temperature = temperature

    @classmethod
    def from_tokens(
        cls, tokens: Tensor, labels: Tensor, num_classes: int, k: int = 20, temperature: float = 0.07
    ) -> KNNClassifier:
        """Build the bank from training tokens ``[M, V, N, D]`` (views averaged)."""
        return cls(pooled(tokens).mean(dim=1), labels, num_classes, k, temperature)

    def scores(self, queries: Tensor) -> Tensor:  # [B, D] -> [B, C] class distribution
        sims = F.normalize(queries.float(), dim=-1) @ self.bank.T  # [B, M]
        top, idx = sims.topk(self.k, dim=1)  # [B, k]
        weights = (top / self.temperature).exp()  # [B, k]
        votes = torch.zeros(queries.shape[0], self.num_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, self.labels[idx], weights)  # [B, C]
        return votes / votes.sum(dim=1, keepdim=True)

    def predict(self, tokens: Tensor) -> Tensor:  # [B, V, N, D] -> [B, C], mean over views
        feats = pooled(tokens)  # [B, V, D]
        b, v, d = feats.shape
        return self.scores(feats.reshape(b * v, d)).view(b, v, -1).mean(dim=1)
