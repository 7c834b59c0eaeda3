"""``vjepa eval``: frozen features -> a grid of probe heads per label fraction -> one head selected on a
selection split -> its accuracy on the test split.

The stages, top to bottom (one module each):

1. data (:mod:`~vjepa.probe.data`): the indexes, labels checked before anything is computed;
2. encoder (:mod:`vjepa.frozen_encoder`, shared with ``vjepa extract``): a checkpoint's ``target_encoder``
   by default, or a random baseline, frozen and fingerprinted;
3. sources (:mod:`~vjepa.probe.caching`, :mod:`~vjepa.probe.sources`): features on the fly or from a cache;
4. readouts (:mod:`~vjepa.probe.readouts`, :mod:`~vjepa.probe.training`): per label fraction, the
   configured :class:`~vjepa.probe.readouts.Readout` is fitted: the lr x weight-decay grid of heads trained
   in one pass (attentive, linear) or a k-NN bank, each head kept at its best epoch on the selection split
   (:mod:`~vjepa.probe.selection`);
5. evaluation (:mod:`~vjepa.probe.evaluation`): one pass over the test split scoring every head;
6. report (:mod:`~vjepa.probe.report`): ``metrics.json``, the table, the selected probes; heads that did
   not train are reported as such, and a fraction without a trained head fails the command.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vjepa.config import save_config
from vjepa.frozen_encoder import freeze_encoder, load_frozen_encoder
from vjepa.models import build_encoder
from vjepa.models.encoder import VideoEncoder
from vjepa.probe.caching import feature_sources
from vjepa.probe.config import EvalConfig
from vjepa.probe.data import ProbeData, build_datasets, holdout_split, load_probe_data, stratified_subset
from vjepa.probe.evaluation import pool_features, predict
from vjepa.probe.readouts import READOUTS, Fitted, ReadoutContext, fill_selection, fit_readout
from vjepa.probe.report import TRAINED_RULE, build_report, check_trained, summary_lines, write_outputs
from vjepa.probe.sources import FeatureSource, SubsetSource
from vjepa.runtime import Runtime, log, log_precision, session


def frozen_encoder(cfg: EvalConfig, device: torch.device) -> tuple[VideoEncoder, dict[str, Any]]:
    """The encoder to evaluate, frozen, and what identifies it: a checkpoint's encoder, or a random baseline."""
    enc_cfg, d = cfg.encoder, cfg.data
    clip = {"num_frames": d.num_frames, "resolution": d.resolution, "device": device}
    names = ("data.num_frames", "data.resolution")
    if enc_cfg.checkpoint:
        frozen = load_frozen_encoder(
            enc_cfg.checkpoint, enc_cfg.which, num_heads=enc_cfg.num_heads, names=names, **clip
        )
        info = {"checkpoint": str(enc_cfg.checkpoint), "which": enc_cfg.which}
    else:
        torch.manual_seed(enc_cfg.init_seed)
        encoder = build_encoder(enc_cfg.model, num_frames=d.num_frames, resolution=d.resolution)
        frozen = freeze_encoder(encoder, enc_cfg.model, names=names, **clip)
        info = {"checkpoint": None, "random_init": enc_cfg.model, "init_seed": enc_cfg.init_seed}
    return frozen.encoder, {**info, "fingerprint": frozen.fingerprint}


def run_eval(cfg: EvalConfig, source: str = "config") -> dict[str, Any]:
    """``vjepa eval``: train and score probes on a frozen encoder; returns (and writes) the metrics.

    Args:
        cfg: the resolved config.
        source: named in error messages (the YAML path).

    Raises:
        ProbeNotTrainedError: a label fraction without any trained head (after the outputs are written).
    """
    cfg.check_runnable(source)
    with session(cfg.device, cfg.threads, cfg.precision) as runtime:
        return _run_eval(cfg, runtime)


def _run_eval(cfg: EvalConfig, runtime: Runtime) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    if (out / "metrics.json").exists():
        raise FileExistsError(
            f"{out} already holds a finished evaluation (metrics.json); choose another output_dir"
        )
    data = load_probe_data(cfg)  # labels are checked before any feature is computed
    cfg = resolved_config(cfg, data)
    log_precision(runtime, runtime.decision)  # type: ignore[arg-type]
    if runtime.is_main:
        save_config(cfg, out / "config.yaml")
    for warning in data.warnings:
        log(runtime, f"WARNING: {warning}")
    encoder, encoder_info = frozen_encoder(cfg, runtime.device)
    runtime.log(
        f"encoder: {encoder_info}; {runtime.world_size} process(es) on {runtime.device}, {runtime.precision}"
    )
    sources = feature_sources(cfg, encoder, encoder_info, build_datasets(cfg, data), runtime)
    readout = READOUTS[cfg.probe.kind]
    if readout.pooled and not cfg.data.train_augment:
        sources = {k: pool_features(s, cfg.optimization.batch_size, runtime) for k, s in sources.items()}
    base, selection = selection_source(cfg, sources)
    selection_samples = len(selection if selection is not None else sources["val"])
    arch = (
        cfg.probe.arch(encoder.embed_dim, cfg.data.num_classes, encoder.config.num_heads)
        if readout.trains
        else None
    )
    ctx = ReadoutContext(cfg, arch, sources["train"], selection, runtime)
    fitted = [fit_fraction(ctx, base, fraction, selection_samples) for fraction in cfg.label_fractions]
    report = score_and_report(cfg, data, fitted, sources["val"], encoder_info, selection_samples, runtime)
    report["precision"] = runtime.decision.as_dict()  # type: ignore[union-attr]
    if runtime.is_main:
        write_outputs(out, report, fitted, arch, data.class_names)
        for line in summary_lines(report["selected"], report["results"], report["protocol"]):
            log(runtime, line)
        for warning in report["warnings"]:
            log(runtime, f"WARNING: {warning}")
        log(runtime, f"wrote {out / 'metrics.json'}")
    check_trained(report["selected"], out / "metrics.json", cfg.optimization.lr, cfg.optimization.epochs)
    return report


def fit_fraction(ctx: ReadoutContext, base: np.ndarray, fraction: float, selection_samples: int) -> Fitted:
    """The readout fitted on a stratified ``fraction`` of the training positions ``base``."""
    cfg = ctx.cfg
    subset = base[stratified_subset(ctx.train.labels[base], fraction, cfg.seed)]
    ctx.runtime.log(
        f"label fraction {fraction:g}: {len(subset)} training samples, {selection_samples} for selection"
    )
    return fit_readout(ctx, fraction, subset)


def resolved_config(cfg: EvalConfig, data: ProbeData) -> EvalConfig:
    """The config with the counted class count and the class names filled in (as saved with the run)."""
    return dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, num_classes=data.num_classes, class_names=data.class_names)
    )


def selection_source(
    cfg: EvalConfig, sources: dict[str, FeatureSource]
) -> tuple[np.ndarray, FeatureSource | None]:
    """``(training positions probes may train on, the selection split's source)``; the source is None when
    the selection split is the test split scored once at the end."""
    train = sources["train"]
    sel = cfg.selection
    if sel.split == "holdout":
        base, held = holdout_split(train.labels, sel.holdout_fraction, cfg.seed)
        return base, SubsetSource(train, held)
    if sel.split == "val" and sel.epochs == "last":
        return np.arange(len(train)), None
    return np.arange(len(train)), sources["selection" if sel.split == "index" else "val"]


def score_and_report(
    cfg: EvalConfig,
    data: ProbeData,
    fitted: list[Fitted],
    test: FeatureSource,
    encoder_info: dict[str, Any],
    selection_samples: int,
    runtime: Runtime,
) -> dict[str, Any]:
    """Score every head of every fraction in one pass over the test split; the report's content."""
    preds = predict(
        lambda t: torch.cat([f.scorer(t) for f in fitted]), test, cfg.optimization.batch_size, runtime
    ).counted_only()
    if cfg.selection.split == "val" and cfg.selection.epochs == "last":
        fill_selection(fitted, preds.scores, preds.labels)
    results, selected, warnings = build_report(fitted, preds.scores, preds.labels, cfg.data.num_classes)
    protocol = {
        "selection": cfg.selection.split,
        "selection_epochs": cfg.selection.epochs,
        "selection_samples": selection_samples,
        "test_split": "data.val",
        "test_samples": len(preds.labels),
        "trained_rule": TRAINED_RULE,
    }
    return {
        "encoder": encoder_info,
        "readout": cfg.probe.kind,
        "world_size": runtime.world_size,
        "num_classes": cfg.data.num_classes,
        "class_names": data.class_names,
        "protocol": protocol,
        "selected": selected,
        "best": {f"{s['fraction']:g}": s["name"] for s in selected},
        "warnings": data.warnings + warnings,
        "results": results,
    }
