"""Readouts: how tokens become class scores, fitted on one label fraction.

Every readout is a :class:`Readout` in :data:`READOUTS`, behind one interface: what it reads (all tokens,
or mean-pooled ones), whether it has a probe to train, and a ``fit`` that gives a :class:`Fitted` (one scorer
for all its heads at once, and what each head reports). A probe readout (``attentive``, ``linear``) is a grid
of heads, one per (lr, weight decay) setting, trained together; ``knn`` has a single head and nothing to
train.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor, nn

from vjepa.probe.checkpoint import ProbeArch
from vjepa.probe.config import EvalConfig
from vjepa.probe.config import Readout as ReadoutKind
from vjepa.probe.evaluation import Scorer, predict
from vjepa.probe.heads import LinearGrid, make_grid
from vjepa.probe.knn import KNNClassifier, pooled
from vjepa.probe.selection import HeadKeeper, KeptEpoch, SplitScores, Status, chance_top1, trained_threshold
from vjepa.probe.sources import FeatureSource, SubsetSource
from vjepa.probe.training import EpochRecord, log_epoch, planned_epochs, train_grid, view_scores
from vjepa.runtime import Runtime, seed_everything

SCORED_EPOCHS = 20
"""With ``selection.epochs: best``, the selection split is scored after about this many evenly spaced epochs
(every epoch of a 20-epoch run; every 8th of a 167-epoch one) and after the last."""


@dataclass
class HeadReport:
    """One head of a fitted readout.

    Args:
        name: unique in the run (kind, label fraction, lr, weight decay).
        lr: start learning rate (None for k-NN).
        weight_decay: start weight decay (None for k-NN).
        kept: the reported epoch and its training and selection numbers.
        status: ``trained``, ``not_trained`` or ``no_training`` (k-NN).
        history: per epoch: training loss and top-1, selection top-1 and loss (when scored), seconds.
    """

    name: str
    lr: float | None
    weight_decay: float | None
    kept: KeptEpoch
    status: Status
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Fitted:
    """A readout fitted on one label fraction.

    Args:
        fraction: the label fraction.
        train_samples: training samples it saw.
        chance: chance training accuracy (%) of that subset (its largest class).
        threshold: training accuracy (%) a head had to exceed (None for k-NN).
        scorer: tokens ``[B, V, N, D]`` -> view-averaged class probabilities ``[G, B, C]`` of every head.
        heads: one report per head.
        export: head ``g`` as a standalone probe module (None for k-NN).
        epochs: epochs trained (0 for k-NN).
    """

    fraction: float
    train_samples: int
    chance: float
    threshold: float | None
    scorer: Scorer
    heads: list[HeadReport]
    export: Callable[[int], nn.Module] | None = None
    epochs: int = 0


@dataclass
class ReadoutContext:
    """What every fit of a run shares.

    Args:
        cfg: the run's config.
        arch: the probe architecture (None for k-NN).
        train: the training source (all training samples; subsets index into it).
        selection: the selection split's source; None when it is the test split and heads keep their last
            epoch (the selection scores then come from the test pass, see :func:`fill_selection`).
        runtime: device, ranks and the probes' autocast precision.
    """

    cfg: EvalConfig
    arch: ProbeArch | None
    train: FeatureSource
    selection: FeatureSource | None
    runtime: Runtime


Fit = Callable[[ReadoutContext, float, np.ndarray], Fitted]  # (context, label fraction, subset) -> Fitted


@dataclass(frozen=True)
class Readout:
    """One readout kind.

    Args:
        pooled: reads only the mean over tokens (without train-time augmentation its sources are pooled once,
            into memory).
        trains: has a probe to train (an architecture, a grid of heads, an exportable probe).
        fit: fits it on the training samples of one label fraction.
    """

    pooled: bool
    trains: bool
    fit: Fit


def fit_readout(ctx: ReadoutContext, fraction: float, subset: np.ndarray) -> Fitted:
    """Fit the configured readout on the training samples ``subset``."""
    return READOUTS[ctx.cfg.probe.kind].fit(ctx, fraction, subset)


def score_split(scorer: Scorer, source: FeatureSource, ctx: ReadoutContext) -> SplitScores:
    """Per-head top-1 and loss of ``scorer`` on a whole split (counted samples)."""
    preds = predict(scorer, source, ctx.cfg.optimization.batch_size, ctx.runtime).counted_only()
    return SplitScores.of(preds.scores, preds.labels)


def fit_probes(ctx: ReadoutContext, fraction: float, subset: np.ndarray) -> Fitted:
    """Train the lr x weight-decay grid on ``subset``, keeping each head's reported epoch."""
    cfg, runtime = ctx.cfg, ctx.runtime
    settings = cfg.optimization.settings
    seed_everything(cfg.seed)  # every head starts from the same probe weights
    grid = make_grid(ctx.arch.build(), len(settings)).to(runtime.device)  # type: ignore[union-attr]
    if isinstance(grid, LinearGrid) and grid.standardize:
        grid.set_input_stats(*input_stats(ctx.train, subset, cfg.optimization.batch_size, runtime))
    labels = ctx.train.labels[subset]
    threshold = trained_threshold(labels)
    keeper = HeadKeeper(grid, threshold, cfg.selection.epochs)
    histories: list[list[dict[str, float]]] = [[] for _ in settings]

    def scorer(tokens: Tensor) -> Tensor:
        return view_scores(grid, tokens, runtime.precision)[1]

    def after_epoch(record: EpochRecord) -> None:
        scores = None
        if cfg.selection.epochs == "best" and scored_epoch(record.epoch, record.epochs):
            grid.eval()
            scores = score_split(scorer, ctx.selection, ctx)  # type: ignore[arg-type]
            grid.train()
        if scores is not None or cfg.selection.epochs == "last":
            keeper.update(record.epoch, record.train_loss, record.train_top1, scores)
        for g, history in enumerate(histories):
            history.append(_history_row(record, g, scores))
        extra = "" if scores is None else f", best selection top-1 {float(scores.top1.max()):.1f}%"
        log_epoch(runtime, record, extra)

    seed_everything(cfg.seed)
    train_grid(
        grid, settings, ctx.train, subset, cfg.optimization, after_epoch,
        seed=cfg.seed, precision=runtime.precision, runtime=runtime,
    )  # fmt: skip
    keeper.restore()
    grid.eval()
    if cfg.selection.epochs == "last" and ctx.selection is not None:
        keeper.set_selection(score_split(scorer, ctx.selection, ctx))
    kind = cfg.probe.kind
    heads = [
        HeadReport(
            f"{kind}_frac{fraction:g}_lr{lr:g}_wd{wd:g}",
            lr,
            wd,
            kept,
            "trained" if kept.trained else "not_trained",
            history,
        )  # fmt: skip
        for (lr, wd), kept, history in zip(settings, keeper.kept, histories, strict=True)
    ]
    epochs = planned_epochs(cfg.optimization, len(subset), runtime.world_size)
    return Fitted(fraction, len(subset), chance_top1(labels), threshold, scorer, heads, grid.export, epochs)


def scored_epoch(epoch: int, epochs: int) -> bool:
    """Whether the selection split is scored after ``epoch`` (1-based) of ``epochs``."""
    return epoch % max(1, epochs // SCORED_EPOCHS) == 0 or epoch == epochs


def _history_row(record: EpochRecord, g: int, scores: SplitScores | None) -> dict[str, float]:
    row = {
        "epoch": record.epoch,
        "train_loss": float(record.train_loss[g]),
        "train_top1": float(record.train_top1[g]),
        "seconds": round(record.seconds, 3),
    }
    if scores is not None:
        row["selection_top1"] = float(scores.top1[g])
        row["selection_loss"] = float(scores.loss[g])
    return row


def input_stats(
    source: FeatureSource, subset: np.ndarray, batch_size: int, runtime: Runtime
) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std ``[D]`` of the mean-pooled training features (over samples and views)."""
    feats = predict(lambda t: t.float().mean(dim=2)[None], SubsetSource(source, subset), batch_size, runtime)
    x = feats.scores[0].flatten(0, 1)  # [M*V, D]
    return x.mean(0).to(runtime.device), x.std(0, correction=0).clamp_min(1e-6).to(runtime.device)


def fit_knn(ctx: ReadoutContext, fraction: float, subset: np.ndarray) -> Fitted:
    """The k-NN bank of the pooled training features of ``subset``; nothing is trained."""
    cfg, runtime = ctx.cfg, ctx.runtime
    feats = predict(
        lambda t: pooled(t).mean(dim=1)[None], SubsetSource(ctx.train, subset),
        cfg.optimization.batch_size, runtime, "k-NN bank",
    ).counted_only()  # fmt: skip
    knn = KNNClassifier(
        feats.scores[0].to(runtime.device), feats.labels.to(runtime.device),
        cfg.data.num_classes, cfg.probe.knn_k, cfg.probe.knn_temperature,
    )  # fmt: skip

    def scorer(tokens: Tensor) -> Tensor:
        return knn.predict(tokens)[None]

    kept = KeptEpoch(trained=True)
    if ctx.selection is not None:
        scores = score_split(scorer, ctx.selection, ctx)
        kept.selection_top1, kept.selection_loss = float(scores.top1[0]), float(scores.loss[0])
    head = HeadReport(f"knn_frac{fraction:g}", None, None, kept, "no_training")
    return Fitted(fraction, len(subset), chance_top1(ctx.train.labels[subset]), None, scorer, [head])


READOUTS: dict[ReadoutKind, Readout] = {
    "attentive": Readout(pooled=False, trains=True, fit=fit_probes),
    "linear": Readout(pooled=True, trains=True, fit=fit_probes),
    "knn": Readout(pooled=True, trains=False, fit=fit_knn),
}


def fill_selection(fitted: list[Fitted], test_probs: Tensor, test_labels: Tensor) -> None:
    """Selection scores from the test pass (``selection.split: val`` with ``epochs: last``): the heads'
    probabilities ``[sum of heads, M, C]`` in the order of ``fitted``."""
    offset = 0
    for f in fitted:
        scores = SplitScores.of(test_probs[offset : offset + len(f.heads)], test_labels)
        for g, head in enumerate(f.heads):
            head.kept.selection_top1, head.kept.selection_loss = float(scores.top1[g]), float(scores.loss[g])
        offset += len(f.heads)
