"""Everything a pretraining step needs, built from the config: :func:`build_trainer`.

The order is the one the run depends on: the data stream first (its indexes are read before any model is built,
so a bad dataset fails fast), then the seed, the models (a fresh objective, as official pretraining initializes
it), placement or sharding, the optimizer over the official groups, DDP, the schedules and the precision. The
same function serves ``vjepa pretrain`` (:mod:`vjepa.pretrain.loop`), the demo and the benchmarks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vjepa.checkpoint import load_pretrained, save_pretrained
from vjepa.config import ConfigError
from vjepa.data.loader import DataStream
from vjepa.models import VideoEncoder, build_predictor
from vjepa.optim import build_optimizer, param_groups
from vjepa.precision import Precision, PrecisionDecision
from vjepa.pretrain.config import PretrainConfig
from vjepa.pretrain.data import build_stream
from vjepa.pretrain.distributed import Sharding, prepare_objective, wrap_for_training
from vjepa.pretrain.objective import JEPAObjective
from vjepa.pretrain.schedules import Schedules
from vjepa.runtime import Runtime, seed_everything


@dataclass
class Trainer:
    """The objects a step needs.

    Args:
        objective: the unwrapped (or sharded) objective (encoder, predictor, target encoder, pixel head).
        model: what is called for the forward: ``objective``, or DDP around it.
        optimizer: AdamW over the official groups.
        schedules: LR / WD / momentum as functions of the step.
        precision: ``fp32`` or ``bf16``.
        runtime: device and ranks.
        sharding: set when ``runtime.strategy: fsdp`` sharded the objective over several processes.
        stream: this rank's resumable batches (None where the caller feeds its own batches).
        decision: how ``precision`` was chosen (``runtime.json`` records it).
    """

    objective: JEPAObjective
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedules: Schedules
    precision: Precision
    runtime: Runtime
    sharding: Sharding | None = None
    stream: DataStream | None = None
    decision: PrecisionDecision | None = None

    @property
    def predictor_parts(self) -> list[nn.Module]:
        parts: list[nn.Module] = [self.objective.predictor]
        if self.objective.pixel_head is not None:
            parts.append(self.objective.pixel_head)
        return parts


def build_trainer(
    config: PretrainConfig,
    runtime: Runtime,
    *,
    data: bool = True,
    shard: bool | None = None,
    ddp: bool | None = None,
) -> Trainer:
    """Data stream, models, optimizer, schedules and precision of a run of ``config`` on ``runtime``.

    Args:
        config: the resolved config.
        runtime: device and process group (:func:`vjepa.runtime.setup`, or ``Runtime(device)``).
        data: build the data stream (a benchmark feeding in-memory batches passes False).
        shard: shard with FSDP even on a process group of one (see :func:`prepare_objective`).
        ddp: wrap in DDP even on a process group of one (see :func:`wrap_for_training`).
    """
    stream = None
    if data:
        stream = build_stream(config, config.token_grid, runtime)
    seed_everything(config.runtime.seed)
    objective, sharding = prepare_objective(build_objective(config), config.runtime, runtime, shard=shard)
    groups = param_groups(objective.encoder, [objective.predictor, objective.pixel_head or nn.Identity()])
    opt = config.optimization
    optimizer = build_optimizer(groups, betas=opt.betas, eps=opt.eps, device=runtime.device)
    model = wrap_for_training(objective, runtime, ddp=ddp)
    decision = runtime.resolved(config.runtime.precision).decision
    assert decision is not None
    schedules = Schedules(opt)
    return Trainer(
        objective, model, optimizer, schedules, decision.precision, runtime, sharding, stream, decision
    )


def build_objective(config: PretrainConfig) -> JEPAObjective:
    """Encoder, predictor (one mask token per mask setting), target encoder (an exact copy, frozen) or the
    pixel head, freshly initialized as official pretraining does (every Linear N(0, 0.02), zero bias)."""
    m = config.model
    encoder = VideoEncoder(config.encoder_config())
    predictor = build_predictor(
        encoder,
        predictor_embed_dim=m.pred_embed_dim,
        depth=m.pred_depth,
        num_heads=m.pred_num_heads,
        num_mask_tokens=1 if m.pred_mask_tokens == "shared" else config.masks.num_settings,
        zero_init_mask_tokens=m.zero_init_mask_tokens,
    )
    return JEPAObjective(
        encoder,
        predictor,
        build_teacher(config, encoder),
        config.objective.loss_exp,
        config.objective.target,
        config.objective.teacher,
        config.objective.regularizer,
    )


def build_teacher(config: PretrainConfig, encoder: VideoEncoder) -> VideoEncoder | None:
    """The target encoder of ``objective.teacher``: an exact copy of the encoder (``ema``, and ``frozen``
    without a checkpoint), the encoder of ``teacher_checkpoint`` (``frozen``), or None (pixel targets, the
    ``online`` teacher)."""
    obj = config.objective
    if obj.target != "features" or obj.teacher == "online":
        return None
    if obj.teacher == "ema" or obj.teacher_checkpoint is None:
        return copy.deepcopy(encoder)
    pretrained = load_pretrained(obj.teacher_checkpoint)
    which = obj.teacher_which or ("target_encoder" if "target_encoder" in pretrained.models else "encoder")
    teacher = pretrained.encoder(which)
    if teacher.embed_dim != encoder.embed_dim:
        raise ConfigError(
            f"objective.teacher_checkpoint={obj.teacher_checkpoint}: its {which} is {teacher.embed_dim} wide, "
            f"the encoder {encoder.embed_dim}; a frozen teacher must have the encoder's width"
        )
    return teacher


def export_initial(config: PretrainConfig, out_dir: str | Path) -> Path:
    """Export the encoder a run of ``config`` starts from (seeded and built exactly as :func:`build_trainer`
    does), in the format of a run's ``export/``: the random-init baseline of an ablation, bit-identical to the
    initial weights of every run of the same model config and ``runtime.seed``."""
    seed_everything(config.runtime.seed)
    encoder = build_objective(config).encoder
    meta = {"steps": 0, "model": config.model.name, "initial": True}
    return save_pretrained(out_dir, {"encoder": encoder}, encoder.config, meta=meta)


def model_parts(objective: JEPAObjective) -> dict[str, nn.Module | None]:
    """The modules a checkpoint holds, by name."""
    return {
        "encoder": objective.encoder,
        "predictor": objective.predictor,
        "target_encoder": objective.target_encoder,
        "pixel_head": objective.pixel_head,
    }
