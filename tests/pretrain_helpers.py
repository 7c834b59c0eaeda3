"""Tiny pretraining configs for the tests: vit_tiny on 8-frame 48x48 synthetic clips (4x3x3 = 36 tokens)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import torch

from vjepa.config import apply_overrides, from_dict
from vjepa.pretrain.config import PretrainConfig
from vjepa.pretrain.distributed import FSDP_MIN_TORCH_NAME, fsdp_supported
from vjepa.pretrain.setup import Trainer, build_trainer
from vjepa.runtime import Runtime

TINY = {
    "data": {
        "source": "synthetic",
        "synthetic_videos": 32,
        "synthetic_resolution": 48,
        "synthetic_num_frames": 8,
        "batch_size": 4,
        "num_frames": 8,
        "frame_step": 1,
        "resolution": 48,
        "num_workers": 0,
    },
    "masks": {"kind": "multiblock"},
    "model": {"name": "vit_tiny", "pred_depth": 2, "pred_embed_dim": 96},
    "optimization": {
        "epochs": 4,
        "ipe": 5,
        "warmup": 1,
        "start_lr": 2e-4,
        "lr": 1e-3,
        "ema": [0.99, 1.0],
        "clip_grad": 1.0,
    },
    "logging": {
        "log_every": 1,
        "monitor_every": 5,
        "checkpoint_every": 5,
        "tensorboard": False,
        "progress_bar": False,
        "export": False,
    },
    "runtime": {"device": "cpu", "precision": "fp32", "threads": 1, "seed": 0},
}


# `vjepa pretrain tiny_cpu` shrunk to 4 steps of 8-frame 48x48 clips with causal masks (identical for every
# sample, so runs on 1 and 2 processes see the same clips and masks), as --set arguments.
TINY_CLI = [
    "--set", "masks.kind=causal", "--set", "optimization.epochs=1", "--set", "optimization.ipe=4",
    "--set", "optimization.warmup=0", "--set", "optimization.lr=1e-3", "--set", "data.synthetic_videos=16",
    "--set", "data.synthetic_resolution=48", "--set", "data.resolution=48", "--set", "data.num_frames=8",
    "--set", "data.synthetic_num_frames=8", "--set", "model.pred_depth=1", "--set", "runtime.precision=fp32",
    "--set", "logging.log_every=1", "--set", "logging.checkpoint_every=2", "--set", "runtime.threads=1",
    "--set", "logging.tensorboard=false",
]  # fmt: skip


# vjepa's FSDP (and its sharded checkpoints) needs a newer torch than the rest; older ones refuse it by name
# (tests/test_pretrain_sharded.py), so the tests that train with it run from that version on.
needs_fsdp = pytest.mark.skipif(
    not fsdp_supported(),
    reason=f"vjepa's FSDP needs torch >= {FSDP_MIN_TORCH_NAME}, this is {torch.__version__}",
)


def tiny_config(overrides: Sequence[str] = ()) -> PretrainConfig:
    """The tiny config with ``a.b=value`` overrides."""
    return from_dict(PretrainConfig, apply_overrides(TINY, overrides), source="tiny")


def make_trainer(config: PretrainConfig) -> tuple[Trainer, Iterator]:
    """A single-process CPU trainer for ``config`` and its endless batch iterator (what ``pretrain`` builds)."""
    trainer = build_trainer(config, Runtime(torch.device("cpu")))
    assert trainer.stream is not None
    return trainer, trainer.stream.batches()
