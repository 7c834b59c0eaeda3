"""The pretraining loop, written to read like the algorithm.

``pretrain(config, run_dir)`` sets up the run (process group, models, optimizer, data, resume) and calls
``fit``, which repeats ``train_step`` until ``int(epochs * ipe)`` optimizer steps are done. One step:

1. the step's LR and weight decay from the schedules (pure functions of the step);
2. for each of ``accumulation_steps`` micro-batches: the objective (target encoder on the full clip,
   context encoder + predictor per mask setting) under autocast, and ``backward`` of ``loss / accum``
   (gradients are all-reduced by DDP on the last micro-batch only);
3. the loss is averaged over ranks; a NaN or infinite loss stops the run before the weights change;
4. gradient norms of the encoder and of the predictor, each clipped at ``clip_grad`` once the epoch exceeds
   ``warmup`` (official);
5. AdamW step, then the EMA update of the target encoder with the step's momentum.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vjepa.checkpoint import CheckpointError, load_pretrained, save_pretrained
from vjepa.config import ConfigError, save_config, to_dict
from vjepa.grid import TokenGrid
from vjepa.masks import MaskedBatch
from vjepa.models import VideoEncoder, build_encoder, build_predictor
from vjepa.pretrain.config import PretrainConfig
from vjepa.pretrain.data import build_stream
from vjepa.pretrain.distributed import (
    Sharding,
    full_objective,
    gradient_sync,
    plain_tensor,
    prepare_objective,
    wrap_for_training,
)
from vjepa.pretrain.metrics import MetricsWriter
from vjepa.pretrain.monitors import CollapseMonitor
from vjepa.pretrain.objective import JEPAObjective, ObjectiveOutput
from vjepa.pretrain.optim import build_optimizer, param_groups, set_lr_and_wd
from vjepa.pretrain.resume import adapt_saved_config, checkpoint_world_size, restore_training
from vjepa.pretrain.rundir import (
    RunDir,
    check_can_start,
    check_compatible,
    export_is_complete,
    inspect_run_dir,
    remove_stale_temporaries,
    saved_config,
)
from vjepa.pretrain.schedules import Schedules
from vjepa.pretrain.sharded import checkpoint_summary, save_sharded
from vjepa.pretrain.state import (
    LATEST,
    complete_kept_checkpoint,
    periodic_name,
    save_training_state,
)
from vjepa.pretrain.warm_start import warm_start
from vjepa.progress import Progress, hms
from vjepa.run_environment import record_run_environment
from vjepa.runtime import (
    Precision,
    PrecisionDecision,
    Runtime,
    autocast,
    log,
    seed_everything,
    setup,
    teardown,
)
from vjepa.threads import StepTimeWatch


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class StepResult:
    """What one optimizer step reports.

    Args:
        loss: the loss averaged over micro-batches and ranks.
        mask_losses: the same per mask setting.
        lr: the step's learning rate.
        weight_decay: the step's weight decay.
        momentum: the EMA momentum applied after the step.
        grad_norm_encoder: the encoder's gradient norm before clipping.
        grad_norm_predictor: the predictor's (with the pixel head) gradient norm before clipping.
        clipped: whether clipping was active.
        output: the last micro-batch's objective output (for the monitors), detached.
        prediction_loss: the prediction loss alone (``loss`` without the regulariser's terms).
        terms: the regulariser's weighted terms by name, averaged like ``loss`` (empty without one).
    """

    loss: float
    mask_losses: list[float]
    lr: float
    weight_decay: float
    momentum: float
    grad_norm_encoder: float
    grad_norm_predictor: float
    clipped: bool
    output: ObjectiveOutput
    prediction_loss: float = float("nan")
    terms: dict[str, float] = field(default_factory=dict)


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
    """

    objective: JEPAObjective
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedules: Schedules
    precision: Precision
    runtime: Runtime
    sharding: Sharding | None = None

    @property
    def predictor_parts(self) -> list[nn.Module]:
        parts: list[nn.Module] = [self.objective.predictor]
        if self.objective.pixel_head is not None:
            parts.append(self.objective.pixel_head)
        return parts


@dataclass
class FitResult:
    """The outcome of a session.

    Args:
        run_dir: the run directory.
        start_step: the step the session started at (0, or the resumed checkpoint's).
        end_step: optimizer steps completed at the end.
        last_loss: loss of the last step (NaN when no step ran).
        checkpoint: the latest checkpoint.
        precision: the precision the session ran and why (also in ``runtime.json``).
    """

    run_dir: Path
    start_step: int
    end_step: int
    last_loss: float
    checkpoint: Path | None
    precision: PrecisionDecision | None = None


# ------------------------------------------------------------------------------------------------- build


def build_objective(config: PretrainConfig) -> JEPAObjective:
    """Encoder, predictor (one mask token per mask setting), target encoder (an exact copy, frozen) or the
    pixel head, freshly initialized as official pretraining does (every Linear N(0, 0.02), zero bias)."""
    m, d = config.model, config.data
    encoder = build_encoder(
        m.name,
        num_frames=d.num_frames,
        img_size=d.crop_size,
        patch_size=m.patch_size,
        tubelet_size=m.tubelet_size,
        uniform_power=m.uniform_power,
        positions=m.positions,
        num_heads=m.num_heads,
        embed_dim=m.embed_dim,
        depth=m.depth,
    )
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
    """Export the encoder a run of ``config`` starts from (seeded and built exactly as :func:`fit` does), in
    the format of a run's ``export/``: the random-init baseline of an ablation, bit-identical to the
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


def clip_token_grid(config: PretrainConfig) -> TokenGrid:
    """The token grid of the config's clips, known before any model is built."""
    from vjepa.models.registry import MODEL_SIZES

    m, d = config.model, config.data
    patch = m.patch_size or MODEL_SIZES[m.name].patch_size
    return TokenGrid.from_clip(
        d.num_frames, d.crop_size, d.crop_size, tubelet_size=m.tubelet_size, patch_size=patch
    )


def token_grid(config: PretrainConfig, objective: JEPAObjective) -> TokenGrid:
    c = objective.encoder.config
    return TokenGrid.from_clip(
        config.data.num_frames,
        config.data.crop_size,
        config.data.crop_size,
        tubelet_size=c.tubelet_size,
        patch_size=c.patch_size,
    )


# -------------------------------------------------------------------------------------------------- step


def train_step(trainer: Trainer, micro_batches: Sequence[MaskedBatch], step: int) -> StepResult:
    """One optimizer step over ``micro_batches`` (already on the device); see the module docstring.

    Args:
        trainer: models, optimizer, schedules.
        micro_batches: ``accumulation_steps`` batches of this rank.
        step: the 0-based step (selects the schedules' values).

    Raises:
        TrainingDiverged: the loss is NaN or infinite (the weights are left unchanged).
    """
    lr = trainer.schedules.lr(step)
    wd = trainer.schedules.weight_decay(step)
    momentum = trainer.schedules.momentum(step)
    set_lr_and_wd(trainer.optimizer, lr, wd)

    n = len(micro_batches)
    loss_sum: Tensor | None = None
    out: ObjectiveOutput | None = None
    for i, batch in enumerate(micro_batches):
        with gradient_sync(trainer.model, enabled=i == n - 1):
            with autocast(trainer.precision, trainer.runtime.device):
                out = trainer.model(batch.clips, batch.masks, step=step)
            (out.loss / n).backward()
        parts = [out.loss.detach(), *out.mask_losses, *out.terms.values()]
        if out.terms:
            parts.append(out.prediction_loss)
        losses = torch.stack([x.float() for x in parts])  # [1 + M + terms (+ 1)]
        loss_sum = losses if loss_sum is None else loss_sum + losses
    assert loss_sum is not None and out is not None
    losses = loss_sum / n
    if trainer.runtime.distributed:
        dist.all_reduce(losses)
        losses /= trainer.runtime.world_size
    values = losses.tolist()
    if not math.isfinite(values[0]):
        raise TrainingDiverged(f"step {step}: the loss is {values[0]}")
    num_masks = len(out.mask_losses)
    terms = dict(zip(out.terms, values[1 + num_masks : 1 + num_masks + len(out.terms)], strict=True))
    prediction_loss = values[-1] if out.terms else values[0]

    clipping = trainer.schedules.clipping(step)
    max_norm = trainer.schedules.config.clip_grad if clipping else None
    norm_enc = _grad_norm(trainer.objective.encoder.parameters(), max_norm)
    norm_pred = _grad_norm((p for part in trainer.predictor_parts for p in part.parameters()), max_norm)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.objective.update_target(momentum)
    return StepResult(
        loss=values[0],
        mask_losses=values[1 : 1 + num_masks],
        lr=lr,
        weight_decay=wd,
        momentum=momentum,
        grad_norm_encoder=float(norm_enc),
        grad_norm_predictor=float(norm_pred),
        clipped=clipping,
        output=_detached(out),
        prediction_loss=prediction_loss,
        terms=terms,
    )


def _grad_norm(params: Iterator[nn.Parameter], max_norm: float | None) -> Tensor:
    """The total gradient norm; with ``max_norm``, also clip to it."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm is None:
        return plain_tensor(torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True))
    return plain_tensor(torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True))


def _detached(out: ObjectiveOutput) -> ObjectiveOutput:
    return ObjectiveOutput(
        loss=out.loss.detach(),
        mask_losses=out.mask_losses,
        pred_std=out.pred_std,
        target_std=out.target_std,
        predictions=[p.detach() for p in out.predictions],
        targets=[t.detach() for t in out.targets],
        pooled_targets=out.pooled_targets,
        terms=out.terms,
        prediction_loss=out.prediction_loss,
    )


# -------------------------------------------------------------------------------------------------- run


def pretrain(config: PretrainConfig, run_dir: str | Path, *, resume: bool = False) -> FitResult:
    """Run (or continue) pretraining in ``run_dir``: the function behind ``vjepa pretrain``.

    Under ``torchrun`` every process calls this; it joins the process group, and rank 0 writes the files.

    Args:
        config: the resolved config.
        run_dir: the run directory (see :mod:`vjepa.pretrain.rundir` for the rules).
        resume: continue the run the directory holds (a missing or empty directory starts a new one).
    """
    runtime = setup(config.runtime.device, config.runtime.threads, config.runtime.precision)
    try:
        return fit(config, Path(run_dir), resume, runtime)
    finally:
        teardown()


def fit(config: PretrainConfig, run_dir: Path, resume: bool, runtime: Runtime) -> FitResult:
    """Set up data, models, optimizer and state, then train to the configured step count.

    Nothing is written into ``run_dir`` until all of that succeeded (the data indexes are read before any
    model is built), so a failed start leaves nothing that blocks the corrected command.
    """
    run = inspect_run_dir(run_dir)
    check_can_start(run, resume)
    if run.holds_run:
        saved = saved_config(run)
        if run.checkpoint is not None:
            saved = adapt_saved_config(saved, config, checkpoint_world_size(run.checkpoint), runtime)
        check_compatible(saved, config, run.config_path)
    stream = build_stream(config, clip_token_grid(config), pin_memory=runtime.device.type == "cuda")

    seed_everything(config.runtime.seed)
    objective, sharding = prepare_objective(build_objective(config), config.runtime, runtime)
    groups = param_groups(objective.encoder, [objective.predictor, objective.pixel_head or nn.Identity()])
    optimizer = build_optimizer(
        groups, betas=config.optimization.betas, eps=config.optimization.eps, device=runtime.device
    )

    start_step, last_loss = 0, float("nan")
    if run.checkpoint is not None:
        parts = model_parts(objective)
        start_step, last_loss = restore_training(run.checkpoint, parts, objective, optimizer, stream, runtime)
        log(runtime, f"resuming {run_dir} at step {start_step} from {run.checkpoint}")
    elif config.model.init_from:  # a new stage from another run's weights (V-JEPA 2 cooldown)
        for line in warm_start(model_parts(objective), config.model.init_from):
            log(runtime, f"init_from: {line}")
    runtime.barrier()  # every rank has set up before rank 0 writes into the directory
    if runtime.is_main:
        _start_writing(config, run, start_step, runtime)

    model = wrap_for_training(objective, runtime)
    decision = runtime.resolved(config.runtime.precision).decision
    assert decision is not None
    record_run_environment(run.path, runtime, decision, start_step)
    trainer = Trainer(
        objective,
        model,
        optimizer,
        Schedules(config.optimization),
        decision.precision,
        runtime,
        sharding,
    )
    result = _train(config, run, trainer, stream, start_step, last_loss)
    result.precision = decision
    return result


def _start_writing(config: PretrainConfig, run: RunDir, start_step: int, runtime: Runtime) -> None:
    """Rank 0, once the run has really started: clean what killed writes left, write the config, finish the
    kept checkpoint a kill interrupted."""
    for tmp in remove_stale_temporaries(run):
        log(runtime, f"removed {tmp}, left by a write that was killed")
    run.path.mkdir(parents=True, exist_ok=True)
    save_config(config, run.config_path)
    if run.checkpoint is not None and run.checkpoint.name == LATEST:
        kept = complete_kept_checkpoint(run.checkpoint_dir, start_step, config.logging.keep_every)
        if kept is not None:
            log(runtime, f"wrote {kept}, the kept checkpoint the last session was killed before writing")


def _train(
    config: PretrainConfig, run: RunDir, trainer: Trainer, stream, start_step: int, last_loss: float
) -> FitResult:
    runtime = trainer.runtime
    opt, logcfg = config.optimization, config.logging
    total = opt.total_steps
    clips_per_step = config.data.batch_size * opt.accumulation_steps * runtime.world_size
    metrics = (
        MetricsWriter(run.path, logcfg.metrics_format, logcfg.tensorboard, start_step)
        if runtime.is_main
        else None
    )
    progress = Progress(
        total,
        "pretraining",
        unit="step",
        initial=start_step,
        enabled=runtime.is_main,
        mode="auto" if logcfg.progress_bar else "lines",
        lines=False,  # the loop prints its own lines every log_every steps
        leave=True,
    )
    monitor = CollapseMonitor()
    _warn_slow_ema(trainer, total, progress)
    latest = run.checkpoint
    batches = stream.batches()
    step, result = start_step, None
    window_start, window_steps = time.perf_counter(), 0
    watch = StepTimeWatch(runtime.threads) if runtime.device.type == "cpu" else None
    trainer.objective.train()
    try:
        while step < total:
            micro = [
                next(batches).to(runtime.device, non_blocking=True) for _ in range(opt.accumulation_steps)
            ]
            step_start = time.perf_counter()
            try:
                result = train_step(trainer, micro, step)
            except TrainingDiverged as err:
                where = (
                    f"{latest} (resumes at step {_checkpoint_step(latest)})"
                    if latest
                    else "none was written yet"
                )
                raise TrainingDiverged(f"{err}; the run stopped. The last good checkpoint: {where}") from None
            swing = watch.observe(time.perf_counter() - step_start) if watch is not None else None
            if swing is not None:
                progress.write(f"WARNING step {step}: {swing}", err=True)
            monitor.observe(result.output.pooled_targets)
            window_steps += 1
            elapsed = time.perf_counter() - window_start
            clips_per_s = clips_per_step * window_steps / max(elapsed, 1e-9)
            row = _metrics_row(result, step, opt.ipe, clips_per_s, elapsed / window_steps)
            monitored = step % logcfg.monitor_every == 0
            if monitored:
                stats = monitor.evaluate(result.output.targets, result.output.predictions, step)
                row.update(stats.as_metrics())
                for warning in stats.warnings:
                    progress.write(f"WARNING step {step}: {warning}", err=True)
            progress.update(1, loss=f"{result.loss:.4f}", lr=f"{result.lr:.2e}", clips_s=f"{clips_per_s:.1f}")
            if monitored or step % logcfg.log_every == 0 or step == total - 1:
                if metrics is not None:
                    metrics.write(step, row)
                if not progress.terminal:
                    eta = (total - step - 1) * elapsed / window_steps
                    log(
                        runtime,
                        f"step {step}/{total} loss {result.loss:.4f} lr {result.lr:.3e} "
                        f"clips/s {clips_per_s:.1f} eta {hms(eta)}",
                    )
                window_start, window_steps = time.perf_counter(), 0
            step += 1
            if step % logcfg.checkpoint_every == 0 or step == total:
                latest = _save(config, trainer, stream, step, result.loss, run.checkpoint_dir / LATEST)
            if logcfg.keep_every is not None and step % logcfg.keep_every == 0:
                kept = _save(
                    config, trainer, stream, step, result.loss, run.checkpoint_dir / periodic_name(step)
                )
                latest = kept if config.runtime.strategy == "fsdp" else latest
    finally:
        progress.close()
        if metrics is not None:
            metrics.close()
    if logcfg.export and not export_is_complete(run, step):
        plain = full_objective(trainer.objective, trainer.sharding, runtime)  # every rank, when sharded
        if runtime.is_main:
            _export(config, plain, run.export_dir, step)
    last = result.loss if result is not None else last_loss
    log(runtime, f"done: {step} steps in {run.path} (last loss {last:.4f})")
    return FitResult(run.path, start_step, step, last, latest)


INIT_SHARE_WARN = 0.25
"""Warn at start when the EMA target would still hold more than this share of its initial weights at the end."""


def _warn_slow_ema(trainer: Trainer, total: int, progress: Progress) -> None:
    if trainer.objective.target_encoder is None or trainer.objective.teacher != "ema":
        return
    share = trainer.schedules.initial_weight_share(total)
    if share > INIT_SHARE_WARN:
        progress.write(
            f"WARNING: with EMA momentum from {trainer.schedules.start_momentum:.4f} over {total} steps the target "
            f"encoder will still be {share:.0%} its initial weights at the end of this run; for a short run set "
            "optimization.ema_horizon (e.g. 0.05: the EMA's time constant as a fraction of the run) or lower "
            "optimization.ema[0]",
            err=True,
        )


def _metrics_row(result: StepResult, step: int, ipe: int, clips_per_s: float, step_time: float) -> dict:
    row = {
        "epoch": step // ipe,
        "loss": result.loss,
        **{f"loss_mask{i}": v for i, v in enumerate(result.mask_losses)},
        **({"loss_prediction": result.prediction_loss, **result.terms} if result.terms else {}),
        "lr": result.lr,
        "weight_decay": result.weight_decay,
        "momentum": result.momentum,
        "grad_norm_encoder": result.grad_norm_encoder,
        "grad_norm_predictor": result.grad_norm_predictor,
        "pred_std": float(sum(result.output.pred_std) / len(result.output.pred_std)),
        "target_std": float(sum(result.output.target_std) / len(result.output.target_std)),
        "clips_per_s": clips_per_s,
        "step_time_s": step_time,
    }
    return row


def _save(config: PretrainConfig, trainer: Trainer, stream, step: int, loss: float, path: Path) -> Path:
    """Write a checkpoint from rank 0; first check that every rank holds the same weights. With
    ``runtime.strategy: fsdp`` every rank writes its shards instead (:mod:`vjepa.pretrain.sharded`; the folder
    is named by the step, whatever ``path``). Returns the checkpoint written."""
    if config.runtime.strategy == "fsdp":
        extra = {
            "data": stream.state_dict(),
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
            data_state=stream.state_dict(),
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


def _export(config: PretrainConfig, objective: JEPAObjective, out_dir: Path, step: int) -> None:
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


def _checkpoint_step(path: Path) -> int | str:
    try:
        return int(checkpoint_summary(path)["step"])
    except (ValueError, KeyError, CheckpointError):
        return "?"
