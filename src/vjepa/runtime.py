"""Where and how a run executes: device, precision, threads, seeding and torch.distributed (torchrun).

Nothing here runs at import time; a command calls :func:`setup` once when it starts.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist

Precision = Literal["fp32", "bf16"]
DeviceName = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class Runtime:
    """The process's place in the run.

    Args:
        device: where tensors live.
        rank: global rank (0 when single-process).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device("cpu")


def setup(device: str = "auto", threads: int | None = None) -> Runtime:
    """Start the run: join the torchrun process group when launched by torchrun (gloo on CPU, NCCL on
    CUDA), pick the device, set the CPU thread count.

    Args:
        device: ``auto`` | ``cpu`` | ``cuda``.
        threads: intra-op CPU threads (None keeps torch's default).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if threads:
        torch.set_num_threads(threads)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, rank, world_size, local_rank)


def teardown() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast (CUDA and CPU; no GradScaler is needed for bf16), or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")


def log(runtime: Runtime | None, message: str) -> None:
    """Print from rank 0 only."""
    if runtime is None or runtime.is_main:
        print(message, flush=True)
