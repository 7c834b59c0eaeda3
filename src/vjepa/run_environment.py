"""What a run folder records about where it ran: device, threads, CPU bf16 facts and the precision, one entry
per session of the run in ``runtime.json``."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vjepa.precision import PrecisionDecision, cpu_bf16_support
from vjepa.runtime import Runtime, log, log_precision


def record_run_environment(run_dir: Path, runtime: Runtime, decision: PrecisionDecision, step: int) -> None:
    """Print the precision and the threads, and append them to ``run_dir/runtime.json`` (one entry per
    session of a run, from rank 0).

    Args:
        run_dir: the run folder.
        runtime: the process's runtime.
        decision: the resolved precision.
        step: the step the session starts at.
    """
    log_precision(runtime, decision)
    if runtime.threads is not None:
        log(runtime, runtime.threads.describe())
    if not runtime.is_main:
        return
    path = run_dir / "runtime.json"
    sessions = json.loads(path.read_text()) if path.is_file() else []
    sessions.append({"start_step": step, **run_environment(runtime, decision)})
    path.write_text(json.dumps(sessions, indent=2) + "\n")


def run_environment(runtime: Runtime, decision: PrecisionDecision) -> dict[str, Any]:
    """What a run folder records about where it ran: device, threads, CPU bf16 facts, precision."""
    info: dict[str, Any] = {
        "device": str(runtime.device),
        "world_size": runtime.world_size,
        "torch": torch.__version__,
        "precision": decision.as_dict(),
    }
    if runtime.threads is not None:
        info["threads"] = asdict(runtime.threads)
    if runtime.device.type == "cpu":
        support = cpu_bf16_support()
        info["cpu"] = {
            "machine": platform.machine(),
            "torch_kernels": support.torch_kernels,
            "bf16_flags": list(support.bf16_flags),
            "onednn_isa_limit": support.onednn_isa_limit,
            "native_bf16": support.native,
        }
    elif runtime.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(runtime.device)
    return info
