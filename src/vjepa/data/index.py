"""Dataset indexes: which files a dataset holds and their labels.

Three formats, chosen by `load_index`:

- **CSV** (``*.csv``, the official format): one ``<path> <integer label>`` per line, no header. The label is
  the LAST space-separated field and everything before the last space is the path, so paths may contain
  spaces (``/data/my clips/a b.mp4 3``). Blank lines are ignored. A relative path is resolved against the
  folder of the CSV file (absolute paths, as the official files use, are kept as they are).
- **Folder of class sub-folders** (a directory): ``root/<class name>/<file>``; classes are the sorted
  sub-folder names, labels their positions. Files are matched by extension and sorted.
- **Plain list** (any other file, e.g. ``*.txt``): one path per line (the whole line, spaces included),
  label 0 (pretraining ignores labels).

Several indexes are combined with `mix_indexes`, whose weights set how often each index is DRAWN (sampling
with replacement), unlike the official sampler where the weights only changed the order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class IndexFormatError(ValueError):
    """A malformed index file; the message names the file and line."""


@dataclass(frozen=True)
class VideoRecord:
    """One entry of an index.

    Args:
        path: the media file (absolute, or relative to the working directory).
        label: integer class label (0 when the index has none).
    """

    path: str
    label: int


@dataclass(frozen=True)
class MixedIndex:
    """Records of one or more indexes with per-record sampling weights.

    Args:
        records: all records, index after index.
        weights: [len(records)] float64, sums to 1; record i is drawn with probability weights[i].
        sources: the name of each index, in order.
        source_sizes: number of records of each index.
    """

    records: tuple[VideoRecord, ...]
    weights: np.ndarray
    sources: tuple[str, ...]
    source_sizes: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.records)

    def source_of(self, i: int) -> int:
        """Which index record `i` came from."""
        return int(np.searchsorted(np.cumsum(self.source_sizes), i, side="right"))

    @property
    def uniform(self) -> bool:
        """True when every record is equally likely (plain shuffling is then equivalent)."""
        return bool(np.allclose(self.weights, self.weights[0])) if len(self.weights) else True


def read_csv_index(path: str | os.PathLike) -> list[VideoRecord]:
    """Read an official-format CSV index (``<path> <label>`` per line, no header).

    Args:
        path: the CSV file.

    Raises:
        IndexFormatError: naming the file and line of a line without an integer label or without a path.
    """
    csv = Path(path)
    base = csv.parent
    records = []
    with open(csv, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            video, sep, label = line.rpartition(" ")
            if not sep or not video.strip():
                raise IndexFormatError(
                    f"{csv}:{lineno}: expected '<path> <integer label>' separated by a space, got {line!r}"
                )
            try:
                label_int = int(label)
            except ValueError:
                raise IndexFormatError(
                    f"{csv}:{lineno}: the last space-separated field must be an integer label, got {label!r} "
                    f"in {line!r}"
                ) from None
            records.append(VideoRecord(_resolve(video, base), label_int))
    return records


def read_path_list(path: str | os.PathLike) -> list[VideoRecord]:
    """Read a plain list of paths, one per line (the whole line is the path), all labelled 0.

    Args:
        path: the list file.
    """
    listing = Path(path)
    records = []
    with open(listing, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\r\n")
            if line.strip():
                records.append(VideoRecord(_resolve(line, listing.parent), 0))
    return records


def read_folder_index(
    root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS
) -> tuple[list[VideoRecord], list[str]]:
    """Index a folder of class sub-folders.

    Args:
        root: folder holding one sub-folder per class.
        extensions: file name endings to keep (case-insensitive).

    Returns:
        (records sorted by class then file name, class names where label i is class_names[i]).

    Raises:
        IndexFormatError: when the folder has no class sub-folder or no matching file.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise IndexFormatError(f"{root_path}: not a folder")
    classes = sorted(p.name for p in root_path.iterdir() if p.is_dir())
    if not classes:
        raise IndexFormatError(f"{root_path}: no class sub-folders")
    exts = tuple(e.lower() for e in extensions)
    records = []
    for label, name in enumerate(classes):
        for file in sorted((root_path / name).rglob("*")):
            if file.is_file() and file.name.lower().endswith(exts):
                records.append(VideoRecord(str(file), label))
    if not records:
        raise IndexFormatError(
            f"{root_path}: no files ending in {', '.join(exts)} in {len(classes)} class folders"
        )
    return records, classes


def load_index(source: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[VideoRecord]:
    """Read an index in whichever format `source` is: folder, ``.csv`` file, or plain list.

    Args:
        source: a folder of class folders, a CSV file, or a list file.
        extensions: for folders, which files to keep.
    """
    path = Path(source)
    if path.is_dir():
        return read_folder_index(path, extensions)[0]
    if not path.is_file():
        raise FileNotFoundError(f"index {path} does not exist")
    if path.suffix.lower() == ".csv":
        return read_csv_index(path)
    return read_path_list(path)


def mix_indexes(
    indexes: Sequence[Sequence[VideoRecord]],
    weights: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> MixedIndex:
    """Combine indexes so that index k is drawn with probability weights[k] / sum(weights).

    Within an index every record is equally likely (per-record weight = w_k / n_k, as in the official
    code; the difference is that our sampler then draws with replacement, so the weights set frequencies).

    Args:
        indexes: lists of records.
        weights: one non-negative weight per index; None weights every RECORD equally (plain concatenation).
        names: a name per index for reports (default "index0", ...).
    """
    if not indexes:
        raise ValueError("mix_indexes needs at least one index")
    names = list(names) if names is not None else [f"index{k}" for k in range(len(indexes))]
    if len(names) != len(indexes):
        raise ValueError(f"got {len(names)} names for {len(indexes)} indexes")
    for name, idx in zip(names, indexes, strict=True):
        if len(idx) == 0:
            raise ValueError(f"index {name!r} is empty")
    sizes = [len(idx) for idx in indexes]
    if weights is None:
        per_record = np.ones(sum(sizes), dtype=np.float64)
    else:
        if len(weights) != len(indexes):
            raise ValueError(f"got {len(weights)} weights for {len(indexes)} indexes")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
        per_record = np.concatenate(
            [np.full(n, w / n, dtype=np.float64) for n, w in zip(sizes, weights, strict=True)]
        )
    per_record /= per_record.sum()
    records = tuple(r for idx in indexes for r in idx)
    return MixedIndex(records, per_record, tuple(names), tuple(sizes))


def _resolve(path: str, base: Path) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else base / p)


def load_mixed_index(
    sources: Sequence[str | os.PathLike],
    weights: Sequence[float] | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> MixedIndex:
    """Read several indexes (any format) and mix them (the config's dataset list and its weights).

    Args:
        sources: index files or folders.
        weights: one per source (how often each is drawn), or None to weight every record equally.
        extensions: for folder sources, which files to keep.
    """
    return mix_indexes([load_index(s, extensions) for s in sources], weights, names=[str(s) for s in sources])
