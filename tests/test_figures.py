"""Figures: mask overlays mark exactly the hidden tokens; files are written."""

from __future__ import annotations

import numpy as np

from vjepa.figures import (
    CONTEXT,
    DROPPED,
    TARGET,
    overlay,
    plot_bars,
    plot_curves,
    plot_masks,
    save_gif,
    token_states,
)
from vjepa.grid import TokenGrid


def test_token_states_and_overlay_mark_hidden_pixels_only():
    grid = TokenGrid(2, 2, 2)
    states = token_states(np.array([0, 5]), np.array([1, 2, 3]), grid)
    assert states.reshape(-1).tolist() == [
        CONTEXT,
        TARGET,
        TARGET,
        TARGET,
        DROPPED,
        CONTEXT,
        DROPPED,
        DROPPED,
    ]
    frames = np.full((4, 32, 32, 3), 100, dtype=np.uint8)
    out = overlay(frames, states, tubelet_size=2, patch_size=16)
    assert (out[0:2, :16, :16] == 100).all()  # token 0: context, untouched
    assert (out[0:2, :16, 16:, 0] > 150).all()  # token 1: target, tinted red
    assert (out[2:4, :16, 16:] == 100).all()  # token 5: context


def test_figure_files_are_written(tmp_path):
    grid = TokenGrid(2, 2, 2)
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    states = token_states(np.array([0]), np.array([1, 2]), grid)
    assert (
        plot_masks(frames, {"a": states, "b": states}, tmp_path / "m.png", tubelet_size=2, patch_size=16)
        .stat()
        .st_size
        > 0
    )
    assert save_gif(overlay(frames, states, 2, 16), tmp_path / "m.gif").read_bytes()[:3] == b"GIF"
    assert plot_curves({"loss": ([0, 1, 2], [3.0, 2.0, 1.0])}, tmp_path / "c.png", title="loss").is_file()
    assert plot_bars(
        {"motion": {"vjepa": (80.0, 2.0), "random": (40.0, 1.0)}},
        tmp_path / "b.png",
        title="acc",
        reference=25,
    ).is_file()
