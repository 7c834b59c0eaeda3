"""What every mask strategy produces, and the one place where per-sample masks become a batch.

A mask is a pair of index lists over the clip's tokens (token order: time-major, then row, then column;
see :class:`vjepa.grid.TokenGrid`): the *context* the encoder sees and the *target* the predictor
predicts. Within a batch every sample must keep the same number of indices, so that the lists stack
into ``[B, K]`` tensors. Strategies whose samples have unequal counts (multi-block) are cut to the
batch minimum by :func:`pair_from_target`, in one of two :data:`Truncation` modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from vjepa.grid import TokenGrid

Truncation = Literal["official", "random"]
"""How a sample's index list is cut to the batch minimum.

``official``: keep the lowest indices, exactly as the official collator does. Tokens are time-major,
so this drops the latest frames first, and the masking ratio depends on the batch size.
``random``: keep a uniformly random subset of the same size (returned in ascending order).
"""

TRUNCATIONS: tuple[Truncation, ...] = ("official", "random")


@dataclass(frozen=True)
class MaskPair:
    """Context and target token indices of one mask setting for a whole batch.

    Args:
        context: ``[B, K_ctx]`` int64, strictly ascending per row: the tokens the context encoder sees.
        target: ``[B, K_tgt]`` int64, strictly ascending per row: the tokens the predictor predicts.
    """

    context: Tensor  # [B, K_ctx] int64
    target: Tensor  # [B, K_tgt] int64

    def __post_init__(self) -> None:
        for name in ("context", "target"):
            value = getattr(self, name)
            if value.ndim != 2 or value.dtype != torch.int64:
                raise ValueError(
                    f"MaskPair.{name} must be a [B, K] int64 tensor, got {tuple(value.shape)} {value.dtype}"
                )
        if self.context.shape[0] != self.target.shape[0]:
            raise ValueError(
                f"MaskPair batch sizes differ: context {self.context.shape[0]}, target {self.target.shape[0]}"
            )

    @property
    def batch_size(self) -> int:
        return self.context.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MaskPair:
        """The same pair with both index tensors on ``device``.

        Args:
            device: where the tensors go.
            non_blocking: passed to :meth:`torch.Tensor.to` (useful from pinned memory).
        """
        return MaskPair(
            self.context.to(device, non_blocking=non_blocking),
            self.target.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> MaskPair:
        """The same pair in page-locked memory (needs an accelerator)."""
        return MaskPair(self.context.pin_memory(), self.target.pin_memory())

    def repeat_interleave(self, repeats: int) -> MaskPair:
        """Each row repeated ``repeats`` times in place: ``[B, K] -> [B * repeats, K]``.

        Args:
            repeats: copies of each row (the clips per video, which share their video's masks).
        """
        if repeats == 1:
            return self
        return MaskPair(
            self.context.repeat_interleave(repeats, dim=0),  # [B * repeats, K_ctx]
            self.target.repeat_interleave(repeats, dim=0),  # [B * repeats, K_tgt]
        )


@runtime_checkable
class MaskGenerator(Protocol):
    """A mask strategy: draws the masks of one batch from a numpy generator.

    Implementations must draw only from ``rng`` so that the masks are a function of its seed.
    """

    grid: TokenGrid

    def __call__(self, batch_size: int, rng: np.random.Generator) -> MaskPair: ...


def pair_from_target(
    is_target: np.ndarray,
    truncation: Truncation = "official",
    rng: np.random.Generator | None = None,
    max_keep: int | None = None,
) -> MaskPair:
    """Turn per-sample target sets into a batch of index lists with equal lengths.

    The context is the complement of the target. ``K_tgt`` is the smallest target count in the
    batch and ``K_ctx`` the smallest context count, further capped at ``max_keep``; each sample's
    lists are then cut to those sizes according to ``truncation``. A token cut away is in neither
    list for that sample.

    Args:
        is_target: ``[B, N]`` bool, True where a token is to be predicted.
        truncation: ``"official"`` keeps each sample's lowest indices; ``"random"`` keeps a uniformly
            random subset of the same size.
        rng: the generator for ``"random"`` truncation (required there, unused otherwise).
        max_keep: upper bound on ``K_ctx``; None for no bound.

    Returns:
        The :class:`MaskPair` (``[B, K_ctx]`` and ``[B, K_tgt]``, rows strictly ascending).
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
    if truncation == "random" and rng is None:
        raise ValueError("truncation='random' needs a numpy Generator `rng`")
    if max_keep is not None and max_keep < 1:
        raise ValueError(f"max_keep must be >= 1 or None, got {max_keep}")
    is_target = np.asarray(is_target, dtype=bool)
    if is_target.ndim != 2:
        raise ValueError(f"is_target must be [B, N], got shape {is_target.shape}")
    is_context = ~is_target  # [B, N]
    num_target = is_target.sum(axis=1)  # [B]
    num_context = is_target.shape[1] - num_target  # [B]
    if int(num_target.min()) == 0:
        raise ValueError("a sample has no target tokens: there would be nothing to predict")
    if int(num_context.min()) == 0:
        raise ValueError("a sample has no context tokens: the encoder would see nothing")
    k_target = int(num_target.min())
    k_context = int(num_context.min())
    if max_keep is not None:
        k_context = min(k_context, max_keep)
    context = _keep_k(is_context, num_context, k_context, truncation, rng)  # [B, K_ctx]
    target = _keep_k(is_target, num_target, k_target, truncation, rng)  # [B, K_tgt]
    return MaskPair(torch.from_numpy(context), torch.from_numpy(target))


def _keep_k(
    member: np.ndarray, counts: np.ndarray, k: int, truncation: Truncation, rng: np.random.Generator | None
) -> np.ndarray:
    """Ascending indices of ``k`` members per row: ``[B, N] bool, [B] counts -> [B, k] int64``."""
    batch_size, num_tokens = member.shape
    # Flat positions of all members, row after row, each row ascending: row b's members sit at
    # flat[starts[b] : starts[b] + counts[b]].
    flat = np.flatnonzero(member)  # [sum(counts)]
    if (counts == k).all():
        chosen = flat.reshape(batch_size, k)  # [B, k]
    else:
        starts = np.cumsum(counts) - counts  # [B]
        if truncation == "official":
            offsets = np.arange(k)[None, :]  # [1, k]: the k lowest members of each row
        else:
            assert rng is not None
            offsets = _random_offsets(counts, k, rng)  # [B, k]
        chosen = flat[starts[:, None] + offsets]  # [B, k]
    rows = np.arange(batch_size, dtype=np.int64)[:, None] * num_tokens  # [B, 1]
    return (chosen - rows).astype(np.int64, copy=False)


def _random_offsets(counts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random k-subset of ``range(counts[b])`` for each row b, ascending: ``[B, k]``.

    The subset is the k smallest of i.i.d. uniform keys; slots past a row's count get a key above
    every real one.
    """
    batch_size, width = counts.shape[0], int(counts.max())
    keys = rng.random((batch_size, width))  # [B, width] float64
    keys[np.arange(width) >= counts[:, None]] = 2.0
    threshold = np.partition(keys, k - 1, axis=1)[:, k - 1 : k]  # [B, 1], each row's k-th smallest key
    chosen = keys <= threshold  # [B, width]: exactly k per row unless keys tie (p ~ 1e-13)
    if int(chosen.sum()) == batch_size * k:
        rows = np.arange(batch_size)[:, None] * width  # [B, 1]
        return np.flatnonzero(chosen).reshape(batch_size, k) - rows
    return np.sort(np.argpartition(keys, k - 1, axis=1)[:, :k], axis=1)
