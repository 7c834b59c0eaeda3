"""The run directory: what it holds, and whether a run may start or resume in it.

Layout::

    config.yaml           the resolved config (written once the run has really started: models built,
                          data indexes read, checkpoint restored; a failed start leaves nothing behind)
    run.json              the folder's format header (vjepa.io.RUN_FORMAT), written after config.yaml;
                          folders of runs started before it existed have none and read as version 1
    metrics.jsonl|csv     one row per logged step
    checkpoints/          latest.pt, and step_XXXXXXX.pt when logging.keep_every is set; with
                          runtime.strategy=fsdp, sharded step_XXXXXXX/ folders (vjepa.pretrain.sharded)
    tb/                   TensorBoard events (when installed)
    export/               the final models in vjepa's safetensors format

Rules: a missing or empty directory starts a new run (with or without ``--resume``, so one command line
serves both the first start and every requeue of a preemptible job). A directory that holds a run is
continued with ``--resume`` and otherwise refused; a non-empty directory without a run is always refused.
Nothing is ever overwritten silently.

A resumed session first removes the temporary files (and ``.step_XXXXXXX.partial/`` folders of sharded
checkpoints) that writes killed mid-way left in the run's own folders, then finishes what the killed session did not: the kept checkpoint of the latest step, and the
export (complete when its ``config.json``, written after the weights, names the final step).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vjepa.checkpoint import CONFIG_FILE as EXPORT_CONFIG_FILE
from vjepa.checkpoint import WEIGHTS_FILE
from vjepa.config import ConfigError, from_dict, read_yaml, to_dict
from vjepa.errors import VjepaError
from vjepa.io import RUN_FORMAT, read_json, stale_temporaries, write_json
from vjepa.pretrain.config import RESUMABLE_CHANGES, PretrainConfig
from vjepa.pretrain.sharded import latest_checkpoint, partial_checkpoints

CONFIG_FILE = "config.yaml"
HEADER_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"


class RunDirError(VjepaError):
    """A run directory that cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class RunDir:
    """What a run directory holds.

    Args:
        path: the directory.
        holds_run: it has a ``config.yaml`` written by vjepa.
        checkpoint: the latest checkpoint if any: ``checkpoints/latest.pt`` or the newest committed sharded
            folder, whichever holds the later step.
    """

    path: Path
    holds_run: bool
    checkpoint: Path | None

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def header_path(self) -> Path:
        return self.path / HEADER_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR


def remove_stale_temporaries(run: RunDir) -> list[Path]:
    """Delete the temporary files of killed writes in the run's folders (its own files only: names made
    by :func:`vjepa.io.atomic_write`); returns them."""
    removed = []
    for folder in (run.path, run.checkpoint_dir, run.export_dir):
        for tmp in stale_temporaries(folder):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    for partial in partial_checkpoints(run.checkpoint_dir):
        shutil.rmtree(partial)
        removed.append(partial)
    return removed


def export_is_complete(run: RunDir, step: int) -> bool:
    """Whether ``export/`` holds the models of ``step``: its ``config.json`` (written after the weights, each
    file atomically) exists and names that step."""
    config = run.export_dir / EXPORT_CONFIG_FILE
    if not (run.export_dir / WEIGHTS_FILE).is_file() or not config.is_file():
        return False
    try:
        meta = read_json(config).get("meta", {})
    except (OSError, VjepaError):
        return False
    return isinstance(meta, dict) and meta.get("steps") == step


def inspect_run_dir(path: str | Path) -> RunDir:
    """Look at ``path`` without changing anything."""
    path = Path(path)
    return RunDir(path, (path / CONFIG_FILE).is_file(), latest_checkpoint(path / CHECKPOINT_DIR))


def check_can_start(run: RunDir, resume: bool) -> None:
    """Refuse what the rules above forbid.

    Args:
        run: from :func:`inspect_run_dir`.
        resume: ``--resume`` was given.
    """
    if run.holds_run and not resume:
        where = f"a checkpoint {run.checkpoint}" if run.checkpoint else "no checkpoint yet"
        raise RunDirError(
            f"{run.path} already holds a run ({CONFIG_FILE}, {where}); pass --resume to continue it, or choose "
            f"another --run-dir. Nothing was overwritten."
        )
    if not run.holds_run and run.path.exists():
        if not run.path.is_dir():
            raise RunDirError(f"{run.path} exists and is not a directory")
        if any(run.path.iterdir()):
            raise RunDirError(
                f"{run.path} is not empty but holds no vjepa run (no {CONFIG_FILE}); choose an empty or new "
                f"--run-dir"
            )


def write_header(run: RunDir) -> None:
    """Write ``run.json``, the format header of the run folder (after ``config.yaml``: a kill between the two
    leaves a folder that reads as version 1, the layout this vjepa writes)."""
    write_json(run.header_path, {}, RUN_FORMAT)


def check_header(run: RunDir) -> int:
    """The run folder's format version; a `FormatError` naming ``run.json`` when this vjepa does not read it.

    A folder without ``run.json`` was started before the header existed, with the layout of version 1, so
    it reads as version 1.
    """
    data = read_json(run.header_path) if run.header_path.is_file() else {}  # {}: no header, version 1
    return RUN_FORMAT.check(data, run.header_path)


def saved_config(run: RunDir) -> dict[str, Any]:
    """The config a run directory was started with (plain dict), once its format header is checked."""
    check_header(run)
    return read_yaml(run.config_path)


def check_compatible(saved: dict[str, Any], config: PretrainConfig, source: Path) -> None:
    """A resumed run may change only keys that leave the maths unchanged (:data:`RESUMABLE_CHANGES`).

    Args:
        saved: the run directory's config.
        config: the config of this session.
        source: the saved config's file (for the message).
    """
    # Through the dataclass, so that keys added since the run started compare as their defaults.
    old, new = (
        _flatten(to_dict(from_dict(PretrainConfig, saved, source=str(source)))),
        _flatten(to_dict(config)),
    )
    changed = sorted(
        k for k in set(old) | set(new) if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES)
    )
    if changed:
        listing = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ConfigError(
            f"{source}: cannot resume with a different config; changed key(s): {listing}. Only "
            f"{', '.join(RESUMABLE_CHANGES)} may change on resume."
        )


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, tuple):
        data = list(data)
    return {prefix: data}
