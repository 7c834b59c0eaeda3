"""Writing a run's checkpoints and its final export, from the loop (the formats are in
:mod:`vjepa.pretrain.state` and :mod:`vjepa.pretrain.sharded`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from vjepa.checkpoint import CheckpointError, save_pretrained
from vjepa.config import to_dict
from vjepa.pretrain.config import PretrainConfig
from vjepa.pretrain.objective import JEPAObjective
from vjepa.pretrain.schedules import Schedules
from vjepa.pretrain.setup import Trainer, model_parts
from vjepa.pretrain.sharded import checkpoint_summary, save_sharded
from vjepa.pretrain.state import save_training_state
from vjepa.runtime import Runtime, log


def save_checkpoint(config: PretrainConfig, trainer: Trainer, step: int, loss: float, path: Path) -> Path:
    """Write a checkpoint from rank 0; first check that every rank holds the same weights. With
    ``runtime.strategy: fsdp`` every rank writes its shards instead (:mod:`vjepa.pretrain.sharded`; the folder
    is named by the step, whatever ``path``). Returns the checkpoint written."""
    assert trainer.stream is not None
    if config.runtime.strategy == "fsdp":
        extra = {
            "data": trainer.stream.state_dict(),
            "config": to_dict(config),
            "world_size": trainer.runtime.world_size,
            "loss": loss,
        }
        return save_sharded(
            path.parent,
            step=step,
            objective=trainer.objective,
            optimizer=trainer.optimizer,
            extra=extra,
            runtime=trainer.runtime,
            keep_every=config.logging.keep_every,
        )
    if trainer.runtime.distributed:
        check_ranks_in_sync(trainer.objective, trainer.runtime, step)
    if trainer.runtime.is_main:
        save_training_state(
            path,
            step=step,
            models=model_parts(trainer.objective),
            optimizer=trainer.optimizer,
            data_state=trainer.stream.state_dict(),
            config=to_dict(config),
            world_size=trainer.runtime.world_size,
            loss=loss,
        )
    trainer.runtime.barrier()
    return path


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``module`` (in state-dict order), bit for bit."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_ranks_in_sync(objective: JEPAObjective, runtime: Runtime, step: int) -> None:
    """Compare the weight digests of all ranks; a difference (a DDP desync) stops the run on every rank."""
    mine = weights_digest(objective)
    digests: list[str | None] = [None] * runtime.world_size
    dist.all_gather_object(digests, mine)
    if len(set(digests)) != 1:
        raise RuntimeError(f"step {step}: the ranks' weights differ (digests {digests}); DDP is out of sync")
    log(runtime, f"step {step}: weights identical on {runtime.world_size} ranks (sha256 {mine[:16]})")


def export_models(config: PretrainConfig, objective: JEPAObjective, out_dir: Path, step: int) -> None:
    """The final models for the other commands. A ``frozen`` teacher is not exported: it is an input of the
    run (its own checkpoint), and the run's product is the encoder."""
    models = {"encoder": objective.encoder, "predictor": objective.predictor}
    obj = config.objective
    meta = {"steps": step, "target": obj.target, "model": config.model.name, "teacher": obj.teacher}
    if objective.target_encoder is not None and objective.teacher == "ema":
        models["target_encoder"] = objective.target_encoder
        meta["target_encoder_init_share"] = Schedules(config.optimization).initial_weight_share(step)
    if obj.regularizer.kind != "none":
        meta["regularizer"] = to_dict(obj.regularizer)
    save_pretrained(out_dir, models, objective.encoder.config, objective.predictor.config, meta=meta)


def checkpoint_step(path: Path) -> int | str:
    """The step a checkpoint resumes at, or ``?`` when it cannot be read."""
    try:
        return int(checkpoint_summary(path)["step"])
    except (ValueError, KeyError, CheckpointError):
        return "?"
