"""The demo's encoder-free baseline: multinomial logistic regression on frame differences.

It answers "what do the features add over pixels?": the motion of the synthetic videos is, by design, not
visible in one frame, but the difference of two frames shows where something moved. A linear classifier on
those differences is the simplest reader of motion that needs no encoder at all.

Protocol (the same as the probes'): features standardized with the training set's statistics, a small grid
of L2 strengths, each fitted to convergence (L-BFGS, full batch), the one with the best accuracy on the
selection split reported on the test split, with its training accuracy beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vjepa.data.decode import VideoReader
from vjepa.data.index import load_index
from vjepa.demo.plan import DemoConfig
from vjepa.probe.data import holdout_split

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)
"""L2 strengths of the grid (on standardized features; the loss is the mean cross-entropy)."""


def frame_differences(clips: Tensor, step: int = 1) -> Tensor:
    """``[B, 3, T, H, W]`` clips -> ``[B, 3 * (T - step) * H * W]`` differences of frames ``step`` apart."""
    if clips.ndim != 5 or clips.shape[2] <= step:
        raise ValueError(f"expected clips [B, 3, T > {step}, H, W], got {tuple(clips.shape)}")
    diff = clips[:, :, step:] - clips[:, :, :-step]  # [B, 3, T - step, H, W]
    return diff.flatten(1).float()


@dataclass(frozen=True)
class LinearFit:
    """One fitted classifier of the grid and its accuracies (top-1 %).

    Args:
        weight_decay: its L2 strength.
        train: accuracy on the training set.
        selection: accuracy on the selection split.
        test: accuracy on the test split.
    """

    weight_decay: float
    train: float
    selection: float
    test: float


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(dim=-1) == labels).float().mean()) * 100


def fit_logistic(
    train: tuple[Tensor, Tensor],
    selection: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    num_classes: int,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    max_iter: int = 200,
) -> tuple[LinearFit, list[LinearFit]]:
    """Fit the grid on ``train``, select on ``selection``, report on ``test``.

    Args:
        train, selection, test: ``(features [M, F], labels [M])``.
        num_classes: C.
        weight_decays: the grid.
        max_iter: L-BFGS iterations (full batch).

    Returns:
        The selected fit and every fit of the grid.
    """
    x, y = train
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)

    def prep(v: Tensor) -> Tensor:
        return (v - mean) / std

    xs, xv, xt = prep(x), prep(selection[0]), prep(test[0])
    fits = []
    for wd in weight_decays:
        weight, bias = _fit_one(xs, y, num_classes, wd, max_iter)
        with torch.no_grad():
            fits.append(
                LinearFit(
                    wd,
                    _accuracy(xs @ weight + bias, y),
                    _accuracy(xv @ weight + bias, selection[1]),
                    _accuracy(xt @ weight + bias, test[1]),
                )
            )
    best = max(fits, key=lambda f: (f.selection, -f.weight_decay))
    return best, fits


def _fit_one(
    x: Tensor, y: Tensor, num_classes: int, weight_decay: float, max_iter: int
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression with an L2 penalty, to convergence with full-batch L-BFGS."""
    weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)  # [F, C]
    bias = torch.zeros(num_classes, requires_grad=True)  # [C]
    opt = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach(), bias.detach()


# ------------------------------------------------------------------------------------------------ the demo


def _clips(index: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``[M, 3, T, H, W]`` float clips in [0, 1] and ``[M]`` labels of an index."""
    records = load_index(index)
    frames = []
    for record in records:
        with VideoReader(record.path) as reader:
            frames.append(reader.read_all())
    clips = torch.from_numpy(np.stack(frames)).permute(0, 4, 1, 2, 3).float() / 255
    return clips, torch.tensor([r.label for r in records])


def run_pixel_baseline(cfg: DemoConfig, label: str) -> list[dict[str, float]]:
    """Logistic regression on frame differences for ``label``, one fit per seed (the seed picks the same
    held-out selection split as the probes'): ``[{"top1", "train_top1"} per seed]``."""
    data = cfg.root / "data"
    train_clips, train_labels = _clips(str(data / f"train_{label}.csv"))
    test_clips, test_labels = _clips(str(data / f"val_{label}.csv"))
    x, xt = frame_differences(train_clips), frame_differences(test_clips)
    classes = int(train_labels.max()) + 1
    out = []
    for seed in range(cfg.seeds):
        base, held = holdout_split(train_labels.numpy(), 0.2, seed)
        best, _ = fit_logistic(
            (x[base], train_labels[base]), (x[held], train_labels[held]), (xt, test_labels), classes
        )
        out.append({"top1": best.test, "train_top1": best.train})
    return out
