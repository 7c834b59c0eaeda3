"""The pretraining run: ``pretrain(config, run_dir)`` checks the run directory, builds the trainer
(:func:`vjepa.pretrain.setup.build_trainer`), resumes or warm-starts it, and calls :func:`fit`, which repeats
:func:`vjepa.pretrain.step.train_step` until ``int(epochs * ipe)`` optimizer steps are done, writing metrics,
checkpoints and the final export on the way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vjepa.config import save_config
from vjepa.data.errors import TooManyFailuresError
from vjepa.data.workers import WorkerDied, as_worker_death
from vjepa.errors import OutOfMemory, as_out_of_memory
from vjepa.masks import MaskedBatch
from vjepa.pretrain.config import PretrainConfig
from vjepa.pretrain.distributed import check_fsdp_support, full_objective
from vjepa.pretrain.metrics import MetricsWriter
from vjepa.pretrain.monitors import CollapseMonitor
from vjepa.pretrain.resume import adapt_saved_config, checkpoint_world_size, restore_training
from vjepa.pretrain.rundir import (
    RunDir,
    check_can_start,
    check_compatible,
    export_is_complete,
    inspect_run_dir,
    remove_stale_temporaries,
    saved_config,
    write_header,
)
from vjepa.pretrain.saving import checkpoint_step, export_models, save_checkpoint
from vjepa.pretrain.setup import Trainer, build_trainer, model_parts
from vjepa.pretrain.sharded import is_sharded_checkpoint
from vjepa.pretrain.state import LATEST, complete_kept_checkpoint, periodic_name
from vjepa.pretrain.step import StepResult, TrainingDiverged, train_step
from vjepa.pretrain.stopping import RunStopped, StopSignals, signal_name
from vjepa.pretrain.warm_start import warm_start
from vjepa.progress import Progress, hms
from vjepa.run_environment import record_run_environment
from vjepa.runtime import PrecisionDecision, Runtime, log, session
from vjepa.threads import StepTimeWatch

__all__ = ["FitResult", "RunStopped", "TrainingDiverged", "fit", "pretrain"]  # errors: what the CLI catches

INIT_SHARE_WARN = 0.25
"""Warn at start when the EMA target would still hold more than this share of its initial weights at the end."""


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


# ------------------------------------------------------------------------------------------------ start


def pretrain(config: PretrainConfig, run_dir: str | Path, *, resume: bool = False) -> FitResult:
    """Run (or continue) pretraining in ``run_dir``: the function behind ``vjepa pretrain``.

    Under ``torchrun`` every process calls this; it joins the process group, and rank 0 writes the files.
    Nothing is written into ``run_dir`` until the data, the models and the state are set up (the data indexes
    are read before any model is built), so a failed start leaves nothing that blocks the corrected command.

    Args:
        config: the resolved config.
        run_dir: the run directory (see :mod:`vjepa.pretrain.rundir` for the rules).
        resume: continue the run the directory holds (a missing or empty directory starts a new one).
    """
    with session(config.runtime.device, config.runtime.threads, config.runtime.precision) as runtime:
        run = check_run_dir(config, Path(run_dir), resume, runtime)
        trainer = build_trainer(config, runtime)
        start_step, last_loss = start_session(config, run, trainer)
        return fit(trainer, config, run, start_step, last_loss)


def check_run_dir(config: PretrainConfig, run_dir: Path, resume: bool, runtime: Runtime) -> RunDir:
    """What ``run_dir`` holds, once it is known that ``config`` may start or continue there."""
    if config.runtime.strategy == "fsdp":
        check_fsdp_support("runtime.strategy=fsdp")
    run = inspect_run_dir(run_dir)
    check_can_start(run, resume)
    if run.checkpoint is not None and is_sharded_checkpoint(run.checkpoint):
        check_fsdp_support(f"resuming from the sharded checkpoint {run.checkpoint}")
    if run.holds_run:
        saved = saved_config(run)
        if run.checkpoint is not None:
            saved = adapt_saved_config(saved, config, checkpoint_world_size(run.checkpoint), runtime)
        check_compatible(saved, config, run.config_path)
    return run


def start_session(config: PretrainConfig, run: RunDir, trainer: Trainer) -> tuple[int, float]:
    """Restore the run's checkpoint (or warm-start a new stage from ``model.init_from``), then let rank 0
    write into the directory; returns ``(start step, last loss)``."""
    runtime, objective = trainer.runtime, trainer.objective
    start_step, last_loss = 0, math.nan
    if run.checkpoint is not None:
        assert trainer.stream is not None
        parts = model_parts(objective)
        start_step, last_loss = restore_training(
            run.checkpoint, parts, objective, trainer.optimizer, trainer.stream, runtime
        )
        log(runtime, f"resuming {run.path} at step {start_step} from {run.checkpoint}")
    elif config.model.init_from:  # a new stage from another run's weights (V-JEPA 2 cooldown)
        for line in warm_start(model_parts(objective), config.model.init_from):
            log(runtime, f"init_from: {line}")
    runtime.barrier()  # every rank has set up before rank 0 writes into the directory
    if runtime.is_main:
        _start_writing(config, run, start_step, runtime)
    assert trainer.decision is not None
    record_run_environment(run.path, runtime, trainer.decision, start_step)
    return start_step, last_loss


def _start_writing(config: PretrainConfig, run: RunDir, start_step: int, runtime: Runtime) -> None:
    """Rank 0, once the run has really started: clean what killed writes left, write the config, finish the
    kept checkpoint a kill interrupted."""
    for tmp in remove_stale_temporaries(run):
        log(runtime, f"removed {tmp}, left by a write that was killed")
    run.path.mkdir(parents=True, exist_ok=True)
    save_config(config, run.config_path)
    write_header(run)
    if run.checkpoint is not None and run.checkpoint.name == LATEST:
        kept = complete_kept_checkpoint(run.checkpoint_dir, start_step, config.logging.keep_every)
        if kept is not None:
            log(runtime, f"wrote {kept}, the kept checkpoint the last session was killed before writing")


# -------------------------------------------------------------------------------------------------- fit


def fit(
    trainer: Trainer, config: PretrainConfig, run: RunDir, start_step: int = 0, last_loss: float = math.nan
) -> FitResult:
    """Train from ``start_step`` to ``optimization.total_steps``: a checkpoint every ``checkpoint_every`` steps
    and at the end, a kept one every ``keep_every``, then the export (with ``logging.export``). SIGTERM or
    SIGUSR1 ends it after the current step with a checkpoint and raises `RunStopped`
    (:mod:`vjepa.pretrain.stopping`)."""
    runtime, accumulation = trainer.runtime, config.optimization.accumulation_steps
    total = config.optimization.total_steps
    assert trainer.stream is not None
    batches = trainer.stream.batches()
    reporter = StepReporter(config, run, trainer, start_step)
    latest, step, result, stopped_by = run.checkpoint, start_step, None, None
    trainer.objective.train()
    try:
        with StopSignals(runtime) as stop:
            while step < total:
                micro = _next_micro_batches(batches, accumulation, runtime, stop)
                if micro is None:  # the stop signal reached the loader's workers first
                    stopped_by = stop.received
                    break
                step_start = time.perf_counter()
                result = _train_step(trainer, micro, step, latest)
                reporter.record(step, result, time.perf_counter() - step_start)
                step += 1
                latest = _save_when_due(config, trainer, run, step, result.loss, latest)
                stopped_by = stop.requested()
                if stopped_by is not None:
                    break
            if step >= total:
                stopped_by = None  # the run is complete: nothing to stop, the export follows
            if stopped_by is not None and result is not None and not _latest_due(config, step):
                latest = save_checkpoint(config, trainer, step, result.loss, run.checkpoint_dir / LATEST)
    except (TooManyFailuresError, WorkerDied, RuntimeError) as err:
        # a worker's death can surface anywhere in the step; running out of memory, in the step or a save
        stopped = (
            as_worker_death(err) or as_out_of_memory(err, runtime.device.type, _memory_tips(runtime)) or err
        )
        if not isinstance(stopped, (TooManyFailuresError, WorkerDied, OutOfMemory)):
            raise
        stopped.args = (f"{stopped}; the run stopped at step {step}. The last checkpoint: {_where(latest)}",)
        raise stopped from None
    finally:
        reporter.close()
    if stopped_by is not None:
        raise RunStopped(
            f"stopped by {signal_name(stopped_by)} after step {step} of {total}; the last checkpoint: "
            f"{_where(latest)}. `vjepa pretrain --resume --run-dir {run.path}` continues the run",
            stopped_by,
        )
    if config.logging.export and not export_is_complete(run, step):
        plain = full_objective(trainer.objective, trainer.sharding, runtime)  # every rank, when sharded
        if runtime.is_main:
            export_models(config, plain, run.export_dir, step)
    last = result.loss if result is not None else last_loss
    log(runtime, f"done: {step} steps in {run.path} (last loss {last:.4f})")
    return FitResult(run.path, start_step, step, last, latest, trainer.decision)


def _next_micro_batches(
    batches: Iterator[MaskedBatch], count: int, runtime: Runtime, stop: StopSignals
) -> list[MaskedBatch] | None:
    """The step's ``count`` micro-batches on the device; None when a stop signal has arrived and the loader's
    workers died of it before this step read anything (one process: the model is at a step boundary)."""
    micro: list[MaskedBatch] = []
    try:
        for _ in range(count):
            micro.append(next(batches).to(runtime.device, non_blocking=True))
    except WorkerDied:
        if stop.received is None or micro or runtime.distributed:
            raise
        return None
    return micro


def _train_step(trainer: Trainer, micro: list[MaskedBatch], step: int, latest: Path | None) -> StepResult:
    """:func:`train_step`; a divergence names the last good checkpoint."""
    try:
        return train_step(trainer, micro, step)
    except TrainingDiverged as err:
        raise TrainingDiverged(
            f"{err}; the run stopped. The last good checkpoint: {_where(latest)}"
        ) from None


def _memory_tips(runtime: Runtime) -> list[str]:
    """What lowers a pretraining step's memory, for `OutOfMemory`."""
    tips = ["resume with `--set runtime.activation_checkpointing=true` (the same maths, less memory)"]
    if runtime.world_size > 1:
        tips.append("`--set runtime.strategy=fsdp` (weights and optimizer state sharded over the processes)")
    tips.append("a smaller data.batch_size (with more optimization.accumulation_steps) needs a new run")
    return tips


def _where(latest: Path | None) -> str:
    return f"{latest} (resumes at step {checkpoint_step(latest)})" if latest else "none was written yet"


def _save_when_due(
    config: PretrainConfig, trainer: Trainer, run: RunDir, step: int, loss: float, latest: Path | None
) -> Path | None:
    """The checkpoints due after ``step`` steps; returns the latest checkpoint."""
    logcfg = config.logging
    if _latest_due(config, step):
        latest = save_checkpoint(config, trainer, step, loss, run.checkpoint_dir / LATEST)
    if logcfg.keep_every is not None and step % logcfg.keep_every == 0:
        kept = save_checkpoint(config, trainer, step, loss, run.checkpoint_dir / periodic_name(step))
        latest = kept if config.runtime.strategy == "fsdp" else latest
    return latest


def _latest_due(config: PretrainConfig, step: int) -> bool:
    """Whether ``latest`` is written after ``step`` steps: every ``checkpoint_every`` and at the end."""
    return step % config.logging.checkpoint_every == 0 or step == config.optimization.total_steps


class StepReporter:
    """What a session shows and records of each step: the metrics rows (rank 0), the progress bar or log lines,
    the collapse monitor's statistics and warnings, and step-time swings on the CPU.

    Args:
        config: the run config (``logging``: what to write and how often).
        run: the run directory (``metrics.jsonl``).
        trainer: the session's trainer (runtime, schedules for the EMA warning).
        start_step: the first step of the session.
    """

    def __init__(self, config: PretrainConfig, run: RunDir, trainer: Trainer, start_step: int) -> None:
        runtime, logcfg, opt = trainer.runtime, config.logging, config.optimization
        self.runtime, self.logcfg, self.ipe, self.total = runtime, logcfg, opt.ipe, opt.total_steps
        self.clips_per_step = config.data.batch_size * opt.accumulation_steps * runtime.world_size
        self.metrics = None
        if runtime.is_main:
            self.metrics = MetricsWriter(run.path, logcfg.metrics_format, logcfg.tensorboard, start_step)
        self.progress = runtime.progress(
            self.total,
            "pretraining",
            unit="step",
            initial=start_step,
            bar=logcfg.progress_bar,
            lines=False,  # the loop prints its own lines every log_every steps
        )
        self.monitor = CollapseMonitor()
        _warn_slow_ema(trainer, self.total, self.progress)
        self.watch = StepTimeWatch(runtime.threads) if runtime.device.type == "cpu" else None
        self.window_start, self.window_steps = time.perf_counter(), 0

    def record(self, step: int, result: StepResult, seconds: float) -> None:
        """Observe step ``step`` (``seconds`` in :func:`train_step`); write a row every ``log_every`` steps."""
        swing = self.watch.observe(seconds) if self.watch is not None else None
        if swing is not None:
            self.progress.write(f"WARNING step {step}: {swing}", err=True)
        self.monitor.observe(result.output.pooled_targets)
        self.window_steps += 1
        elapsed = time.perf_counter() - self.window_start
        clips_per_s = self.clips_per_step * self.window_steps / max(elapsed, 1e-9)
        row = metrics_row(result, step, self.ipe, clips_per_s, elapsed / self.window_steps)
        monitored = step % self.logcfg.monitor_every == 0
        if monitored:
            stats = self.monitor.evaluate(result.output.targets, result.output.predictions, step)
            row.update(stats.as_metrics())
            for warning in stats.warnings:
                self.progress.write(f"WARNING step {step}: {warning}", err=True)
        self.progress.update(
            1, loss=f"{result.loss:.4f}", lr=f"{result.lr:.2e}", clips_s=f"{clips_per_s:.1f}"
        )
        if monitored or step % self.logcfg.log_every == 0 or step == self.total - 1:
            if self.metrics is not None:
                self.metrics.write(step, row)
            if not self.progress.terminal:
                eta = (self.total - step - 1) * elapsed / self.window_steps
                log(
                    self.runtime,
                    f"step {step}/{self.total} loss {result.loss:.4f} lr {result.lr:.3e} "
                    f"clips/s {clips_per_s:.1f} eta {hms(eta)}",
                )
            self.window_start, self.window_steps = time.perf_counter(), 0

    def close(self) -> None:
        self.progress.close()
        if self.metrics is not None:
            self.metrics.close()


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


def metrics_row(result: StepResult, step: int, ipe: int, clips_per_s: float, step_time: float) -> dict:
    """The row ``metrics.jsonl`` gets for a step."""
    return {
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
