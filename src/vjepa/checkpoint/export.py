"""Our checkpoint format: a folder with ``model.safetensors`` (``<model>.<name>`` tensors) and ``config.json``
(the architectures, a versioned header), written by :func:`save_pretrained` and read by :func:`load_ours`; and
the pretraining run folder (``config.yaml`` + ``export/``), accepted wherever a checkpoint is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from vjepa.checkpoint.strict import MODEL_KEYS, Pretrained, build_models
from vjepa.errors import InvalidArgument, VjepaError, shown
from vjepa.io import (
    EXPORT_FORMAT,
    CheckpointError,
    load_safetensors,
    read_json,
    write_json,
    write_safetensors,
)
from vjepa.models.registry import EncoderConfig, PredictorConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Files of a pretraining run folder (see vjepa.pretrain.rundir; repeated here so that loading a model does
# not import the training code).
RUN_CONFIG_FILE = "config.yaml"
RUN_EXPORT_DIR = "export"


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a pretraining run folder (it holds the run's ``config.yaml``)."""
    path = Path(path)
    return path.is_dir() and (path / RUN_CONFIG_FILE).is_file() and not (path / WEIGHTS_FILE).exists()


def run_folder_export(path: str | Path) -> Path | None:
    """The export of a pretraining run folder; None when ``path`` is not a run folder.

    Raises:
        CheckpointError: a run folder without a complete export (the run has not finished, or was killed
            while exporting), naming its latest training checkpoint, which loads too.
    """
    path = Path(path)
    if not is_run_folder(path):
        return None
    export = path / RUN_EXPORT_DIR
    if (export / WEIGHTS_FILE).is_file() and (export / CONFIG_FILE).is_file():
        return export
    latest = path / "checkpoints" / "latest.pt"
    hint = (
        f"; pass its latest training checkpoint {shown(latest)} instead, or finish the run with "
        f"'vjepa pretrain --resume --run-dir {shown(path)}'"
        if latest.is_file()
        else "; it holds no checkpoint yet"
    )
    raise CheckpointError(
        f"{shown(path)} is a pretraining run folder without a complete export ({RUN_EXPORT_DIR}/"
        f"{WEIGHTS_FILE} and {CONFIG_FILE}){hint}"
    )


def folder_hint(path: Path) -> str:
    """What to add when a folder is given where a checkpoint file is expected."""
    if is_run_folder(path):
        return f" (a pretraining run folder: its models are in {shown(path / RUN_EXPORT_DIR)})"
    if (path / WEIGHTS_FILE).is_file():
        return " (a vjepa checkpoint folder, already in vjepa's format: load it as it is)"
    return ""


def load_ours(path: Path) -> Pretrained:
    folder = path if path.is_dir() else path.parent
    weights_path = folder / WEIGHTS_FILE if path.is_dir() else path
    config_path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"{shown(path)}: no such checkpoint file or folder")
    for p in (weights_path, config_path):
        if not p.is_file():
            raise CheckpointError(
                f"{shown(p)}: missing; a vjepa checkpoint is a folder with {WEIGHTS_FILE} and {CONFIG_FILE}"
            )
    config = read_json(config_path, EXPORT_FORMAT, CheckpointError)
    try:
        enc_cfg = EncoderConfig.from_dict(config["encoder"])
        pred_cfg = PredictorConfig.from_dict(config["predictor"]) if config.get("predictor") else None
    except (KeyError, TypeError, ValueError, VjepaError) as err:
        raise CheckpointError(f"{config_path}: bad model config ({err})") from None
    flat = load_safetensors(weights_path)
    states: dict[str, dict[str, Tensor]] = {}
    for key, value in flat.items():
        model_key, _, name = key.partition(".")
        if model_key not in MODEL_KEYS or not name:
            raise CheckpointError(f"{weights_path}: unexpected tensor {key!r} (expected <model>.<name>)")
        states.setdefault(model_key, {})[name] = value
    if "predictor" in states and pred_cfg is None:
        raise CheckpointError(f"{config_path}: the weights hold a predictor but the config describes none")
    models = build_models(states, enc_cfg, pred_cfg, str(weights_path))
    return Pretrained(
        enc_cfg, pred_cfg, models, {**config.get("meta", {}), "source": str(folder), "format": "vjepa"}
    )


def save_pretrained(
    out_dir: str | Path,
    models: Mapping[str, nn.Module],
    encoder_config: EncoderConfig,
    predictor_config: PredictorConfig | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``models`` (any of encoder / target_encoder / predictor) as ``model.safetensors`` plus
    ``config.json`` into ``out_dir``; each file is written atomically."""
    unknown = set(models) - set(MODEL_KEYS)
    if unknown:
        raise InvalidArgument(f"unknown model name(s) {sorted(unknown)}; allowed: {list(MODEL_KEYS)}")
    if "predictor" in models and predictor_config is None:
        raise InvalidArgument("saving a predictor needs its predictor_config")
    out_dir = Path(out_dir)
    flat = {
        f"{name}.{key}": value.detach().to("cpu").contiguous()
        for name, model in models.items()
        for key, value in model.state_dict().items()
    }
    config = {
        "encoder": encoder_config.to_dict(),
        "predictor": predictor_config.to_dict() if predictor_config else None,
        "models": sorted(models),
        "meta": dict(meta or {}),
    }
    write_safetensors(out_dir / WEIGHTS_FILE, flat, EXPORT_FORMAT.metadata())
    write_json(out_dir / CONFIG_FILE, config, EXPORT_FORMAT)
    return out_dir
