"""The precision rule, one for every command.

Every command takes ``precision: auto | fp32 | bf16`` (:data:`PrecisionChoice`) and resolves it
with :func:`resolve_precision` into the precision it runs (:data:`Precision`) and the reason. ``auto`` picks
bf16 autocast only where bf16 is native and faster: a CUDA device of compute capability 8.0 or newer, or a
CPU on which torch really runs bf16 natively (AVX512-BF16 or AMX in the hardware, torch's kernels at AVX512,
oneDNN not limited below its bf16 ISA; a small bf16 matmul probe, measured once per process, must not be
clearly slower than fp32); fp32 everywhere else. An AVX2-only CPU emulates bf16, and a bf16 training step there is about 9x slower
than fp32, so an explicit ``bf16`` on such a CPU is run but warned about.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from vjepa.errors import InvalidArgument

PrecisionChoice = Literal["auto", "fp32", "bf16"]
Precision = Literal["fp32", "bf16"]
PRECISION_CHOICES: tuple[PrecisionChoice, ...] = ("auto", "fp32", "bf16")

# ``auto`` refuses bf16 on a CPU whose matmul probe measures bf16 below this fraction of fp32's speed. On the
# development machine (AVX512-BF16) the probe measured 1.0-2.4x natively at load averages of 6-12 on 2 cores,
# and 0.21-0.25x under forced AVX2 kernels (emulated bf16).
MIN_BF16_SPEEDUP = 0.8
# oneDNN ISA limits (ONEDNN_MAX_CPU_ISA) at or above the first with native bf16 matmuls.
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")


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
