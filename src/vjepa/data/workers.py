"""How DataLoader worker processes start (from a fork server, not by forking the training process) and how
their failures read (`WorkerDied`, a one-line error instead of torch's traceback).

A training or extraction process has threads (progress bars, the DataLoader's own queue feeder and pin-memory
threads, a previous loader's workers being shut down). ``fork`` copies the process with whatever locks those
threads held at that instant, and a worker that needs such a lock waits forever: we saw a worker stop inside
``threading._after_fork`` while the test suite ran beside another job, and the parent then waited for its
batches with no timeout. Python 3.14 made ``forkserver`` the default on Linux for this reason.

With ``forkserver`` each worker forks from a server process that has one thread and has already imported
torch and our data modules (`PRELOAD`). The server starts once per process (1.65-1.79 s); after that, a new
stream's first batch came 0.03-0.12 s later than with ``fork`` and 1.4-3.8 s sooner than with ``spawn``
(`benchmarks/worker_start.py`, docs/data.md). The price: what the loader sends to its workers (dataset,
collate function) must pickle, i.e. be defined at module level, as ours are (`iterate_loader` says so when a
user's object is not), and a script that starts workers needs the ``if __name__ == "__main__":`` guard,
because each worker imports the script's module, as with ``spawn``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from multiprocessing.context import BaseContext
from typing import Literal, TypeVar, get_args

from torch.utils.data import DataLoader

from vjepa.errors import InvalidArgument, VjepaError

StartMethod = Literal["forkserver", "spawn", "fork"]
START_METHODS: tuple[str, ...] = get_args(StartMethod)
PRELOAD = ["torch", "vjepa.data.datasets"]  # imported once by the fork server, inherited by every worker

T = TypeVar("T")


def worker_context(start_method: StartMethod | None = None) -> BaseContext | None:
    """The multiprocessing context for DataLoader workers.

    Args:
        start_method: ``forkserver`` (the default where the platform has it: Linux, macOS), ``spawn`` or
            ``fork`` (only for datasets that cannot be pickled; see the module docstring for the risk).
            None = ``forkserver`` if available, else the platform's default (``spawn`` on Windows).
    """
    available = multiprocessing.get_all_start_methods()
    if start_method is None:
        if "forkserver" not in available:
            return None
        start_method = "forkserver"
    if start_method not in START_METHODS:
        raise InvalidArgument(f"unknown worker start method {start_method!r}; choose one of {START_METHODS}")
    if start_method not in available:
        raise InvalidArgument(
            f"worker start method {start_method!r} is not available on this platform (it has {available})"
        )
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        context.set_forkserver_preload(PRELOAD)  # takes effect when the server starts (first loader)
    return context


class WorkerDied(VjepaError):
    """A loader worker process ended without a Python error: killed by a signal (the out-of-memory killer, a
    kill) or crashed in native code (a decoder)."""


def as_worker_death(err: BaseException) -> WorkerDied | None:
    """torch's error for a loader worker that died, as a `WorkerDied` that says what to do; None for any other
    error. The loader raises it while it waits for a batch (it checks its workers every 5 s); with forked
    workers (children of this process) torch's SIGCHLD handler may also raise it wherever the main thread is
    at that moment (a training step, a checkpoint write), so callers check around more than the loader."""
    message = str(err)
    if not isinstance(err, RuntimeError) or not message.startswith("DataLoader worker"):
        return None
    if "killed by signal" not in message and "exited unexpectedly" not in message:
        return None
    return WorkerDied(
        f"a data loader worker process died ({message.strip().rstrip('.')}). If the system ran out of memory "
        "(`dmesg` shows the kill), use fewer workers (data.num_workers, --num-workers) or a smaller batch; if "
        "a decoder crashed, num_workers=0 shows which file"
    )


def iterate_loader(loader: Iterable[T]) -> Iterator[T]:
    """The loader's batches; a worker that cannot be sent the dataset or collate function, or that dies,
    raises a `VjepaError` that says so instead of torch's traceback."""
    batches: Iterator[T] | None = None
    while True:
        try:
            if batches is None:
                batches = _start(loader)  # persistent workers: waits for them to restart the epoch
            batch = next(batches)
        except StopIteration:
            return
        except RuntimeError as e:
            died = as_worker_death(e)
            if died is None:
                raise
            raise died from e
        yield batch


def _start(loader: Iterable[T]) -> Iterator[T]:
    """``iter(loader)``, with a clear error when its workers cannot be sent the dataset or collate function."""
    try:
        return iter(loader)
    except (AttributeError, TypeError) as e:
        workers = getattr(loader, "num_workers", 0) if isinstance(loader, DataLoader) else 0
        if workers == 0 or "pickle" not in str(e):
            raise
        raise VjepaError(
            f"cannot start {workers} data loader worker process(es): {e}. Workers start from a fork server "
            "(not by forking this process, which can deadlock), so the dataset and collate function must be "
            "picklable: define them at module level, not as lambdas or local functions. With "
            "`make_loader(..., worker_start='fork')` they need not be, at the risk of a worker that never "
            "starts; or use num_workers=0."
        ) from e
