"""Files on disk: atomic writes, safe loads, and the versioned headers of vjepa's on-disk formats.

A leaf module: it imports the standard library, torch and safetensors, and of vjepa only :mod:`vjepa.errors`,
so that every module that reads or writes files (configs, checkpoints, run folders, features, reports) can use
it without importing another's code.

- **Atomic writes.** :func:`atomic_write` writes a temporary file beside the target and renames it over the
  target: a crash mid-write leaves any previous file untouched; :func:`stale_temporaries` finds what killed
  writes left. :func:`write_text` and :func:`write_json` are its usual cases.
- **Safe loads.** :func:`safe_torch_load` is the one ``torch.load`` of vjepa (``weights_only=True``: pickled
  code is never executed); :func:`load_safetensors` reads a safetensors file. Both name the file when it
  cannot be read.
- **Headers.** Each on-disk format is a :class:`FileFormat` (a name and a version, listed in `FORMATS`), written
  with the data (:meth:`FileFormat.header`) and checked on read (:meth:`FileFormat.check`): a file of another
  format or of a version this vjepa does not read is refused with a `FormatError` naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from vjepa.errors import VjepaError, shown

FORMAT_KEY = "format"
# atomic_write's temporary files: ".<name>.<8 random characters>.tmp" beside the target.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class FormatError(VjepaError):
    """A file that is not what vjepa expects there: not valid JSON, another format, or a version this vjepa
    does not read; the message names the file."""


class CheckpointError(VjepaError):
    """A checkpoint that cannot be loaded as asked; the message names the file and the problem."""


# -------------------------------------------------------------------------------------------------- headers


@dataclass(frozen=True)
class FileFormat:
    """One on-disk format: its name and the version this vjepa writes (and reads).

    Args:
        name: the value of the ``format`` key.
        version: the version written; files of another version are refused.
        version_key: the key that holds the version (``format_version``; older formats say ``version``).
        headerless_version: the version a file without a header (neither key) is read as: files written
            before the format had a header; None when every file of the format has one.
    """

    name: str
    version: int
    version_key: str = "format_version"
    headerless_version: int | None = None

    def header(self) -> dict[str, Any]:
        """The keys written at the top of a JSON file (or a torch payload) of this format."""
        return {FORMAT_KEY: self.name, self.version_key: self.version}

    def metadata(self) -> dict[str, str]:
        """The header as safetensors metadata (string values)."""
        return {k: str(v) for k, v in self.header().items()}

    def check(self, data: Any, source: object, error: type[VjepaError] = FormatError) -> int:
        """The version of ``data`` (a parsed file); raises ``error`` naming ``source`` when it is not this
        format or not a version this vjepa reads.

        Args:
            data: the file's content (a mapping with the header keys).
            source: the file, for the message.
            error: the error class (a `VjepaError`) to raise.
        """
        if not isinstance(data, Mapping):
            raise error(f"{shown(source)}: not a {self.name} file (found a {type(data).__name__})")
        name, version = data.get(FORMAT_KEY), data.get(self.version_key)
        if name is None and version is None and self.headerless_version is not None:
            return self.headerless_version
        if name != self.name:
            raise error(f"{shown(source)}: format {shown(repr(name))}, expected {self.name!r}")
        if isinstance(version, int) and not isinstance(version, bool) and 1 <= version < self.version:
            raise error(
                f"{shown(source)}: a {self.name} file of an older vjepa (version {version}); this vjepa reads "
                f"version {self.version}"
            )
        if version != self.version:
            raise error(
                f"{shown(source)}: {self.name} version {shown(repr(version))}; this vjepa reads version "
                f"{self.version} (a file of a newer vjepa, or not one of vjepa's files)"
            )
        return version


# The on-disk formats. Files written before a format had a header are read as version 1 where
# `headerless_version` says so.
EXPORT_FORMAT = FileFormat("vjepa", 1)  # a checkpoint folder's config.json (always had a header)
PROBE_FORMAT = FileFormat("vjepa-probe", 1)  # a probe folder's config.json (always had a header)
# A pretraining run folder's run.json. Run folders started before it existed have none; their layout is
# the one version 1 describes, so a missing run.json reads as version 1.
RUN_FORMAT = FileFormat("vjepa-run", 1, headerless_version=1)
PRETRAIN_STATE_FORMAT = FileFormat("vjepa-pretrain", 1, version_key="version")  # checkpoints/latest.pt
SHARDED_STATE_FORMAT = FileFormat("vjepa-pretrain-sharded", 1, version_key="version")  # step_N/state.pt
FEATURES_FORMAT = FileFormat("vjepa-features", 1, version_key="version")  # vjepa extract: manifest.json
# The probe feature cache; version 2 stores which video each row holds (sources.npy) and pins no labels.
FEATURE_CACHE_FORMAT = FileFormat("vjepa-feature-cache", 2, version_key="version")
# vjepa eval's metrics.json and the demo's results.json: written without a header before, with the same
# keys as version 1, so a file without one reads as version 1.
PROBE_RESULTS_FORMAT = FileFormat("vjepa-probe-results", 1, headerless_version=1)
DEMO_RESULTS_FORMAT = FileFormat("vjepa-demo-results", 1, headerless_version=1)
FORMATS = (
    EXPORT_FORMAT,
    PROBE_FORMAT,
    RUN_FORMAT,
    PRETRAIN_STATE_FORMAT,
    SHARDED_STATE_FORMAT,
    FEATURES_FORMAT,
    FEATURE_CACHE_FORMAT,
    PROBE_RESULTS_FORMAT,
    DEMO_RESULTS_FORMAT,
)


# --------------------------------------------------------------------------------------------------- writes


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash mid-write leaves any previous file at ``path`` untouched; the folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private (0600); give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(
    path: str | Path,
    data: Mapping[str, Any],
    fmt: FileFormat | None = None,
    *,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``data`` as JSON to ``path`` atomically, with ``fmt``'s header first when given.

    Args:
        path: the file.
        data: a JSON object.
        fmt: the format whose header leads the object.
        indent: as ``json.dumps``.
        default: as ``json.dumps``: what to write for values JSON has no type for (e.g. ``str``).
    """
    payload = {**fmt.header(), **data} if fmt is not None else data
    write_text(path, json.dumps(payload, indent=indent, default=default) + "\n")


def write_safetensors(path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> None:
    """Write ``tensors`` (contiguous) with ``metadata`` as a safetensors file, atomically."""
    atomic_write(path, lambda tmp: save_file(dict(tensors), str(tmp), metadata=dict(metadata)))


def stale_temporaries(folder: str | Path) -> list[Path]:
    """The temporary files that writes by :func:`atomic_write` killed mid-way left in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _TEMP_NAME.match(p.name) and p.is_file())


# ---------------------------------------------------------------------------------------------------- reads


def read_json(
    path: str | Path, fmt: FileFormat | None = None, error: type[VjepaError] = FormatError
) -> dict[str, Any]:
    """The JSON object in ``path``, its header checked against ``fmt`` when given.

    Raises:
        error: the file is not UTF-8 JSON, not an object, or not ``fmt`` (see :meth:`FileFormat.check`).
        OSError: the file cannot be read.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{shown(path)}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{shown(path)}: expected a JSON object, got {type(data).__name__}")
    if fmt is not None:
        fmt.check(data, path, error)
    return data


def safe_torch_load(
    path: str | Path, *, mmap: bool = False, folder_hint: Callable[[Path], str] | None = None
) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with `CheckpointError` naming the file and the cause.

    Args:
        path: the file.
        mmap: map the file instead of reading it (for large sharded states).
        folder_hint: when ``path`` is a folder, what to add to the message (e.g. which file to pass instead).
    """
    path = Path(path)
    if path.is_dir():
        hint = folder_hint(path) if folder_hint is not None else ""
        raise CheckpointError(f"{shown(path)}: a folder, not a checkpoint file{hint}")
    if not path.exists():
        raise CheckpointError(f"{shown(path)}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{shown(path)}: not a regular file (a pipe, socket or device)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (corrupt or not a checkpoint)"
            ) from None
        raise CheckpointError(
            f"{path}: refused to load: the file holds a pickled Python object ({found.group(1)}) beyond "
            f"tensors and plain containers, and vjepa never executes pickled code (torch.load weights_only=True)"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first_line(err)})") from None


def load_safetensors(path: str | Path, error: type[VjepaError] = CheckpointError) -> dict[str, Tensor]:
    """The tensors of a safetensors file (on CPU); ``error`` naming the file when it cannot be read."""
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise error(f"{path}: not a readable safetensors file ({err})") from None


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
