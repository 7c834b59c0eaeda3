"""Scoring passes: every sample of a split exactly once (each rank its unpadded share), scores gathered on
every rank in dataset order; samples whose file was replaced are dropped."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from vjepa.probe.sources import FeatureSource, MemoryFeatures, SubsetSource
from vjepa.runtime import Runtime

Scorer = Callable[[Tensor], Tensor]  # tokens [B, V, N, D] -> scores [G, B, ...] (G heads)


@dataclass
class Predictions:
    """Scores of every counted sample, in dataset order, identical on every rank.

    Args:
        index: ``[M]`` dataset positions (each exactly once).
        scores: ``[G, M, ...]`` (``[G, M, C]`` class probabilities for probes).
        labels: ``[M]``.
        counted: ``[M]`` False for samples whose file was replaced by another.
    """

    index: Tensor
    scores: Tensor
    labels: Tensor
    counted: Tensor

    def counted_only(self) -> Predictions:
        """The samples that count in metrics."""
        c = self.counted
        return Predictions(self.index[c], self.scores[:, c], self.labels[c], self.counted[c])


def predict(
    scorer: Scorer,
    source: FeatureSource,
    batch_size: int,
    runtime: Runtime,
    desc: str = "scoring",
) -> Predictions:
    """Score every sample of ``source`` once, then gather (every sample, counted or not)."""
    mine = np.asarray(runtime.share(len(source)), dtype=np.int64)
    parts: dict[str, list[Tensor]] = {"index": [], "labels": [], "counted": [], "scores": []}
    total = math.ceil(len(mine) / batch_size)
    with torch.no_grad():
        for batch in runtime.track(source.batches(mine, batch_size, 0), total, desc, unit="batch"):
            parts["index"].append(batch.index.cpu())
            parts["labels"].append(batch.labels.cpu())
            parts["counted"].append(batch.counted.cpu())
            parts["scores"].append(scorer(batch.tokens).float().cpu())
    local = {
        k: torch.cat(v, dim=1 if k == "scores" else 0) if v else torch.zeros(0) for k, v in parts.items()
    }
    gathered = [local]
    if runtime.distributed:
        gathered = [None] * runtime.world_size  # type: ignore[list-item]
        dist.all_gather_object(gathered, local)
    gathered = [g for g in gathered if len(g["index"])]
    index = torch.cat([g["index"] for g in gathered]).long()
    order = index.argsort()
    index = index[order]
    if len(index) != len(source) or not torch.equal(index, torch.arange(len(source))):
        raise RuntimeError(f"scoring covered {len(index)} samples of {len(source)} (duplicates or gaps)")
    counted = torch.cat([g["counted"] for g in gathered]).bool()[order]
    labels = torch.cat([g["labels"] for g in gathered]).long()[order]
    scores = torch.cat([g["scores"] for g in gathered], dim=1)[:, order]
    return Predictions(index, scores, labels, counted)


def pool_features(
    source: FeatureSource, batch_size: int, runtime: Runtime, subset: np.ndarray | None = None
) -> MemoryFeatures:
    """The mean over tokens of every view, held in memory: ``[M, V, 1, D]`` on the run's device (all a
    linear or k-NN readout reads: one pass instead of one per epoch)."""
    src = source if subset is None else SubsetSource(source, subset)
    feats = predict(lambda t: t.float().mean(dim=2)[None], src, batch_size, runtime, "pooling features")
    tokens = feats.scores[0][:, :, None].to(runtime.device)  # [M, V, 1, D]
    return MemoryFeatures(tokens, feats.labels.to(runtime.device), feats.counted)
