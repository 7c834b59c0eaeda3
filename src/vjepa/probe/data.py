"""The probe's data stage: labelled indexes read and checked before any feature is computed, the datasets
built on them, the held-out selection split and the label-fraction subsets.

Checks (each error names the config key, and the file and line where there is one):

- a CSV line without an integer label (raised by the index reader), a plain path list (no labels at all);
- a label outside ``[0, num_classes)``; ``num_classes: 0`` counts the classes from the training index
  (largest label + 1, or the number of class folders);
- ``class_names`` of the wrong length; train and test class folders that differ (their labels would mean
  different classes);
- fewer than two classes in the training index.

Classes without training samples, and test classes absent from training, are warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from vjepa.data.clip_cache import open_clip_cache
from vjepa.data.datasets import EvalVideoDataset, ImageDataset, VideoClipDataset
from vjepa.data.index import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoRecord,
    read_csv_index,
    read_folder_index,
)
from vjepa.data.sampling import ClipSpec
from vjepa.data.transforms import CropSpec, EvalViewSpec
from vjepa.errors import VjepaError
from vjepa.probe.config import EvalConfig

SPLIT_KEYS = {"train": "data.train", "val": "data.val", "selection": "selection.index"}


class LabelError(VjepaError):
    """Labels that do not fit the config: names the key, and the file and line."""


@dataclass(frozen=True)
class LabelledIndex:
    """One index file (or folder) and where each record came from.

    Args:
        key: the config key that names it (``data.train``, ...).
        source: the file or folder.
        records: its records.
        lines: the line of each record in the file (None for class folders).
        classes: the class folder names (None for CSV files).
    """

    key: str
    source: str
    records: list[VideoRecord]
    lines: list[int] | None
    classes: list[str] | None

    @property
    def labels(self) -> np.ndarray:  # [M] int64
        return np.array([r.label for r in self.records], dtype=np.int64)

    def where(self, i: int) -> str:
        """``file:line`` of record ``i`` (or the file for folders)."""
        return f"{self.source}:{self.lines[i]}" if self.lines is not None else self.records[i].path


@dataclass
class ProbeData:
    """The checked indexes of a run.

    Args:
        indexes: ``train``, ``val`` and, with ``selection.split: index``, ``selection``.
        num_classes: C (as configured, or counted).
        class_names: one per class, or None.
        warnings: problems that do not stop the run.
    """

    indexes: dict[str, LabelledIndex]
    num_classes: int
    class_names: list[str] | None
    warnings: list[str] = field(default_factory=list)


def read_labelled_index(key: str, source: str, kind: str) -> LabelledIndex:
    """A CSV file or a folder of class folders, with the line of every record; anything else is an error."""
    path = Path(source)
    if path.is_dir():
        exts = IMAGE_EXTENSIONS if kind == "image" else VIDEO_EXTENSIONS
        records, classes = read_folder_index(path, exts)
        return LabelledIndex(key, source, records, None, classes)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: index {path} does not exist")
    if path.suffix.lower() != ".csv":
        raise LabelError(
            f"{key}: {path} is a plain path list without labels; a probe needs a CSV of '<path> <label>' "
            "lines or a folder of class folders"
        )
    records = read_csv_index(path)
    with open(path, encoding="utf-8") as f:  # the reader skips blank lines: number the others
        lines = [n for n, raw in enumerate(f, start=1) if raw.rstrip("\r\n").strip()]
    if not records:
        raise LabelError(f"{key}: {path} holds no '<path> <label>' line")
    return LabelledIndex(key, source, records, lines, None)


def load_probe_data(cfg: EvalConfig) -> ProbeData:
    """Read and check the run's indexes (nothing is decoded or encoded)."""
    d = cfg.data
    indexes = {
        "train": read_labelled_index("data.train", d.train, d.kind),
        "val": read_labelled_index("data.val", d.val, d.kind),
    }
    if cfg.selection.split == "index":
        indexes["selection"] = read_labelled_index("selection.index", cfg.selection.index or "", d.kind)
    train = indexes["train"]
    _check_folders(indexes.values())
    num_classes = d.num_classes or count_classes(train)
    counted = "" if d.num_classes else f" (counted from {train.key})"
    for index in indexes.values():
        _check_range(index, num_classes, counted)
    class_names = d.class_names if d.class_names is not None else train.classes
    if class_names is not None and len(class_names) != num_classes:
        raise LabelError(
            f"data.class_names has {len(class_names)} names for {num_classes} classes{counted}: "
            f"{list(class_names)}"
        )
    present = set(train.labels.tolist())
    if len(present) < 2:
        raise LabelError(
            f"{train.key}: {train.source} holds a single class ({sorted(present)}); a probe needs two"
        )
    return ProbeData(
        indexes, num_classes, list(class_names) if class_names else None, _warnings(indexes, num_classes)
    )


def count_classes(index: LabelledIndex) -> int:
    """Classes of an index: its class folders, or its largest label + 1."""
    return len(index.classes) if index.classes is not None else int(index.labels.max()) + 1


def _check_range(index: LabelledIndex, num_classes: int, counted: str) -> None:
    labels = index.labels
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise LabelError(
            f"{index.key}: {index.where(i)}: label {labels[i]} is outside [0, {num_classes}) "
            f"(data.num_classes = {num_classes}{counted}); {len(bad)} such line(s) in all"
        )


def _check_folders(indexes: Sequence[LabelledIndex]) -> None:
    folders = [i for i in indexes if i.classes is not None]
    for other in folders[1:]:
        if other.classes != folders[0].classes:
            only = sorted(set(folders[0].classes or ()) ^ set(other.classes or ()))
            raise LabelError(
                f"{other.key}: the class folders of {other.source} differ from those of {folders[0].source} "
                f"(labels are folder positions, so they would mean different classes); differing: {only[:10]}"
            )


def _warnings(indexes: dict[str, LabelledIndex], num_classes: int) -> list[str]:
    train = set(indexes["train"].labels.tolist())
    out = []
    missing = sorted(set(range(num_classes)) - train)
    if missing:
        out.append(f"{len(missing)} of {num_classes} classes have no training sample: {missing[:20]}")
    for name in ("val", "selection"):
        if name in indexes:
            unseen = sorted(set(indexes[name].labels.tolist()) - train)
            if unseen:
                out.append(f"{indexes[name].key}: classes {unseen[:20]} never occur in training")
    return out


# ----------------------------------------------------------------------------------------------- subsets


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a seeded subset holding ``fraction`` of each class (at least one sample per class).

    Args:
        labels: ``[M]`` class of every training sample.
        fraction: in (0, 1]; 1 keeps everything.
        seed: the same seed and labels give the same subset; smaller fractions of one seed are nested.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    if fraction == 1:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 0x5AB5E7])
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        keep.append(members[: max(1, round(fraction * len(members)))])
    return np.sort(np.concatenate(keep))


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, holdout)`` positions: ``round(fraction * n_c)`` samples of each class held out, at least
    one for classes with two or more samples, never a class's last sample. Seeded; sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0x5E1EC7])
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n = len(members)
        k = min(n - 1, max(1, round(fraction * n))) if n > 1 else 0
        held.append(members[rng.permutation(n)[:k]])
    holdout = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), holdout), holdout


# ---------------------------------------------------------------------------------------------- datasets


def build_datasets(cfg: EvalConfig, data: ProbeData) -> dict[str, Dataset]:
    """One dataset per index: training (one view, augmented if asked) and scoring splits (``num_views``)."""
    d = cfg.data
    records = {name: index.records for name, index in data.indexes.items()}
    out: dict[str, Dataset] = {}
    if d.kind == "image":
        crop = CropSpec(d.resolution, d.crop_scale, d.crop_aspect, flip=True) if d.train_augment else None
        for name, recs in records.items():
            train = name == "train"
            out[name] = ImageDataset(
                recs,
                num_frames=d.num_frames,
                crop=crop if train else None,
                resolution=d.resolution,
                seed=cfg.seed,
            )
        return out
    clip = ClipSpec(d.num_frames, d.frame_step, d.num_segments)
    cache = None
    if d.clip_cache is not False:
        paths = [r.path for recs in records.values() for r in recs]
        cache = open_clip_cache(
            d.clip_cache, paths, d.decode_short_side, cache_dir=d.clip_cache_dir, max_gb=d.clip_cache_max_gb
        ).cache
    common = {"seed": cfg.seed, "max_short_side": d.decode_short_side, "clip_cache": cache}
    for name, recs in records.items():
        if name == "train" and d.train_augment:  # official probe training: random windows and crops, no flip
            out[name] = VideoClipDataset(
                recs,
                clip,
                CropSpec(d.resolution, d.crop_scale, d.crop_aspect, flip=False),
                random_window=True,
                allow_overlap=True,
                min_frames=1,
                **common,
            )
        else:
            views = 1 if name == "train" else d.num_views
            out[name] = EvalVideoDataset(recs, clip, EvalViewSpec(d.resolution, views), **common)
    return out
