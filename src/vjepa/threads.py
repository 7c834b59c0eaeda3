"""CPU threads that behave on a shared machine. This module imports nothing heavy (no torch), so that the
``vjepa`` command can set the OpenMP environment before torch loads its OpenMP runtime.

Two settings matter on a CPU shared with other busy processes (a laptop with a browser open, a CI runner):

- **OpenMP wait policy.** torch's OpenMP runtime (GNU libgomp in the pip wheels) lets idle threads spin for a
  while before they sleep. When another process holds one of the cores, a spinning thread burns the time
  slice its partner needs to finish the parallel region, and a step can take 4-16x longer. With
  ``OMP_WAIT_POLICY=PASSIVE`` idle threads sleep at once. libgomp reads the variable once, when it is loaded,
  which is at ``import torch``: it must be in the environment before that. The ``vjepa`` command sets it
  (when the user has not chosen a policy) before it imports torch; library users set it in their shell or
  call :func:`set_thread_env_defaults` before their first ``import torch``.
- **Intra-op threads.** torch starts one thread per physical core of the machine, even when the process may
  only use fewer (CPU affinity, a container's CPU quota). :func:`usable_cpus` counts what the process may
  really use; :func:`vjepa.runtime.setup` uses it as the default thread count.

Precedence, highest first: ``runtime.threads`` (or ``--threads``), then ``OMP_NUM_THREADS`` /
``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` set by the user, then these defaults.
"""

from __future__ import annotations

import math
import os
import sys
from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

# Variables by which a user chooses the OpenMP wait behaviour; when any is set we leave the policy alone.
WAIT_POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
DEFAULT_WAIT_POLICY = "PASSIVE"
THREAD_COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

# What set_thread_env_defaults did in this process (for the run's report): variable -> value.
_applied: dict[str, str] = {}


def set_thread_env_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a wait policy; call before ``import torch``.

    Does nothing once torch is imported (the OpenMP runtime has read its settings by then, and a variable
    set afterwards would only mislead a reader of the environment).

    Args:
        environ: the environment to change (default ``os.environ``).

    Returns:
        the variables it set (empty when the user's settings or an earlier torch import win).
    """
    env = os.environ if environ is None else environ
    if "torch" in sys.modules or any(v in env for v in WAIT_POLICY_VARS):
        return {}
    env["OMP_WAIT_POLICY"] = DEFAULT_WAIT_POLICY
    if environ is None:
        _applied["OMP_WAIT_POLICY"] = DEFAULT_WAIT_POLICY
    return {"OMP_WAIT_POLICY": DEFAULT_WAIT_POLICY}


def wait_policy() -> tuple[str, str]:
    """The OpenMP wait policy of this process and where it came from: ``(policy, source)``."""
    for var in WAIT_POLICY_VARS:
        if var in os.environ:
            source = "vjepa default" if _applied.get(var) == os.environ[var] else "environment"
            return f"{var}={os.environ[var]}", source
    return "spin, then sleep (OpenMP default)", "OpenMP default"


def user_thread_count() -> int | None:
    """The thread count the user set in the environment (``OMP_NUM_THREADS``), else None."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 2.0 for ``docker --cpus=2``), or None.

    Reads cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``), else cgroup v1
    ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us``.

    Args:
        root: the cgroup mount point.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by its cgroup's CPU quota (at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.floor(limit)))
    return max(1, count)


@dataclass(frozen=True)
class ThreadSettings:
    """The CPU threads of this process and why.

    Args:
        intra_op: torch's intra-op thread count.
        source: where the count came from (``runtime.threads``, ``OMP_NUM_THREADS`` or the default).
        usable_cpus: CPUs this process may run on (affinity and cgroup quota).
        wait_policy: the OpenMP wait policy (an environment setting, or the OpenMP default).
        wait_policy_source: ``vjepa default``, ``environment`` or ``OpenMP default``.
    """

    intra_op: int
    source: str
    usable_cpus: int
    wait_policy: str
    wait_policy_source: str

    def describe(self) -> str:
        return (
            f"{self.intra_op} intra-op thread(s) ({self.source}; {self.usable_cpus} usable CPU(s)), "
            f"OpenMP wait policy {self.wait_policy} ({self.wait_policy_source})"
        )


class StepTimeWatch:
    """Notices step times that swing by more than ``ratio`` (the sign of CPU oversubscription: other busy
    processes taking the cores that torch's threads wait for) and says what to do.

    Args:
        threads: the run's thread settings (named in the advice).
        ratio: the swing that warns (second-slowest over fastest step of the window).
        window: steps compared.
        skip: first steps ignored (warm-up allocations).
        every: at least this many steps between two warnings.
    """

    def __init__(
        self,
        threads: ThreadSettings | None,
        *,
        ratio: float = 2.0,
        window: int = 20,
        skip: int = 3,
        every: int = 200,
    ) -> None:
        self.threads = threads
        self.ratio = ratio
        self.skip = skip
        self.every = every
        self._times: deque[float] = deque(maxlen=window)
        self._seen = 0
        self._last_warning: int | None = None

    def observe(self, seconds: float) -> str | None:
        """Record one step's compute time; returns a warning when the window swings by more than ``ratio``."""
        self._seen += 1
        if self._seen <= self.skip:
            return None
        self._times.append(seconds)
        if len(self._times) < 5:
            return None
        ordered = sorted(self._times)
        fast, slow = ordered[0], ordered[-2]  # the second slowest: one hiccup is not a swing
        if slow <= self.ratio * fast:
            return None
        if self._last_warning is not None and self._seen - self._last_warning < self.every:
            return None
        self._last_warning = self._seen
        return (
            f"the step time swings from {fast:.2f} s to {slow:.2f} s over the last {len(ordered)} steps "
            f"(more than {self.ratio:g}x): other processes are probably competing for the CPU cores "
            f"(oversubscription). {self._advice()}"
        )

    def _advice(self) -> str:
        t = self.threads
        if t is None:
            return "Use fewer threads (runtime.threads) or stop the other processes."
        tips = [f"This run uses {t.intra_op} thread(s) on {t.usable_cpus} usable CPU(s)"]
        if "PASSIVE" not in t.wait_policy.upper():
            tips.append("start it with OMP_WAIT_POLICY=PASSIVE in the environment (the vjepa command does)")
        if t.intra_op > 1:
            tips.append(f"try runtime.threads={max(1, t.intra_op - 1)}")
        tips.append("or stop the other busy processes")
        return "; ".join(tips) + "."
