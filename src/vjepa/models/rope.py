"""3D rotary position embedding (RoPE) of V-JEPA 2: q and k (never v) are rotated by each token's grid position.

The layout the released V-JEPA 2 weights were trained with (official ``rotate_queries_or_keys``, reproduced by
Hugging Face's ``VJEPA2RopeAttention``):

- with ``seg = 2 * ((head_dim // 3) // 2)``, channels ``[0, seg)`` of every head rotate by the token's time index
  ``t``, ``[seg, 2 seg)`` by its row ``h``, ``[2 seg, 3 seg)`` by its column ``w``; the remaining channels are not
  rotated (head_dim 64: 20 + 20 + 20, and 4 left as they are);
- frequencies ``omega_i = 10000^(-i / (seg / 2))`` for ``i < seg / 2``;
- the angle of channel ``c`` of a segment is ``position * omega_(c mod seg/2)``: the ``seg / 2`` frequencies are
  *repeated* (``w0..w_{m-1}, w0..w_{m-1}``), not interleaved, while the rotation pairs adjacent channels
  ``(2j, 2j+1)``. The official code calls this a bug and keeps it because the weights depend on it; so do we;
- positions are the integer ``(t, h, w)`` of each token, unscaled.

Unlike the official and Hugging Face code, which build the angles in the activation dtype (bf16 under autocast,
angles off by up to 0.03 rad), the tables here are always computed in fp32 and q, k are rotated in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vjepa.grid import TokenGrid

ROPE_BASE = 10000.0


def rope_segment(head_dim: int) -> int:
    """Channels per axis: ``2 * ((head_dim // 3) // 2)``; 20 for head_dim 64 (ViT-L, ViT-H, and V-JEPA 2's
    ViT-g: 1408 / 22)."""
    return 2 * ((head_dim // 3) // 2)


def grid_positions(index: Tensor, layout: TokenGrid) -> Tensor:
    """The ``(t, h, w)`` of flat time-major token indices on ``layout`` (only its height and width matter).

    Args:
        index: ``[..., K]`` integer token indices.
        layout: the grid the indices are read on.

    Returns:
        ``[..., K, 3]`` float32.
    """
    per_frame = layout.height * layout.width
    t = torch.div(index, per_frame, rounding_mode="floor")
    rest = index - t * per_frame
    h = torch.div(rest, layout.width, rounding_mode="floor")
    w = rest - h * layout.width
    return torch.stack([t, h, w], dim=-1).to(torch.float32)


def frequencies(seg: int, device: torch.device | None = None) -> Tensor:
    """``omega_i = 1 / 10000^(i / (seg/2))``, ``i < seg/2``, in fp32: ``[seg / 2]``."""
    m = seg // 2
    exponent = torch.arange(m, dtype=torch.float32, device=device) / float(m)
    return 1.0 / ROPE_BASE**exponent


@dataclass(frozen=True)
class RopeTables:
    """Cosines and sines of every (token, channel) angle, computed once per forward and shared by all blocks.

    Args:
        cos: ``[B or 1, 1, K, head_dim]`` fp32 (1 on the channels that are not rotated).
        sin: same shape (0 on the channels that are not rotated), with the sign of the pair's partner
            folded in: ``-sin`` on even channels, ``+sin`` on odd ones.
    """

    cos: Tensor
    sin: Tensor

    def rotate(self, x: Tensor) -> Tensor:
        """Turn adjacent channel pairs ``(x0, x1)`` of ``x`` ``[..., K, head_dim]`` into
        ``(x0 cos a0 - x1 sin a0, x1 cos a1 + x0 sin a1)`` (in fp32; the result has ``x``'s dtype)."""
        xf = x.float()
        swapped = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x0, x1) -> (x1, x0)
        return torch.mul(xf, self.cos).addcmul_(swapped, self.sin).to(x.dtype)


def rope_tables(positions: Tensor, head_dim: int) -> RopeTables:
    """The tables for tokens at ``positions``.

    Args:
        positions: ``[B, K, 3]`` or ``[K, 3]`` ``(t, h, w)`` per token.
        head_dim: channels per head.

    Returns:
        Tables of shape ``[B or 1, 1, K, head_dim]``.
    """
    seg = rope_segment(head_dim)
    if seg < 2:
        raise ValueError(f"3D RoPE needs at least 6 channels per head, got head_dim={head_dim}")
    if positions.ndim == 2:
        positions = positions.unsqueeze(0)
    omega = frequencies(seg, positions.device)  # [seg/2]
    angles = positions.to(torch.float32).unsqueeze(-1) * omega  # [B, K, 3, seg/2]
    angles = torch.cat([angles, angles], dim=-1).flatten(-2)  # [B, K, 3*seg]: frequencies repeated per axis
    cos, sin = angles.cos(), angles.sin()
    sin = sin * torch.tensor([-1.0, 1.0], device=sin.device).repeat(sin.shape[-1] // 2)  # partner's sign
    rest = head_dim - 3 * seg
    if rest:
        cos = F.pad(cos, (0, rest), value=1.0)
        sin = F.pad(sin, (0, rest), value=0.0)
    return RopeTables(cos.unsqueeze(1), sin.unsqueeze(1))  # [B, 1, K, head_dim]


def tables_for(
    index: Tensor | None, clip_grid: TokenGrid, layout: TokenGrid, head_dim: int, device: torch.device
) -> RopeTables:
    """Tables for the tokens ``index`` (``[B, K]``; None: every token of the clip) read on ``layout``."""
    if index is None:
        index = torch.arange(clip_grid.num_tokens, device=device)
    return rope_tables(grid_positions(index.to(device), layout), head_dim)
