"""Stopping a run when asked: SIGTERM or SIGUSR1 ends it at the next step boundary, with a checkpoint.

SIGTERM is how schedulers and launchers stop a job: SLURM at preemption, at ``scontrol requeue`` or at the
time limit (then SIGKILL after its ``KillWait``, 30 s by default), Kubernetes before deleting a pod, torchrun
when it shuts its workers down (SIGKILL after 30 s), and plain ``kill``. SIGUSR1 is what ``sbatch
--signal=USR1@SECONDS`` sends ahead of the time limit to a run started without torchrun. Without a handler
either signal ends the process at once, losing every step since the last periodic checkpoint. With
`StopSignals` the process finishes the step it is in, writes ``latest.pt`` (every rank takes part, so a sharded
checkpoint is whole) and raises `RunStopped`; ``vjepa pretrain`` exits with 128 + the signal number (143 for
SIGTERM), the code a shell reports for a process the signal killed, and ``--resume`` continues exactly there.

Under torchrun every rank must stop after the same step: `StopSignals.requested` all-reduces the flag after
each step (one integer; the step already waits for its loss to check it for NaN, so this adds no stall).
SIGINT (Ctrl-C) is left alone: it stops at once, as users expect of it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

import torch
import torch.distributed as dist

from vjepa.errors import VjepaError
from vjepa.runtime import Runtime

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


class RunStopped(VjepaError):
    """The run stopped on a signal after writing a checkpoint (not a failure of the run; resume continues it).

    Args:
        message: what happened and how to continue.
        signum: the signal's number (the CLI exits with 128 + it).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum  # what a shell reports for a process the signal killed


class StopSignals:
    """While active (a ``with`` block in the main thread), SIGTERM and SIGUSR1 only record that a stop was
    asked; `requested` tells every rank, after a step, whether any rank was asked. Outside the main thread
    (where Python cannot install handlers) it records nothing and the signals keep their usual effect.

    Args:
        runtime: the run's ranks and device (for the all-reduce).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.received: int | None = None  # the first stop signal this process received
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum

    def requested(self) -> int | None:
        """The stop signal any rank received, else None; every rank must call it after the same step."""
        if not self.runtime.distributed:
            return self.received
        flag = torch.tensor([self.received or 0], dtype=torch.int64, device=self.runtime.device)
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True)
        work.wait()  # type: ignore[union-attr]
        _LAST_WORK[0] = work  # see below
        return int(flag.item()) or None


# The last all-reduce's Work, kept until the next one (or the end of the process). Without it, gloo's worker
# thread may drop the last reference to the Work after `wait` returns, and destroying the Work frees `flag`,
# which needs the GIL. The main thread holds the GIL while it destroys the process group (joining that very
# thread) soon after the last step: the 2-rank gloo DDP test's run deadlocked there at exit in 5 of 24 runs
# (0 of 32 with this). Kept here, the Work is destroyed by whoever replaces or clears it, in Python, with the GIL.
_LAST_WORK: list[object] = [None]


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
