"""``vjepa eval``: frozen features -> a grid of probe heads per label fraction -> one head selected on a
selection split -> its accuracy on the test split.

The stages, top to bottom (one module each):

1. data (:mod:`~vjepa.probe.data`): the indexes, labels checked before anything is computed;
2. encoder: a checkpoint's ``target_encoder`` by default, or a random baseline;
3. sources (:mod:`~vjepa.probe.caching`, :mod:`~vjepa.probe.sources`): features on the fly or from a cache;
4. readouts (:mod:`~vjepa.probe.readouts`, :mod:`~vjepa.probe.training`): per label fraction, the lr x
   weight-decay grid of heads trained in one pass (or a k-NN bank), each head kept at its best epoch on the
   selection split (:mod:`~vjepa.probe.selection`);
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
from vjepa.models.encoder import VideoEncoder
from vjepa.probe.caching import feature_sources
from vjepa.probe.checkpoint import ProbeArch
from vjepa.probe.config import EvalConfig
from vjepa.probe.data import ProbeData, build_datasets, holdout_split, load_probe_data, stratified_subset
from vjepa.probe.evaluation import pool_features, predict
from vjepa.probe.features import encoder_fingerprint
from vjepa.probe.readouts import Fitted, ReadoutContext, fill_selection, fit_readout
from vjepa.probe.report import TRAINED_RULE, build_report, check_trained, summary_lines, write_outputs
from vjepa.probe.sources import FeatureSource, SubsetSource
from vjepa.runtime import Runtime, log, log_precision, resolve_precision, setup, teardown


def frozen_encoder(cfg: EvalConfig, device: torch.device) -> tuple[VideoEncoder, dict[str, Any]]:
    """The encoder to evaluate, frozen, and what identifies it."""
    from vjepa.checkpoint import check_clip_fits, load_pretrained
    from vjepa.models import build_encoder

    enc_cfg = cfg.encoder
    if enc_cfg.checkpoint:
        encoder = load_pretrained(enc_cfg.checkpoint, num_heads=enc_cfg.num_heads).encoder(enc_cfg.which)
        info = {"checkpoint": str(enc_cfg.checkpoint), "which": enc_cfg.which}
    else:
        torch.manual_seed(enc_cfg.init_seed)
        encoder = build_encoder(enc_cfg.model, num_frames=cfg.data.num_frames, resolution=cfg.data.resolution)
        info = {"checkpoint": None, "random_init": enc_cfg.model, "init_seed": enc_cfg.init_seed}
    names = ("data.num_frames", "data.resolution")
    source = info["checkpoint"] or enc_cfg.model
    check_clip_fits(encoder.config, cfg.data.num_frames, cfg.data.resolution, names, source)
    encoder.eval().requires_grad_(False).to(device)
    info["fingerprint"] = encoder_fingerprint(encoder)
    return encoder, info


def run_eval(cfg: EvalConfig, source: str = "config") -> dict[str, Any]:
    """``vjepa eval``: train and score probes on a frozen encoder; returns (and writes) the metrics.

    Args:
        cfg: the resolved config.
        source: named in error messages (the YAML path).

    Raises:
        ProbeNotTrainedError: a label fraction without any trained head (after the outputs are written).
    """
    cfg.check_runnable(source)
    runtime = setup(cfg.device, cfg.threads)
    try:
        return _run_eval(cfg, runtime)
    finally:
        teardown()


def _run_eval(cfg: EvalConfig, runtime: Runtime) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    if (out / "metrics.json").exists():
        raise FileExistsError(
            f"{out} already holds a finished evaluation (metrics.json); choose another output_dir"
        )
    data = load_probe_data(cfg)  # labels are checked before any feature is computed
    cfg = resolved_config(cfg, data)
    decision = resolve_precision(cfg.precision, runtime.device)
    log_precision(runtime, decision)
    precision = decision.precision
    if runtime.is_main:
        save_config(cfg, out / "config.yaml")
    for warning in data.warnings:
        log(runtime, f"WARNING: {warning}")
    encoder, encoder_info = frozen_encoder(cfg, runtime.device)
    log(
        runtime, f"encoder: {encoder_info}; {runtime.world_size} process(es) on {runtime.device}, {precision}"
    )
    sources = feature_sources(cfg, encoder, encoder_info, build_datasets(cfg, data), precision, runtime)
    if cfg.probe.kind != "attentive" and not cfg.data.train_augment:  # they read mean-pooled tokens only
        sources = {k: pool_features(s, cfg.optimization.batch_size, runtime) for k, s in sources.items()}
    base, selection = selection_source(cfg, sources)
    selection_samples = len(selection if selection is not None else sources["val"])
    arch = probe_arch(cfg, encoder)
    ctx = ReadoutContext(cfg, arch, sources["train"], selection, precision, runtime)
    fitted: list[Fitted] = []
    for fraction in cfg.label_fractions:
        subset = base[stratified_subset(sources["train"].labels[base], fraction, cfg.seed)]
        log(
            runtime,
            f"label fraction {fraction:g}: {len(subset)} training samples, {selection_samples} for selection",
        )
        fitted.append(fit_readout(ctx, fraction, subset))
    report = score_and_report(cfg, data, fitted, sources["val"], encoder_info, selection_samples, runtime)
    report["precision"] = decision.as_dict()
    if runtime.is_main:
        write_outputs(out, report, fitted, arch, data.class_names)
        for line in summary_lines(report["selected"], report["results"], report["protocol"]):
            log(runtime, line)
        for warning in report["warnings"]:
            log(runtime, f"WARNING: {warning}")
        log(runtime, f"wrote {out / 'metrics.json'}")
    check_trained(report["selected"], out / "metrics.json", cfg.optimization.lr, cfg.optimization.epochs)
    return report


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


def probe_arch(cfg: EvalConfig, encoder: VideoEncoder) -> ProbeArch | None:
    """The probe architecture (None for k-NN)."""
    kind = cfg.probe.kind
    if kind == "knn":
        return None
    return cfg.probe.arch(encoder.embed_dim, cfg.data.num_classes, encoder.config.num_heads)


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
