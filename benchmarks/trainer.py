"""The pretraining setup the step benchmarks time: ``vjepa.pretrain.setup.build_trainer`` on the ``tiny_cpu``
recipe with a benchmark's sizes, and a few in-memory batches to cycle (no dataset: the data path is timed by
``profile_step.py``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vjepa.masks import MaskCollator, MaskedBatch
from vjepa.pretrain.config import PretrainConfig, load_pretrain_config
from vjepa.pretrain.data import build_mask_generators
from vjepa.pretrain.setup import Trainer, build_trainer
from vjepa.runtime import Runtime


@dataclass
class StepSizes:
    """What a step benchmark varies.

    Args:
        model: encoder size (``tiny``, ``vit_small``, ...).
        num_frames: frames per clip.
        resolution: clip side in pixels.
        batch: clips per step (per process).
        pred_depth: predictor depth.
        pred_width: predictor width.
    """

    model: str
    num_frames: int
    resolution: int
    batch: int
    pred_depth: int
    pred_width: int


COMPARISON_SIZES = StepSizes("tiny", 8, 112, 8, 6, 192)  # the step official_step.py compares
# the demo's step (contention.py repeats these defaults: its parent process must not load torch)
DEMO_SIZES = StepSizes("vit_tiny", 16, 64, 16, 4, 96)


def add_size_arguments(parser: argparse.ArgumentParser, defaults: StepSizes, *, model: bool = True) -> None:
    """The ``StepSizes`` options (``--model`` only with ``model``), with ``defaults``; see :func:`sizes_from`."""
    if model:
        parser.add_argument("--model", default=defaults.model, help="encoder size (tiny, vit_small, ...)")
    parser.add_argument("--num-frames", "--frames", type=int, default=defaults.num_frames)
    parser.add_argument("--resolution", "--size", type=int, default=defaults.resolution)
    parser.add_argument("--batch", type=int, default=defaults.batch, help="clips per step (per process)")
    parser.add_argument("--pred-depth", type=int, default=defaults.pred_depth)
    parser.add_argument("--pred-width", type=int, default=defaults.pred_width)


def sizes_from(args: argparse.Namespace, model: str | None = None) -> StepSizes:
    """The sizes :func:`add_size_arguments` parsed (``model`` overrides ``args.model``)."""
    return StepSizes(
        model or args.model, args.num_frames, args.resolution, args.batch, args.pred_depth, args.pred_width
    )


def step_config(sizes: StepSizes, steps: int, overrides: Sequence[str] = ()) -> PretrainConfig:
    """``tiny_cpu`` at ``sizes``, with a schedule of ``steps`` steps without warmup, then ``overrides``."""
    return load_pretrain_config(
        "tiny_cpu",
        [
            f"data.num_frames={sizes.num_frames}",
            f"data.resolution={sizes.resolution}",
            f"data.batch_size={sizes.batch}",
            f"model.name={sizes.model}",
            f"model.pred_depth={sizes.pred_depth}",
            f"model.pred_embed_dim={sizes.pred_width}",
            "optimization.epochs=1",
            f"optimization.ipe={steps}",
            "optimization.warmup=0",
            "runtime.seed=0",
            *overrides,
        ],
    )


def step_trainer(
    config: PretrainConfig, runtime: Runtime, *, shard: bool | None = None, ddp: bool | None = None
) -> Trainer:
    """``build_trainer`` without the data stream (``shard`` / ``ddp``: see :func:`build_trainer`)."""
    return build_trainer(config, runtime, data=False, shard=shard, ddp=ddp)


@dataclass
class _Sample:
    clip: torch.Tensor
    label: int
    draw: int


def batch_pool(config: PretrainConfig, trainer: Trainer, seed: int = 0, count: int = 3) -> list[MaskedBatch]:
    """``count`` distinct CPU batches of random clips with the config's masks, to cycle (mask sizes differ)."""
    d = config.data
    collator = MaskCollator(build_mask_generators(config.masks, config.token_grid), seed=seed)
    g = torch.Generator().manual_seed(seed)
    shape = (3, d.num_frames, d.resolution, d.resolution)
    return [
        collator(
            [_Sample(torch.randn(*shape, generator=g), 0, i * d.batch_size + j) for j in range(d.batch_size)]
        )
        for i in range(count)
    ]
