"""Fixed 3D sin-cos position tables, and their trilinear resampling to another token grid."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa.grid import TokenGrid

if TYPE_CHECKING:
    from vjepa.models.registry import _GridConfig


def axis_dims(dim: int, uniform_power: bool) -> tuple[int, int, int]:
    """Columns given to the (time, height, width) axes before truncation to ``dim``.

    ``uniform_power``: ``2 * ceil(dim / 6)`` for each axis (the released models). Otherwise time gets
    ``dim / 2`` and height and width ``dim / 4`` each.
    """
    if uniform_power:
        m = 2 * math.ceil(dim / 6)
        return (m, m, m)
    if dim % 4:
        raise ValueError(f"a non-uniform 3D sin-cos table needs a width divisible by 4, got {dim}")
    return (dim // 2, dim // 4, dim // 4)


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """``[sin(p * w_0..w_{dim/2-1}), cos(p * w_0..)]`` with ``w_i = 10000^(-i / (dim/2))``.

    Args:
        dim: even width of the embedding.
        positions: ``[P]`` float64 positions.

    Returns:
        ``[P, dim]`` float64: all sines first, then all cosines (concatenated, not interleaved).
    """
    if dim % 2:
        raise ValueError(f"a 1D sin-cos embedding needs an even width, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # [dim/2]
    angles = positions.to(torch.float64)[:, None] * omega[None, :]  # [P, dim/2]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_3d(dim: int, grid: TokenGrid, uniform_power: bool = True) -> Tensor:
    """The 3D table of the official models: per-axis 1D tables for (t, h, w), concatenated in that order
    and truncated to the first ``dim`` columns.

    Returns:
        ``[N, dim]`` float32, rows in time-major token order.
    """
    dt, dh, dw = axis_dims(dim, uniform_power)
    t, h, w = torch.meshgrid(
        torch.arange(grid.depth), torch.arange(grid.height), torch.arange(grid.width), indexing="ij"
    )
    table = torch.cat(
        [sincos_1d(dt, t.flatten()), sincos_1d(dh, h.flatten()), sincos_1d(dw, w.flatten())], dim=1
    )
    return table[:, :dim].to(torch.float32)


def register_table(module: nn.Module, name: str, dim: int, config: _GridConfig) -> None:
    """Give ``module`` its fixed ``[1, N, dim]`` sin-cos table as buffer ``name`` (stored in the state dict,
    never trained), or None when the config's positions are RoPE (then nothing is stored)."""
    if config.positions == "sincos":  # type: ignore[attr-defined]
        module.register_buffer(name, sincos_3d(dim, config.grid, config.uniform_power).unsqueeze(0))  # type: ignore[attr-defined]
    else:
        module.register_buffer(name, None)


def resample(table: Tensor, source: TokenGrid, target: TokenGrid) -> Tensor:
    """Trilinearly resample a position table laid out on ``source`` to ``target``.

    Follows the official ``interpolate_pos_encoding`` (scale factors target/source, ``align_corners=False``).

    Args:
        table: ``[1, N_source, D]``.

    Returns:
        ``[1, N_target, D]``; ``table`` itself when the grids are equal.
    """
    if source == target:
        return table
    d = table.shape[-1]
    volume = table.reshape(1, source.depth, source.height, source.width, d).permute(0, 4, 1, 2, 3)
    scale = (target.depth / source.depth, target.height / source.height, target.width / source.width)
    out = F.interpolate(volume, scale_factor=scale, mode="trilinear", align_corners=False)
    if tuple(out.shape[2:]) != target.as_tuple():  # float rounding of the scale: fall back to sizes
        out = F.interpolate(volume, size=target.as_tuple(), mode="trilinear", align_corners=False)
    return out.permute(0, 2, 3, 4, 1).reshape(1, target.num_tokens, d)


def infer_grid(table: Tensor) -> tuple[TokenGrid, bool] | None:
    """Recover the token grid and the ``uniform_power`` flag from a stored sin-cos table.

    The first time column is ``sin(t)``, zero exactly on the rows of the first time step; the first height
    column is ``sin(h)``, zero on the first row of patches. That pins H'*W' and W'; the candidate is accepted
    only if recomputing the table reproduces the stored one.

    Args:
        table: ``[1, N, D]`` or ``[N, D]``.

    Returns:
        ``(grid, uniform_power)``, or None when the table is not a 3D sin-cos table of any grid.
    """
    table = table.reshape(-1, table.shape[-1]).to(torch.float32)
    n, d = table.shape
    for uniform_power in (True, False):
        if not uniform_power and d % 4:
            continue
        dt, _, _ = axis_dims(d, uniform_power)
        per_frame = _first_nonzero(table[:, 0]) or n
        width = _first_nonzero(table[:per_frame, dt]) or per_frame
        if n % per_frame or per_frame % width:
            continue
        grid = TokenGrid(n // per_frame, per_frame // width, width)
        if torch.allclose(sincos_3d(d, grid, uniform_power), table, atol=1e-5, rtol=0):
            return grid, uniform_power
    return None


def _first_nonzero(column: Tensor) -> int | None:
    nonzero = torch.nonzero(column.abs() > 1e-6)
    return int(nonzero[0, 0]) if len(nonzero) else None
