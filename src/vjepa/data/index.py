"""Dataset indexes: which files a dataset holds and their labels.

Three formats, chosen by `load_index`:

- **CSV** (``*.csv``, the official format): one ``<path> <integer label>`` per line, no header. The label is
  the LAST space-separated field and everything before the last space is the path, so paths may contain
  spaces (``/data/my clips/a b.mp4 3``). A path in matching quotes (``"/data/a b.mp4" 3``, as pandas writes
  it) loses its quotes. Blank lines are ignored. A relative path is resolved against the folder of the CSV
  file (absolute paths, as the official files use, are kept as they are). Labels must fit in 64 bits.
- **Folder of class sub-folders** (a directory): ``root/<class name>/<file>``; classes are the sorted
  sub-folder names, labels their positions. Files are matched by extension and sorted.
- **Plain list** (any other file, e.g. ``*.txt``): one path per line (the whole line, spaces included),
  label 0 (pretraining ignores labels).

Index files are UTF-8 text (a byte-order mark is ignored); anything else is refused naming the file and the
line of the first undecodable byte. Several indexes are combined with `mix_indexes`, whose weights set how often each index is DRAWN (sampling
with replacement), unlike the official sampler where the weights only changed the order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vjepa.errors import InvalidArgument, VjepaError, shown, utf8_text

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class IndexFormatError(VjepaError):
    """A malformed index file; the message names the file and line."""


class IndexNotFoundError(IndexFormatError):
    """An index file or folder that does not exist (or is neither a file nor a folder)."""


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
        IndexFormatError: naming the file and line of a line without an integer label or without a path, of
            a label beyond 64 bits, or of the first byte that is not UTF-8 text.
    """
    csv = Path(path)
    records = []
    for lineno, line in _text_lines(csv):
        if not line.strip():
            continue
        video, sep, label = line.rpartition(" ")
        video = _unquote(video)
        if not sep or not video.strip():
            raise IndexFormatError(
                f"{shown(csv)}:{lineno}: expected '<path> <integer label>' separated by a space, got "
                f"{shown(line)!r}"
            )
        try:
            label_int = int(label)
        except ValueError:
            raise IndexFormatError(
                f"{shown(csv)}:{lineno}: the last space-separated field must be an integer label, got "
                f"{shown(label, 40)!r} in {shown(line)!r}"
            ) from None
        if not INT64_MIN <= label_int <= INT64_MAX:
            raise IndexFormatError(f"{shown(csv)}:{lineno}: label {shown(label, 40)} does not fit in 64 bits")
        records.append(VideoRecord(_resolve(video, csv.parent), label_int))
    return records


def read_path_list(path: str | os.PathLike) -> list[VideoRecord]:
    """Read a plain list of paths, one per line (the whole line is the path), all labelled 0.

    Args:
        path: the list file.

    Raises:
        IndexFormatError: naming the file and line of the first byte that is not UTF-8 text.
    """
    listing = Path(path)
    return [
        VideoRecord(_resolve(_unquote(line), listing.parent), 0)
        for _, line in _text_lines(listing)
        if line.strip()
    ]


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 text file; a clear error for anything else."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise IndexFormatError(f"{shown(path)}: a folder, not an index file") from None
    except OSError as err:
        raise IndexFormatError(f"{shown(path)}: cannot read the index ({err.strerror})") from None
    what = "an index is a text file of paths (a CSV of '<path> <label>' lines), saved as UTF-8"
    text = utf8_text(data, path, IndexFormatError, what)
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), start=1)]


def _unquote(path: str) -> str:
    """A path without the matching quotes a CSV writer put around it (``"a b.mp4"`` -> ``a b.mp4``)."""
    stripped = path.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "\"'":
        inner = stripped[1:-1]
        return inner.replace('""', '"') if stripped[0] == '"' else inner
    return path


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
        what = "is not a regular file" if os.path.exists(path) else "does not exist"
        raise IndexNotFoundError(f"{shown(path)}: the index file {what}")
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
        raise InvalidArgument("mix_indexes needs at least one index")
    names = list(names) if names is not None else [f"index{k}" for k in range(len(indexes))]
    if len(names) != len(indexes):
        raise InvalidArgument(f"got {len(names)} names for {len(indexes)} indexes")
    for name, idx in zip(names, indexes, strict=True):
        if len(idx) == 0:
            raise InvalidArgument(f"index {name!r} is empty")
    sizes = [len(idx) for idx in indexes]
    if weights is None:
        per_record = np.ones(sum(sizes), dtype=np.float64)
    else:
        if len(weights) != len(indexes):
            raise InvalidArgument(f"got {len(weights)} weights for {len(indexes)} indexes")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InvalidArgument(f"weights must be non-negative with a positive sum, got {list(weights)}")
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
    keys: Sequence[str] | None = None,
) -> MixedIndex:
    """Read several indexes (any format) and mix them (the config's dataset list and its weights).

    Args:
        sources: index files or folders.
        weights: one per source (how often each is drawn), or None to weight every record equally.
        extensions: for folder sources, which files to keep.
        keys: what named each source (e.g. the config key ``data.datasets[0]``), put before its errors.
    """
    indexes = []
    for k, source in enumerate(sources):
        try:
            records = load_index(source, extensions)
        except IndexFormatError as err:
            if keys is None:
                raise
            raise type(err)(f"{keys[k]}: {err}") from None
        if not records:
            where = f"{keys[k]}: " if keys is not None else ""
            raise IndexFormatError(f"{where}{shown(source)}: the index lists no files")
        indexes.append(records)
    return mix_indexes(indexes, weights, names=[str(s) for s in sources])
