"""Loading a checkpoint of any format (:func:`load_pretrained`: our folder, a pretraining run folder, an
official file, a Hugging Face folder), and whether a clip fits the loaded encoder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist

from vjepa.checkpoint.export import load_ours, run_folder_export
from vjepa.checkpoint.official import PositionChoice, load_official
from vjepa.checkpoint.strict import EncoderKey, Pretrained
from vjepa.errors import VjepaError, shown
from vjepa.models.encoder import VideoEncoder
from vjepa.models.registry import EncoderConfig


def load_pretrained(
    path: str | Path, *, num_heads: int | None = None, positions: PositionChoice = "auto"
) -> Pretrained:
    """Load a checkpoint of any format: an official V-JEPA / V-JEPA 2 ``.pth.tar``/``.pt`` (or a bare
    encoder state dict), our directory / ``model.safetensors`` with its ``config.json``, or a Hugging Face
    V-JEPA 2 folder (``config.json`` with ``"model_type": "vjepa2"``; its encoder is the ``target_encoder``).

    Args:
        path: the file or the directory.
        num_heads: the head count, needed for official weights whose size is not a named one.
        positions: for official files: ``auto`` (RoPE when the encoder has no ``pos_embed``), ``sincos``
            (V-JEPA) or ``rope`` (V-JEPA 2, also when the file holds an unused ``pos_embed``).
    """
    path = Path(path)
    export = run_folder_export(path)
    if export is not None:
        _announce(f"{shown(path)} is a pretraining run folder: loading its export {shown(export)}")
        loaded = load_ours(export)
        loaded.meta["run_dir"] = str(path)
        return loaded
    if path.is_dir():
        # Here, not at the top: vjepa.interop.hf builds on this package (Pretrained, load_strict).
        from vjepa.interop.hf import is_hf_folder, load_hf

        if is_hf_folder(path):
            return load_hf(path).pretrained
    if path.is_dir() or path.suffix == ".safetensors":
        return load_ours(path)
    return load_official(path, num_heads=num_heads, positions=positions)


def load_encoder(
    path: str | Path, which: EncoderKey = "target_encoder", *, num_heads: int | None = None
) -> VideoEncoder:
    """The encoder of a checkpoint, in eval mode: ``target_encoder`` (default, as the paper) or ``encoder``."""
    return load_pretrained(path, num_heads=num_heads).encoder(which).eval()


def check_clip_fits(
    config: EncoderConfig,
    num_frames: int,
    resolution: int,
    names: tuple[str, str],
    source: str = "the encoder",
) -> None:
    """Refuse a clip that does not split into whole tubelets and patches of the encoder (the strided patch
    embedding would silently drop the remainder).

    Args:
        config: the encoder's architecture.
        num_frames: clip frames.
        resolution: clip side in pixels.
        names: how the user set ``num_frames`` and ``resolution`` (config keys or CLI options), for the message.
        source: the checkpoint, for the message.
    """
    if num_frames % config.tubelet_size:
        raise VjepaError(
            f"{names[0]} {num_frames} is not a multiple of the tubelet size {config.tubelet_size} of {shown(source)}"
        )
    if resolution % config.patch_size:
        raise VjepaError(
            f"{names[1]} {resolution} is not a multiple of the patch size {config.patch_size} of {shown(source)}"
        )


def _announce(message: str) -> None:
    """Print a note on stderr, from rank 0 only."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        print(message, file=sys.stderr, flush=True)
