"""The input files of a command given as CSV indexes, folders, path lists or single files (``vjepa extract``),
and the output name of each."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vjepa.data.index import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, read_csv_index, read_path_list
from vjepa.data.sampling import MediaKind
from vjepa.errors import VjepaError, shown


def list_inputs(inputs: Sequence[str | os.PathLike], kind: MediaKind) -> list[str]:
    """Files to extract from: CSV indexes (``<path> <label>``), folders (searched recursively for the
    kind's extensions), path lists (``.txt``) and single files, in the order given.

    Raises:
        VjepaError: an input that does not exist, is not a regular file or folder, or lists no file.
    """
    exts = VIDEO_EXTENSIONS if kind == "video" else IMAGE_EXTENSIONS
    files: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(exts))
            if not found:
                raise VjepaError(f"{shown(path)}: no files ending in {', '.join(exts)}")
            files += found
        elif not path.exists():
            raise VjepaError(f"{shown(path)}: no such file or folder")
        elif not path.is_file():
            raise VjepaError(f"{shown(path)}: not a regular file or folder (a pipe, socket or device)")
        elif path.suffix.lower() in (".csv", ".txt"):
            reader = read_csv_index if path.suffix.lower() == ".csv" else read_path_list
            listed = [r.path for r in reader(path)]
            if not listed:
                raise VjepaError(f"{shown(path)}: the index lists no files")
            files += listed
        else:
            files.append(str(path))
    if len(set(files)) != len(files):
        twice = next(f for f in files if files.count(f) > 1)
        raise VjepaError(f"an input file is listed twice: {shown(twice)}")
    return files


def output_names(files: Sequence[str]) -> list[str]:
    """Each file's path relative to the files' common folder, without its suffix (unique by construction)."""
    absolute = [os.path.abspath(f) for f in files]
    root = os.path.commonpath([os.path.dirname(f) for f in absolute])
    return [str(Path(os.path.relpath(f, root)).with_suffix("")) for f in absolute]
