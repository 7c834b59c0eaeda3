"""Anti-collapse regularisers for small-scale JEPA training: variance-covariance and SIGReg.

V-JEPA's recipe (EMA target, stop-gradient, L1 on layer-normed targets) is tuned for 10^5 steps of ViT-L; at
CPU scale its representations lose information (RankMe falls, probes score below a random encoder). Two
published regularisers counter that by asking the embeddings of a batch to stay spread out:

- **variance-covariance** (VICReg, Bardes et al. 2022; used on a video JEPA by VJ-VCR, Drozdov et al. 2024):
  ``var = mean_d relu(gamma - sqrt(Var[z_d] + eps))`` keeps every dimension's std above ``gamma``;
  ``cov = sum_{i != j} Cov[z]_{ij}^2 / D`` decorrelates the dimensions.
- **SIGReg** (LeJEPA, Balestriero & LeCun 2025): project the embeddings on random unit directions and test
  each 1-D projection against N(0, 1) with the Epps-Pulley statistic
  ``T = N * integral |phi_N(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt`` (``phi_N`` the empirical characteristic
  function), integrated over ``t in [-t_max, t_max]`` with the trapezoid rule; the loss is the mean over
  directions. Its minimum is an isotropic Gaussian embedding, which cannot collapse.

Token embeddings (``applies_to: context`` or ``predictions``) are first centred per token position: each token minus
the mean of the batch's tokens at the same position (scaled to an unbiased per-position variance; positions
seen once are left out). Without it a position embedding alone would satisfy both regularisers, since tokens at
different positions differ even when every clip maps to the same features: the very collapse they are there
to stop. Clip embeddings (``applies_to: pooled``) are used as they are.

Both are computed over the embeddings of the whole (global) batch: under torch.distributed the sums they
need are all-reduced with gradient (``torch.distributed.nn.functional.all_reduce``), so a 2-rank run computes
the same value as one process on the concatenated batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from vjepa.pretrain.config import RegularizerConfig


def _all_reduce_sum(x: Tensor) -> Tensor:
    """Sum over ranks with a gradient (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_reduce  # lazy: only on a process group

        return all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def _at_least_fp32(x: Tensor) -> Tensor:
    """Statistics in fp32 even under bf16 autocast (float64 inputs stay float64, for gradient checks)."""
    return x if x.dtype == torch.float64 else x.float()


def _global_count(n: int, device: torch.device) -> int:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        count = torch.tensor([n], device=device, dtype=torch.float64)
        dist.all_reduce(count)
        return int(count.item())
    return n


@dataclass
class VarianceCovariance:
    """The two VICReg terms of embeddings ``z`` ``[M, D]`` (rows are samples).

    Args:
        variance: ``mean_d relu(gamma - std_d)``; 0 when every dimension's std is at least ``gamma``.
        covariance: ``sum_{i != j} C_ij^2 / D`` of the (unbiased) covariance matrix ``C``.
    """

    variance: Tensor
    covariance: Tensor


def variance_covariance(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> VarianceCovariance:
    """VICReg's variance hinge and covariance penalty over the rows of ``z`` (all ranks together).

    Args:
        z: ``[M, D]`` embeddings (M >= 2 in total over ranks).
        gamma: the std each dimension should reach.
        eps: added to the variance under the square root (keeps the gradient finite at zero variance).
    """
    if z.ndim != 2:
        raise ValueError(f"expected embeddings [M, D], got {tuple(z.shape)}")
    z = _at_least_fp32(z)
    m = _global_count(z.shape[0], z.device)
    if m < 2:
        raise ValueError("variance-covariance needs at least 2 embeddings in the batch")
    total = _all_reduce_sum(z.sum(dim=0))  # [D]
    mean = total / m
    centred = z - mean  # [M, D]
    scatter = _all_reduce_sum(centred.T @ centred)  # [D, D]
    cov = scatter / (m - 1)
    std = torch.sqrt(torch.diagonal(cov) + eps)  # [D]
    variance = torch.relu(gamma - std).mean()
    off = cov - torch.diag(torch.diagonal(cov))
    covariance = off.pow(2).sum() / z.shape[1]
    return VarianceCovariance(variance, covariance)


def epps_pulley(x: Tensor, t_max: float = 5.0, knots: int = 17) -> Tensor:
    """The Epps-Pulley normality statistic of each column of ``x`` ``[M, P]`` (all ranks together): ``[P]``.

    ``T = M * integral_{-t_max}^{t_max} |ecf(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt`` with the trapezoid rule on
    ``knots`` points of ``[0, t_max]`` (the integrand is even). For M samples of N(0, 1) its expectation is
    ``integral (1 - phi^2) phi dt = sqrt(2 pi) - sqrt(2 pi / 3) = 1.06`` whatever M; for any other distribution
    it grows in proportion to M (a constant or a scaled Gaussian gives hundreds at M = 4096).

    Args:
        x: ``[M, P]``: M samples of P one-dimensional variables.
        t_max: integration range.
        knots: trapezoid points on ``[0, t_max]`` (odd, >= 3).
    """
    if x.ndim != 2:
        raise ValueError(f"expected samples [M, P], got {tuple(x.shape)}")
    if knots < 3:
        raise ValueError(f"knots must be >= 3, got {knots}")
    x = _at_least_fp32(x)
    t = torch.linspace(0.0, t_max, knots, device=x.device, dtype=x.dtype)  # [K]
    gauss = torch.exp(-0.5 * t**2)  # [K] the N(0, 1) characteristic function, also the weight
    dt = t_max / (knots - 1)
    trapezoid = torch.full(
        (knots,), 2.0 * dt, device=x.device, dtype=x.dtype
    )  # x2: the integral over [-t_max, t_max]
    trapezoid[0] = trapezoid[-1] = dt
    m = _global_count(x.shape[0], x.device)
    xt = x.unsqueeze(-1) * t  # [M, P, K]
    cos_mean = _all_reduce_sum(torch.cos(xt).sum(dim=0)) / m  # [P, K]
    sin_mean = _all_reduce_sum(torch.sin(xt).sum(dim=0)) / m  # [P, K]
    err = (cos_mean - gauss) ** 2 + sin_mean**2  # [P, K]
    return m * (err @ (trapezoid * gauss))  # [P]


def random_directions(dim: int, slices: int, seed: int, device: torch.device) -> Tensor:
    """``[dim, slices]`` unit vectors from N(0, I), the same on every rank for the same ``seed``."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    a = torch.randn(dim, slices, generator=gen)
    return (a / a.norm(dim=0, keepdim=True)).to(device)


def sigreg(z: Tensor, slices: int = 256, seed: int = 0, t_max: float = 5.0, knots: int = 17) -> Tensor:
    """SIGReg: the mean Epps-Pulley statistic of ``z`` ``[M, D]`` projected on ``slices`` random directions.

    Args:
        z: ``[M, D]`` embeddings.
        slices: number of random directions (drawn anew per ``seed``; the training loop passes the step).
        seed: seeds the directions (identical on every rank).
        t_max: integration range of the statistic.
        knots: trapezoid points.
    """
    if z.ndim != 2:
        raise ValueError(f"expected embeddings [M, D], got {tuple(z.shape)}")
    z = _at_least_fp32(z)
    directions = random_directions(z.shape[1], slices, seed, z.device).to(z.dtype)  # [D, P]
    return epps_pulley(z @ directions, t_max, knots).mean()


def centred_by_position(tokens: Tensor, index: Tensor, num_positions: int) -> Tensor:
    """Tokens minus the batch mean at their position, scaled by ``sqrt(n / (n - 1))`` (n tokens at that
    position in the global batch), so their variance is the unbiased within-position variance; tokens at
    positions seen only once are dropped.

    Args:
        tokens: ``[B, K, D]``.
        index: ``[B, K]`` each token's position in ``[0, num_positions)``.
        num_positions: N.

    Returns:
        ``[M, D]`` with M <= B * K.
    """
    flat = _at_least_fp32(tokens.reshape(-1, tokens.shape[-1]))  # [B*K, D]
    idx = index.reshape(-1)
    sums = _all_reduce_sum(flat.new_zeros(num_positions, flat.shape[1]).index_add(0, idx, flat))  # [N, D]
    with torch.no_grad():
        counts = _all_reduce_sum(flat.new_zeros(num_positions).index_add(0, idx, flat.new_ones(len(idx))))
    n = counts[idx]  # [B*K]
    keep = n > 1
    centred = (flat - sums[idx] / n.clamp_min(1)[:, None]) * torch.sqrt(n / (n - 1).clamp_min(1))[:, None]
    return centred[keep]


def regularization_terms(
    spec: RegularizerConfig,
    contexts: Sequence[Tensor],
    predictions: Sequence[Tensor],
    seed: int,
    positions: Sequence[tuple[Tensor, Tensor]] | None = None,
    num_positions: int | None = None,
) -> dict[str, Tensor]:
    """The weighted terms ``spec`` adds to the loss, by name (empty for ``none``).

    Args:
        spec: which regulariser, on what, with which weights.
        contexts: the context encoder's outputs, one ``[B, K_ctx, D]`` per mask setting.
        predictions: the predictor's outputs, one ``[B, K_tgt, D]`` per mask setting.
        seed: seeds SIGReg's random directions (the loop passes the step, so they change every step and
            are the same on every rank and after a resume).
        positions: per mask setting, the ``(context [B, K_ctx], target [B, K_tgt])`` token indices; with
            ``num_positions``, token embeddings are centred per position (see the module docstring).
        num_positions: tokens per clip N.

    Returns:
        ``reg_variance`` and ``reg_covariance`` (``vc``) or ``reg_sigreg`` (``sigreg``), each already
        multiplied by its weight.
    """
    if spec.kind == "none":
        return {}
    if spec.applies_to == "pooled":
        z = torch.cat([c.mean(dim=1) for c in contexts])  # [settings * B, D]
    else:
        tokens = contexts if spec.applies_to == "context" else predictions
        which = 0 if spec.applies_to == "context" else 1
        if positions is not None and num_positions is not None:
            parts = [
                centred_by_position(t, p[which], num_positions)
                for t, p in zip(tokens, positions, strict=True)
            ]
        else:
            parts = [t.reshape(-1, t.shape[-1]) for t in tokens]
        z = torch.cat(parts)  # [M, D]
    if spec.kind == "vc":
        vc = variance_covariance(z, gamma=spec.gamma)
        return {"reg_variance": spec.weight * vc.variance, "reg_covariance": spec.cov_weight * vc.covariance}
    return {"reg_sigreg": spec.weight * sigreg(z, slices=spec.slices, seed=seed)}
