"""What a run reports: ``metrics.json``, the summary table, the selected probes and their confusion plots.

A head that did not train is reported as ``not trained`` (status, no test number) and warned about; a label
fraction without any trained head makes the command fail after its outputs are written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import Tensor

from vjepa.io import PROBE_RESULTS_FORMAT, write_json
from vjepa.probe.checkpoint import ProbeArch, save_probe
from vjepa.probe.metrics import classification_metrics, save_confusion_png
from vjepa.probe.readouts import Fitted, HeadReport
from vjepa.probe.selection import MIN_MARGIN, SIGMAS, ProbeNotTrainedError, select_head

TRAINED_RULE = (
    f"a head is trained when its training top-1 exceeds the chance level of its training subset (largest class "
    f"share) by {SIGMAS:g} binomial standard deviations, at least {MIN_MARGIN:g} points and at most half the way "
    "to 100%"
)


def head_row(fitted: Fitted, head: HeadReport, test: dict[str, Any] | None) -> dict[str, Any]:
    """One head's entry of ``results``: settings, status, kept epoch, training, selection and test numbers
    (test numbers are null for a head that did not train)."""
    k = head.kept
    row: dict[str, Any] = {
        "name": head.name,
        "fraction": fitted.fraction,
        "lr": head.lr,
        "weight_decay": head.weight_decay,
        "status": head.status,
        "epoch": k.epoch,
        "train_samples": fitted.train_samples,
        "train_loss": _num(k.train_loss),
        "train_top1": _num(k.train_top1),
        "selection_top1": _num(k.selection_top1),
        "selection_loss": _num(k.selection_loss),
    }
    empty = dict.fromkeys(("top1", "top5", "mean_per_class", "per_class", "confusion", "num_samples"))
    row.update(test if test is not None and head.status != "not_trained" else empty)
    row["history"] = head.history
    return row


def build_report(
    fitted: list[Fitted], test_scores: Tensor, test_labels: Tensor, num_classes: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """``(results, selected, warnings)`` from the fitted readouts and the test probabilities
    ``[sum of heads, M, C]`` (heads in the order of ``fitted``)."""
    results, selected, warnings = [], [], []
    offset = 0
    for f in fitted:
        rows = []
        for g, head in enumerate(f.heads):
            test = classification_metrics(test_scores[offset + g], test_labels, num_classes).to_dict()
            test["num_samples"] = int(test.pop("num_samples"))
            rows.append(head_row(f, head, test))
        offset += len(f.heads)
        results += rows
        best = select_head([h.kept for h in f.heads])
        failed = [h.name for h in f.heads if h.status == "not_trained"]
        if failed:
            warnings.append(
                f"label fraction {f.fraction:g}: {len(failed)} of {len(f.heads)} heads did not train (training "
                f"top-1 at or below {f.threshold:.1f}%, chance {f.chance:.1f}%): {', '.join(failed)}"
            )
        selected.append(_selected_row(f, rows, best))
    return results, selected, warnings


def _selected_row(f: Fitted, rows: list[dict[str, Any]], best: int | None) -> dict[str, Any]:
    base = {
        "fraction": f.fraction,
        "train_samples": f.train_samples,
        "epochs": f.epochs,
        "chance_top1": f.chance,
        "trained_above": f.threshold,
    }
    if best is None:
        return {**base, "name": None, "status": "not_trained", "top1": None, "top5": None}
    keys = ("name", "status", "lr", "weight_decay", "epoch", "train_loss", "train_top1", "selection_top1")
    row = rows[best]
    return {
        **base,
        **{k: row[k] for k in keys},
        **{k: row[k] for k in ("top1", "top5", "mean_per_class", "num_samples")},
    }


def summary_lines(
    selected: list[dict[str, Any]], results: list[dict[str, Any]], protocol: dict[str, Any]
) -> list[str]:
    """The printed table: every head's status and training/selection top-1; the test top-1 of the selected
    head only (the result), or ``not trained``."""
    lines = [
        f"selection: {protocol['selection']} ({protocol['selection_samples']} samples, {protocol['selection_epochs']} "
        f"epoch per head); test: {protocol['test_split']} ({protocol['test_samples']} samples)"
    ]
    for sel in selected:
        lines.append(
            f"label fraction {sel['fraction']:g}: {sel['train_samples']} training samples, {sel['epochs']} epochs, "
            f"chance {sel['chance_top1']:.1f}%"
            + (f", trained above {sel['trained_above']:.1f}%" if sel["trained_above"] is not None else "")
        )
        lines.append(
            f"  {'head':<44} {'status':<12} {'epoch':>5} {'train top-1':>11} {'sel top-1':>9} {'test top-1':>10}"
        )
        for r in results:
            if r["fraction"] != sel["fraction"]:
                continue
            test = f"{r['top1']:.2f}" if r["name"] == sel["name"] else "-"
            status = r["status"].replace("_", " ")
            lines.append(
                f"  {r['name']:<44} {status:<12} {r['epoch']:>5} {_fmt(r['train_top1']):>11} "
                f"{_fmt(r['selection_top1']):>9} {test:>10}"
            )
        if sel["name"] is None:
            lines.append("  => not trained: no head fit its training set")
        else:
            lines.append(
                f"  => {sel['name']}: test top-1 {sel['top1']:.2f}, top-5 {sel['top5']:.2f} "
                f"(train top-1 {_fmt(sel['train_top1'])}, selection top-1 {_fmt(sel['selection_top1'])})"
            )
    return lines


def write_outputs(
    out: Path,
    report: dict[str, Any],
    fitted: list[Fitted],
    arch: ProbeArch | None,
    class_names: list[str] | None,
) -> None:
    """``metrics.json``, and for each selected head its confusion plot and its probe folder."""
    write_json(out / "metrics.json", report, PROBE_RESULTS_FORMAT)
    by_name = {r["name"]: r for r in report["results"]}
    for f, sel in zip(fitted, report["selected"], strict=True):
        if sel["name"] is None:
            continue
        row = by_name[sel["name"]]
        save_confusion_png(row["confusion"], out / f"confusion_{sel['name']}.png", class_names, sel["name"])
        if f.export is not None and arch is not None:
            g = [h.name for h in f.heads].index(sel["name"])
            meta = {k: v for k, v in row.items() if k not in ("confusion", "history", "per_class")}
            save_probe(out / "probes" / sel["name"], arch, f.export(g), meta)


def check_trained(selected: list[dict[str, Any]], report_path: Path, lr: list[float], epochs: int) -> None:
    """Raise :class:`ProbeNotTrainedError` when a label fraction has no trained head."""
    failed = [s for s in selected if s["name"] is None]
    if not failed:
        return
    fractions = ", ".join(f"{s['fraction']:g}" for s in failed)
    s = failed[0]
    raise ProbeNotTrainedError(
        f"no probe head trained for label fraction(s) {fractions}: every head's training top-1 stayed at or "
        f"below {s['trained_above']:.1f}% (chance {s['chance_top1']:.1f}%), so the heads did not fit even their "
        f"training set and their test accuracy would mean nothing. Try a larger optimization.lr (the grid's "
        f"largest is {max(lr):g}) or more optimization.epochs (now {epochs}), and check that the labels of "
        f"data.train belong to its videos. The table is in {report_path}."
    )


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
