"""A frozen encoder: loaded from a checkpoint, checked against the clips it will see, put in eval mode without
gradients, and identified by a fingerprint of its weights. Used by the probes (``vjepa eval``) and by
feature extraction (``vjepa extract``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vjepa.checkpoint import EncoderKey, check_clip_fits, load_pretrained
from vjepa.models.encoder import VideoEncoder


def encoder_fingerprint(encoder: nn.Module) -> str:
    """SHA-256 of the encoder's state (names, shapes, dtypes, values): the same weights give the same
    fingerprint whichever file format they were loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True)
class FrozenEncoder:
    """An encoder ready to encode clips.

    Args:
        encoder: the encoder, in eval mode, without gradients, on the run's device.
        source: where its weights came from (the checkpoint's recorded source, or the model name).
        fingerprint: :func:`encoder_fingerprint` of its weights.
    """

    encoder: VideoEncoder
    source: str
    fingerprint: str


def freeze_encoder(
    encoder: VideoEncoder,
    source: str,
    *,
    num_frames: int,
    resolution: int,
    names: tuple[str, str],
    device: torch.device,
) -> FrozenEncoder:
    """Refuse clips of ``num_frames x resolution`` the encoder cannot split into whole tubelets and patches, then
    freeze ``encoder``, move it to ``device`` and fingerprint it.

    Args:
        encoder: the encoder.
        source: its checkpoint or model name, for messages.
        num_frames: clip frames T.
        resolution: clip side S.
        names: how the user set ``num_frames`` and ``resolution`` (config keys or CLI options), for messages.
        device: the run's device.
    """
    check_clip_fits(encoder.config, num_frames, resolution, names, source)
    encoder.eval().requires_grad_(False).to(device)
    return FrozenEncoder(encoder, source, encoder_fingerprint(encoder))


def load_frozen_encoder(
    checkpoint: str | Path,
    which: EncoderKey,
    *,
    num_heads: int | None,
    num_frames: int,
    resolution: int,
    names: tuple[str, str],
    device: torch.device,
) -> FrozenEncoder:
    """The ``which`` encoder of ``checkpoint`` (any format :func:`vjepa.checkpoint.load_pretrained` reads),
    frozen by :func:`freeze_encoder`; its ``source`` is the path the checkpoint records."""
    pretrained = load_pretrained(checkpoint, num_heads=num_heads)
    source = str(pretrained.meta.get("source", checkpoint))
    return freeze_encoder(
        pretrained.encoder(which),
        source,
        num_frames=num_frames,
        resolution=resolution,
        names=names,
        device=device,
    )
