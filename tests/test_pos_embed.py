"""Position tables checked against values computed independently here (numpy, from the formula)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vjepa.grid import TokenGrid
from vjepa.models.pos_embed import axis_dims, infer_grid, resample, sincos_3d


def reference_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    i = np.arange(dim // 2, dtype=np.float64)
    omega = 1.0 / 10000 ** (i / (dim / 2))
    angles = np.outer(pos.astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def reference_3d(dim: int, grid: tuple[int, int, int], widths: tuple[int, int, int]) -> np.ndarray:
    t, h, w = np.meshgrid(*(np.arange(n) for n in grid), indexing="ij")
    parts = [reference_1d(m, axis.reshape(-1)) for m, axis in zip(widths, (t, h, w), strict=True)]
    return np.concatenate(parts, axis=1)[:, :dim].astype(np.float32)


def test_uniform_power_d1024_has_342_dims_per_axis_and_cuts_two_columns():
    assert axis_dims(1024, True) == (342, 342, 342)
    grid = TokenGrid(8, 14, 14)
    table = sincos_3d(1024, grid, uniform_power=True).numpy()
    expected = reference_3d(1024, grid.as_tuple(), (342, 342, 342))
    assert table.shape == (1568, 1024)
    np.testing.assert_allclose(table, expected, atol=1e-6, rtol=0)
    # row 0 (t=h=w=0): per axis 171 zeros (sin 0) then 171 ones (cos 0); w's last two ones are cut
    row0 = np.concatenate([np.zeros(171), np.ones(171)] * 2 + [np.zeros(171), np.ones(169)])
    np.testing.assert_array_equal(table[0], row0.astype(np.float32))
    # the last kept column is the w-cosine of frequency index 168
    w = 5
    assert table[w, -1] == pytest.approx(math.cos(w * 10000 ** (-168 / 171)), abs=1e-6)


def test_non_uniform_d1024_splits_half_quarter_quarter():
    assert axis_dims(1024, False) == (512, 256, 256)
    grid = TokenGrid(8, 14, 14)
    table = sincos_3d(1024, grid, uniform_power=False).numpy()
    np.testing.assert_allclose(table, reference_3d(1024, grid.as_tuple(), (512, 256, 256)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dim,cut", [(384, 0), (768, 0), (1280, 4), (1408, 2), (1664, 4), (192, 0)])
def test_truncation_per_width(dim, cut):
    m = axis_dims(dim, True)[0]
    assert 3 * m - dim == cut


@pytest.mark.parametrize(
    "grid", [TokenGrid(8, 14, 14), TokenGrid(1, 3, 3), TokenGrid(4, 1, 1), TokenGrid(2, 6, 6)]
)
@pytest.mark.parametrize("uniform_power", [True, False])
def test_grid_is_recovered_from_table(grid, uniform_power):
    table = sincos_3d(64, grid, uniform_power)
    assert infer_grid(table) == (grid, uniform_power)


def test_random_table_is_not_mistaken_for_sincos():
    assert infer_grid(torch.randn(64, 64)) is None


def test_resample_is_identity_on_same_grid_and_trilinear_otherwise():
    grid = TokenGrid(4, 4, 4)
    table = sincos_3d(64, grid).unsqueeze(0)
    assert resample(table, grid, grid) is table
    up = resample(table, grid, TokenGrid(8, 8, 8))
    assert up.shape == (1, 512, 64)
    # align_corners=False doubling: output cell 0 sits at source coordinate -0.25 -> clamped to cell 0
    vol = up.reshape(8, 8, 8, 64)
    torch.testing.assert_close(vol[0, 0, 0], table[0, 0])
    # output cell 1 sits at 0.25 along each axis: a trilinear mix of the 8 neighbours of cell (0,0,0)
    src = table.reshape(4, 4, 4, 64)
    mix = sum(
        (0.75 if a == 0 else 0.25) * (0.75 if b == 0 else 0.25) * (0.75 if c == 0 else 0.25) * src[a, b, c]
        for a in (0, 1)
        for b in (0, 1)
        for c in (0, 1)
    )
    torch.testing.assert_close(vol[1, 1, 1], mix, atol=1e-6, rtol=0)
