"""Where and how a run executes: device, precision, threads, seeding and torch.distributed (torchrun).

Nothing here runs at import time; a command calls :func:`setup` once when it starts.

**Precision.** Every command takes ``precision: auto | fp32 | bf16`` (:data:`PrecisionChoice`) and resolves it
with :func:`resolve_precision` into the precision it runs (:data:`Precision`) and the reason. ``auto`` picks
bf16 autocast only where bf16 is native and faster: a CUDA device of compute capability 8.0 or newer, or a
CPU on which torch really runs bf16 natively (AVX512-BF16 or AMX in the hardware, torch's kernels at AVX512,
oneDNN not limited below its bf16 ISA; a small bf16 matmul probe, measured once per process, must not be
clearly slower than fp32); fp32 everywhere else. An AVX2-only CPU emulates bf16, and a bf16 training step there is about 9x slower
than fp32, so an explicit ``bf16`` on such a CPU is run but warned about.

**Threads.** :func:`setup` sets the intra-op thread count (``runtime.threads``, else ``OMP_NUM_THREADS``,
else the CPUs this process may use, see :mod:`vjepa.threads`); :class:`vjepa.threads.StepTimeWatch` notices step times
that swing by more than 2x, the sign of other processes competing for the cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist

from vjepa.config import InvalidValue
from vjepa.errors import InvalidArgument
from vjepa.process_group import join_process_group
from vjepa.progress import Mode, Progress, track
from vjepa.threads import ThreadSettings, usable_cpus, user_thread_count, wait_policy

PrecisionChoice = Literal["auto", "fp32", "bf16"]
Precision = Literal["fp32", "bf16"]
PRECISION_CHOICES: tuple[PrecisionChoice, ...] = ("auto", "fp32", "bf16")
DeviceName = Literal["auto", "cpu", "cuda"]


@dataclass
class RuntimeSpec:
    """Where and how a command runs, in the words every command's config uses (pretraining ``runtime``, the
    top level of evaluation; extraction and the demo take the same flags). The configs inherit these fields.

    Args:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        precision: ``auto`` (the default of every command: bf16 autocast where bf16 is native and faster, fp32
            elsewhere; see :func:`resolve_precision`), ``fp32`` or ``bf16``.
        threads: CPU intra-op threads per process (None: ``OMP_NUM_THREADS`` if set, else the CPUs this
            process may use; see :func:`configure_threads`).
        seed: the run's seed.
    """

    device: DeviceName = "auto"
    precision: PrecisionChoice = "auto"
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise InvalidValue("seed", f"must be >= 0, got {self.seed}")
        if isinstance(self.threads, int) and self.threads < 1:
            raise InvalidValue("threads", f"must be >= 1 or null, got {self.threads}")


# ``auto`` refuses bf16 on a CPU whose matmul probe measures bf16 below this fraction of fp32's speed. On the
# development machine (AVX512-BF16) the probe measured 1.0-2.4x natively at load averages of 6-12 on 2 cores,
# and 0.21-0.25x under forced AVX2 kernels (emulated bf16).
MIN_BF16_SPEEDUP = 0.8
# oneDNN ISA limits (ONEDNN_MAX_CPU_ISA) at or above the first with native bf16 matmuls.
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")


@dataclass(frozen=True)
class Runtime:
    """The run context: the process's place in the run and how it computes, resolved once by :func:`setup`;
    every command (pretraining, probes, extraction, the demo) asks it for autocast, barriers, progress and
    its share of the work instead of doing its own.

    Args:
        device: where tensors live.
        rank: global rank (0 when single-process).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        threads: the CPU thread settings :func:`setup` made (None when built by hand).
        decision: the resolved precision and why (None when built by hand: fp32).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    threads: ThreadSettings | None = None
    decision: PrecisionDecision | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def precision(self) -> Precision:
        """The precision this run computes in (``fp32`` unless resolved otherwise)."""
        return "fp32" if self.decision is None else self.decision.precision

    def autocast(self, precision: Precision | None = None) -> contextlib.AbstractContextManager:
        """Autocast of the run's precision (or ``precision``) on the run's device."""
        return autocast(precision or self.precision, self.device)

    def barrier(self) -> None:
        """Wait for every rank (nothing when single-process)."""
        if self.distributed:
            dist.barrier()

    def share(self, count: int, skip: int = 0) -> range:
        """This rank's positions of ``count`` (see :func:`share`)."""
        return share(count, self.rank, self.world_size, skip)

    def progress(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        initial: int = 0,
        bar: bool = True,
        lines: bool = True,
    ) -> Progress:
        """A run's main :class:`vjepa.progress.Progress`, shown by rank 0 only and kept when done.

        Args:
            total: units of work.
            desc: what is being done.
            unit: name of one unit.
            initial: units already done (a resumed run).
            bar: a bar when stderr is a terminal; False: always lines.
            lines: False when the caller prints its own periodic lines.
        """
        mode: Mode = "auto" if bar else "lines"
        return Progress(
            total, desc, unit=unit, initial=initial, enabled=self.is_main, mode=mode, lines=lines, leave=True
        )

    def track(self, items: Iterable[Any], total: int | None, desc: str, unit: str = "it") -> Iterator[Any]:
        """Iterate over ``items`` with a progress display on rank 0 (see :func:`vjepa.progress.track`)."""
        return track(items, total, desc, unit=unit, enabled=self.is_main)

    def log(self, message: str) -> None:
        """Print from rank 0 only."""
        log(self, message)

    def resolved(self, requested: str) -> Runtime:
        """This runtime with its precision resolved from ``requested`` if :func:`setup` did not resolve one
        (a runtime built by hand, e.g. by a library caller)."""
        if self.decision is not None:
            return self
        return dataclasses.replace(self, decision=resolve_precision(requested, self.device))


def share(count: int, rank: int, world_size: int, skip: int = 0) -> range:
    """The positions of ``count`` that rank ``rank`` of ``world_size`` takes: ``rank, rank + W, ...``
    (every position exactly once over the ranks), without its first ``skip`` (a resumed pass).

    Args:
        count: positions to share.
        rank: this process's rank.
        world_size: number of ranks W.
        skip: positions of this rank's share already done.
    """
    return range(rank + skip * world_size, count, world_size)


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgument("device 'cuda' was asked for but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise InvalidArgument(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device("cpu")


@functools.cache
def _torch_default_threads() -> int:
    """torch's own thread count (one per physical core), read before :func:`configure_threads` changes it."""
    return torch.get_num_threads()


def configure_threads(threads: int | None = None) -> ThreadSettings:
    """Set torch's intra-op thread count: ``threads`` if given, else ``OMP_NUM_THREADS`` if the user set it
    (torch read it at start), else the default: torch's count (one per physical core) capped by the CPUs
    this process may use, divided among the processes torchrun started on this node.

    Args:
        threads: the configured count (``runtime.threads``), or None for the default.
    """
    default = _torch_default_threads()
    usable = usable_cpus()
    if threads is not None:
        if threads < 1:
            raise InvalidArgument(f"threads must be >= 1, got {threads}")
        count, source = threads, "runtime.threads / --threads"
    elif user_thread_count() is not None:
        count, source = torch.get_num_threads(), "OMP_NUM_THREADS"
    else:
        local_procs = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        count = max(1, min(default, usable) // local_procs)
        source = "default" + (f", {local_procs} processes on this node" if local_procs > 1 else "")
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
    policy, policy_source = wait_policy()
    return ThreadSettings(count, source, usable, policy, policy_source)


def setup(device: str = "auto", threads: int | None = None, precision: str | None = None) -> Runtime:
    """Start the run: join the torchrun process group when launched by torchrun (gloo on CPU, NCCL on
    CUDA), pick the device, set the CPU thread count (see :func:`configure_threads`), resolve the precision
    (see :func:`resolve_precision`; printed by the caller with :func:`log_precision`).

    Args:
        device: ``auto`` | ``cpu`` | ``cuda``.
        threads: intra-op CPU threads (None: the default of :func:`configure_threads`).
        precision: ``auto`` | ``fp32`` | ``bf16`` (None: fp32, nothing resolved).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    thread_settings = configure_threads(threads)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        join_process_group("nccl" if dev.type == "cuda" else "gloo", rank, world_size)
    decision = None if precision is None else resolve_precision(precision, dev)
    return Runtime(dev, rank, world_size, local_rank, thread_settings, decision)


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
    """bf16 autocast (CUDA and CPU; no GradScaler is needed for bf16), or nothing for fp32.

    Args:
        precision: a resolved precision (see :func:`resolve_precision` for ``auto``).
        device: the device the autocast region runs on.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be 'fp32' or 'bf16' here (resolve 'auto' first), got {precision!r}")


# ---------------------------------------------------------------------------------------------- precision


@dataclass(frozen=True)
class CpuBf16Support:
    """Whether this CPU runs bf16 natively, as torch really uses it.

    Args:
        native: AVX512-BF16 or AMX in the hardware, torch's kernels at AVX512 and oneDNN allowed a bf16 ISA.
        torch_kernels: ``torch.backends.cpu.get_cpu_capability()`` (``AVX512``, ``AVX2``, ``DEFAULT``, ...;
            lowered by ``ATEN_CPU_CAPABILITY``).
        bf16_flags: the bf16 instruction sets the hardware reports (``avx512_bf16``, ``amx_bf16``).
        onednn_isa_limit: ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) when set.
        reason: one line saying why.
    """

    native: bool
    torch_kernels: str
    bf16_flags: tuple[str, ...]
    onednn_isa_limit: str | None
    reason: str


@dataclass(frozen=True)
class PrecisionDecision:
    """The precision a command runs and why (printed at start, written into the run folder).

    Args:
        requested: the configured choice.
        precision: what runs.
        reason: why, in one line.
        warning: set when the choice will be slow (explicit bf16 where bf16 is emulated).
    """

    requested: PrecisionChoice
    precision: Precision
    reason: str
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"precision {self.precision} (requested {self.requested}: {self.reason})"


def _cpu_flags() -> dict[str, bool]:
    """The CPU features torch reports (``torch.cpu.get_capabilities``), else /proc/cpuinfo's flags."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return {k: bool(v) for k, v in get().items() if isinstance(v, bool)}
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return {}
    return {flag: True for flag in flags}


def onednn_isa_limit() -> str | None:
    """The oneDNN ISA ceiling set in the environment, if any."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or None


@functools.cache
def cpu_bf16_support() -> CpuBf16Support:
    """What torch on this CPU does with bf16 (static facts; see :func:`cpu_bf16_speedup` for the measure)."""
    kernels = torch.backends.cpu.get_cpu_capability()
    flags = _cpu_flags()
    bf16 = tuple(f for f in ("avx512_bf16", "amx_bf16") if flags.get(f))
    limit = onednn_isa_limit()
    isa_ok = limit is None or limit.upper().startswith(_ONEDNN_BF16_ISAS)
    if platform.machine().lower() not in ("x86_64", "amd64"):
        native, why = False, f"{platform.machine()} CPU: no x86 bf16 instructions"
    elif not bf16:
        native, why = False, "the CPU has no AVX512-BF16 or AMX: bf16 is emulated"
    elif not kernels.startswith("AVX512"):
        native, why = (
            False,
            f"torch runs {kernels} kernels, not AVX512 (ATEN_CPU_CAPABILITY): bf16 is emulated",
        )
    elif not isa_ok:
        native, why = False, f"oneDNN is limited to {limit} (ONEDNN_MAX_CPU_ISA): bf16 matmuls are emulated"
    elif not torch.backends.mkldnn.is_available():
        native, why = False, "this torch build has no oneDNN: bf16 matmuls are emulated"
    else:
        native, why = True, f"the CPU has {'+'.join(bf16)} and torch uses {kernels} kernels with oneDNN"
    return CpuBf16Support(native, kernels, bf16, limit, why)


@functools.cache
def cpu_bf16_speedup() -> float:
    """fp32 time / bf16-autocast time of a small MLP forward (two matmuls and a GELU, ~1 GFLOP) on the
    current threads: the best of 5 alternating runs each, measured once per process (about 0.1 s of compute
    on an idle 2-core machine; a busy one stretches the wall time, not the result much). CPU time
    (``time.process_time``), not wall time, so that other busy processes do not decide the outcome."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 512, generator=g)  # [N, D]
    w1 = torch.randn(2048, 512, generator=g) * 0.02  # [H, D]
    w2 = torch.randn(512, 2048, generator=g) * 0.02  # [D, H]

    def run(precision: Precision) -> float:
        start = time.process_time()
        with torch.no_grad(), autocast(precision, torch.device("cpu")):
            torch.nn.functional.linear(torch.nn.functional.gelu(torch.nn.functional.linear(x, w1)), w2)
        return time.process_time() - start

    run("fp32"), run("bf16")  # warm-up (oneDNN primitive creation)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(5):
        for precision in ("fp32", "bf16"):
            best[precision] = min(best[precision], run(precision))  # type: ignore[arg-type]
    return best["fp32"] / best["bf16"]


def _native_bf16(device: torch.device, measure: bool) -> tuple[bool, str]:
    """(native and faster, why) for ``device``; ``measure`` adds the matmul probe on a native CPU."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        name = torch.cuda.get_device_name(device)
        if (major, minor) >= (8, 0):
            return True, f"{name} (compute capability {major}.{minor}) has native bf16"
        return False, f"{name} (compute capability {major}.{minor} < 8.0) has no native bf16"
    if device.type != "cpu":
        return False, f"bf16 is not known to be native on {device.type}"
    support = cpu_bf16_support()
    if not support.native or not measure:
        return support.native, support.reason
    speedup = cpu_bf16_speedup()
    if speedup < MIN_BF16_SPEEDUP:
        return False, f"{support.reason}, but a bf16 matmul measured only {speedup:.2f}x fp32's speed"
    return True, f"{support.reason}; a bf16 matmul probe ran at {speedup:.1f}x fp32's speed"


def resolve_precision(requested: str, device: torch.device) -> PrecisionDecision:
    """The precision to run for a configured ``auto | fp32 | bf16`` on ``device``, with the reason.

    ``auto`` is bf16 where bf16 is native and faster (see the module docstring), fp32 otherwise. An
    explicit ``bf16`` where it is emulated runs, with a warning that it will be several times slower.

    Args:
        requested: ``auto``, ``fp32`` or ``bf16``.
        device: the device the command computes on.
    """
    if requested not in PRECISION_CHOICES:
        raise InvalidArgument(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {requested!r}")
    if requested == "fp32":
        return PrecisionDecision("fp32", "fp32", "fp32 as configured")
    native, why = _native_bf16(device, measure=requested == "auto")
    if requested == "auto":
        return PrecisionDecision("auto", "bf16" if native else "fp32", why)
    warning = None
    if not native:
        warning = (
            f"precision bf16 on {device.type}: {why}; bf16 will be several times slower than fp32 here "
            "(about 9x per training step measured on an AVX2 CPU). Use precision auto or fp32."
        )
    return PrecisionDecision("bf16", "bf16", "bf16 as configured" + ("" if native else f" ({why})"), warning)


def log_precision(runtime: Runtime | None, decision: PrecisionDecision) -> None:
    """Print the decision (and its warning, to stderr) from rank 0."""
    log(runtime, decision.describe())
    if decision.warning and (runtime is None or runtime.is_main):
        print(f"WARNING: {decision.warning}", file=sys.stderr, flush=True)


def log(runtime: Runtime | None, message: str) -> None:
    """Print from rank 0 only."""
    if runtime is None or runtime.is_main:
        print(message, flush=True)
