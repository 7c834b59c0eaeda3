"""Reading and writing model weights. Loading never executes pickled code and is always strict.

- :mod:`.strict`: strict loading of state dicts into our models (shape, floating-point dtype, finite values)
  and :class:`Pretrained`, what every format loads into.
- :mod:`.export`: our format (``model.safetensors`` + ``config.json``) and the pretraining run folder.
- :mod:`.official`: the official V-JEPA / V-JEPA 2 ``.pth.tar`` import (key map, architecture inference).
- :mod:`.loading`: :func:`load_pretrained`, which takes any of them (and Hugging Face folders, read by
  :mod:`vjepa.interop.hf`), and :func:`check_clip_fits`.

Every name below is importable from ``vjepa.checkpoint``.
"""

from vjepa.checkpoint.export import (
    CONFIG_FILE,
    RUN_CONFIG_FILE,
    RUN_EXPORT_DIR,
    WEIGHTS_FILE,
    is_run_folder,
    run_folder_export,
    save_pretrained,
)
from vjepa.checkpoint.loading import check_clip_fits, load_encoder, load_pretrained
from vjepa.checkpoint.official import (
    VJEPA2_DEFAULT_SIZE,
    PositionChoice,
    convert_official,
    infer_encoder_config,
    infer_predictor_config,
    load_official,
    map_official_state,
    official_key,
    resolve_positions,
)
from vjepa.checkpoint.strict import (
    FLOAT_DTYPES,
    MODEL_KEYS,
    EncoderKey,
    Pretrained,
    check_state,
    load_strict,
)
from vjepa.io import CheckpointError

__all__ = [
    "CONFIG_FILE",
    "FLOAT_DTYPES",
    "MODEL_KEYS",
    "RUN_CONFIG_FILE",
    "RUN_EXPORT_DIR",
    "VJEPA2_DEFAULT_SIZE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "EncoderKey",
    "PositionChoice",
    "Pretrained",
    "check_clip_fits",
    "check_state",
    "convert_official",
    "infer_encoder_config",
    "infer_predictor_config",
    "is_run_folder",
    "load_encoder",
    "load_official",
    "load_pretrained",
    "load_strict",
    "map_official_state",
    "official_key",
    "resolve_positions",
    "run_folder_export",
    "save_pretrained",
]
