"""Figures (PNG via matplotlib's Agg backend, GIF via Pillow): masks over frames, and the demo report's plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vjepa.grid import TokenGrid

# token states in a mask overlay
CONTEXT, TARGET, DROPPED = 0, 1, 2
_TINT = {TARGET: np.array([230, 60, 40]), DROPPED: np.array([120, 120, 120])}


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib  # lazy on purpose: matplotlib takes about a second to import, needed only for a figure

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def token_states(context: np.ndarray, target: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """Per token: CONTEXT (the encoder sees it), TARGET (predicted) or DROPPED (in neither list, which the
    official truncation to the batch minimum produces).

    Args:
        context: ``[K_ctx]`` token indices of one sample.
        target: ``[K_tgt]`` token indices of the same sample.

    Returns:
        ``[T', H', W']`` int array.
    """
    states = np.full(grid.num_tokens, DROPPED, dtype=np.int64)
    states[np.asarray(target)] = TARGET
    states[np.asarray(context)] = CONTEXT
    return states.reshape(grid.as_tuple())


def overlay(frames: np.ndarray, states: np.ndarray, tubelet_size: int, patch_size: int) -> np.ndarray:
    """Tint the pixels of hidden tokens: red for targets, grey for dropped ones; context pixels unchanged.

    Args:
        frames: ``[T, H, W, 3]`` uint8 frames of the clip the grid was computed from.
        states: ``[T', H', W']`` from :func:`token_states`.

    Returns:
        ``[T, H, W, 3]`` uint8.
    """
    t, h, w, _ = frames.shape
    per_pixel = states.repeat(tubelet_size, 0).repeat(patch_size, 1).repeat(patch_size, 2)  # [T'', H'', W'']
    full = np.full((t, h, w), CONTEXT, dtype=np.int64)
    pt, ph, pw = (min(a, b) for a, b in zip(per_pixel.shape, (t, h, w), strict=True))
    full[:pt, :ph, :pw] = per_pixel[:pt, :ph, :pw]
    out = frames.astype(np.float32)
    for state, colour in _TINT.items():
        hit = full == state
        out[hit] = 0.35 * out[hit] + 0.65 * colour
    return out.clip(0, 255).astype(np.uint8)


def plot_masks(
    frames: np.ndarray,
    settings: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    tubelet_size: int,
    patch_size: int,
    title: str | None = None,
) -> Path:
    """One row per mask setting, one column per tubelet time step (its first frame): what each setting hides.

    Args:
        frames: ``[T, H, W, 3]`` uint8.
        settings: name -> ``[T', H', W']`` token states.
        path: the PNG to write.
    """
    plt = pyplot()
    steps = next(iter(settings.values())).shape[0]
    fig, axes = plt.subplots(
        len(settings), steps, figsize=(1.6 * steps, 1.7 * len(settings) + 0.4), squeeze=False
    )
    for row, (name, states) in enumerate(settings.items()):
        tinted = overlay(frames, states, tubelet_size, patch_size)
        counts = np.bincount(states.reshape(-1), minlength=3)
        for col in range(steps):
            ax = axes[row, col]
            ax.imshow(tinted[min(col * tubelet_size, len(tinted) - 1)])
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"{name}\nctx {counts[CONTEXT]} / tgt {counts[TARGET]}", fontsize=8)
            if row == 0:
                ax.set_title(f"t={col * tubelet_size}", fontsize=8)
    fig.suptitle(title or "red: predicted (hidden) tokens; grey: dropped by truncation", fontsize=9)
    fig.tight_layout()
    return _save(plt, fig, path)


def save_gif(frames: np.ndarray, path: str | Path, fps: float = 4.0) -> Path:
    """Write ``[T, H, W, 3]`` uint8 frames as a looping GIF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def plot_curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    title: str,
    xlabel: str = "step",
    ylabel: str = "",
    logy: bool = False,
) -> Path:
    """Line plot of named (x, y) series."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name, linewidth=1.2)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_bars(
    groups: Mapping[str, Mapping[str, tuple[float, float]]],
    path: str | Path,
    *,
    title: str,
    ylabel: str = "accuracy (%)",
    reference: float | None = None,
) -> Path:
    """Grouped bars with error bars: ``groups[group][bar] = (mean, spread)``; an optional dashed reference line
    (e.g. chance)."""
    plt = pyplot()
    group_names = list(groups)
    bar_names = list(dict.fromkeys(b for g in groups.values() for b in g))
    width = 0.8 / max(1, len(bar_names))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.4 * len(group_names) * max(1, len(bar_names))) + 3.0, 3.6))
    for i, bar in enumerate(bar_names):
        xs = [g + (i - (len(bar_names) - 1) / 2) * width for g in range(len(group_names))]
        means = [groups[g].get(bar, (np.nan, 0))[0] for g in group_names]
        spreads = [groups[g].get(bar, (np.nan, 0))[1] for g in group_names]
        ax.bar(xs, means, width, yerr=spreads, capsize=2, label=bar)
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=0.8, label="chance")
    ax.set_xticks(range(len(group_names)))
    ax.set_xticklabels(group_names, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(plt, fig, path)


def pca_colours(tokens: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """First three principal components of patch features, min-max scaled to RGB per component.

    Args:
        tokens: ``[N, D]`` features of one clip.

    Returns:
        ``[T', H', W', 3]`` float in [0, 1].
    """
    x = tokens.astype(np.float64) - tokens.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:3].T  # [N, 3]
    lo, hi = proj.min(0, keepdims=True), proj.max(0, keepdims=True)
    rgb = (proj - lo) / np.maximum(hi - lo, 1e-12)
    return rgb.reshape(*grid.as_tuple(), 3)


def plot_pca(
    frames: np.ndarray, rows: Mapping[str, np.ndarray], path: str | Path, *, tubelet_size: int, steps: int = 4
) -> Path:
    """Frames on the first row, then one row per encoder: its patch-feature PCA as colour.

    Args:
        frames: ``[T, H, W, 3]`` uint8.
        rows: name -> ``[T', H', W', 3]`` colours from :func:`pca_colours`.
    """
    plt = pyplot()
    depth = next(iter(rows.values())).shape[0]
    cols = list(np.linspace(0, depth - 1, min(steps, depth)).round().astype(int))
    fig, axes = plt.subplots(
        1 + len(rows), len(cols), figsize=(1.8 * len(cols), 1.8 * (1 + len(rows))), squeeze=False
    )
    for c, t in enumerate(cols):
        axes[0, c].imshow(frames[min(t * tubelet_size, len(frames) - 1)])
        axes[0, c].set_title(f"t={t * tubelet_size}", fontsize=8)
        for r, (name, colours) in enumerate(rows.items(), start=1):
            axes[r, c].imshow(colours[t], interpolation="nearest")
            if c == 0:
                axes[r, c].set_ylabel(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("frames", fontsize=8)
    fig.suptitle("PCA of patch features (first 3 components as RGB)", fontsize=9)
    fig.tight_layout()
    return _save(plt, fig, path)
