"""The one deprecation map of config keys: names of earlier versions and their names now.

The frame count of a clip is ``num_frames`` and its side ``resolution`` everywhere; YAML files, ``--set``
overrides and the model configs saved in our checkpoints that still use an old name keep loading, with a
one-line warning naming the old and the new key. A leaf module (nothing of vjepa but its errors), so that the
config loader and the model configs both read the same map.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Mapping
from typing import Any

from vjepa.errors import ConfigError, shown

# The one deprecation map: config keys of earlier versions -> their names now (the frame count of a clip is
# ``num_frames``, its side ``resolution``), at whatever level they appear.
RENAMED_KEYS: dict[str, str] = {
    "frames_per_clip": "num_frames",
    "crop_size": "resolution",
    "img_size": "resolution",
    "synthetic_frames": "synthetic_num_frames",
    "synthetic_size": "synthetic_resolution",
}

logger = logging.getLogger("vjepa.config")


def renamed_keys(
    data: Mapping[str, Any], valid: typing.Container[str], source: str = "config", prefix: str = ""
) -> dict[str, Any]:
    """``data`` with every old key of :data:`RENAMED_KEYS` whose new name is in ``valid`` renamed, each with
    a one-line warning; an old key given together with its new one is an error.

    Args:
        data: one level of a config (a YAML mapping, or a model config read from a checkpoint).
        valid: the keys of that level.
        source: named in the messages (the file).
        prefix: the dotted path of ``data`` (for messages).
    """
    result = dict(data)
    for old, new in RENAMED_KEYS.items():
        if old not in result or old in valid or new not in valid:
            continue
        if new in result:
            raise ConfigError(
                f"{source}: {join_key(prefix, old)!r} is the old name of {join_key(prefix, new)!r}; give only one"
            )
        warn_renamed(source, join_key(prefix, old), join_key(prefix, new))
        result = {new if k == old else k: v for k, v in result.items()}
    return result


def renamed_tree(data: Any, source: str, prefix: str = "") -> Any:
    """``data`` with the old keys of :data:`RENAMED_KEYS` renamed at every level (before ``--set``
    overrides apply, so an override by the new name wins over the file's old one)."""
    if not isinstance(data, Mapping):
        return data
    valid = {RENAMED_KEYS.get(k, k) for k in data}
    renamed = renamed_keys(data, valid, source, prefix)
    return {k: renamed_tree(v, source, join_key(prefix, k)) for k, v in renamed.items()}


def warn_renamed(source: str, old: str, new: str) -> None:
    logger.warning("%s: config key %r is deprecated, use %r", shown(source), old, new)


def join_key(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else str(key)
