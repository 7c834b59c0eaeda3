"""Running the demo's independent jobs (pretraining runs, probe grids) side by side on a small CPU.

On a 2-core machine two single-threaded processes get more done than one process with two threads: the
demo's models are small, so a step is made of many small operations that one thread keeps busy, and the
second thread of a process mostly waits. Each worker is a fresh (spawned) process that uses one thread.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from vjepa.errors import VjepaError
from vjepa.progress import Progress


@dataclass(frozen=True)
class Task:
    """One job: ``fn(*args)`` in a worker process; ``fn`` must be a module-level function.

    Args:
        key: names the job in progress lines and in the result mapping.
        fn: what to run.
        args: its (picklable) arguments.
    """

    key: str
    fn: Callable[..., Any]
    args: tuple = ()


class TaskFailed(RuntimeError):
    """A job raised an error that is not a `VjepaError` (a bug: it keeps its traceback, chained); the message
    names the job and the original error. A job's `VjepaError` (a problem the user can fix) is raised as it
    is."""


def _init_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch  # lazy on purpose: loaded after OMP_NUM_THREADS is set, which torch's OpenMP reads once

    torch.set_num_threads(threads)


def run_tasks(tasks: Sequence[Task], workers: int, what: str, threads_per_worker: int = 1) -> dict[str, Any]:
    """Run ``tasks`` on ``workers`` processes (in this process when ``workers`` is 1) and return
    ``{key: result}``; prints a progress line per finished task with an estimate of the time left.

    Raises:
        TaskFailed: the first task that raised (the others are cancelled).
    """
    with Progress(len(tasks), "  demo", unit=what, mode="lines", interval_s=0.0) as progress:
        return _run_tasks(tasks, workers, what, threads_per_worker, progress)


def _run_tasks(
    tasks: Sequence[Task], workers: int, what: str, threads_per_worker: int, progress: Progress
) -> dict[str, Any]:
    results: dict[str, Any] = {}

    def done(key: str, value: Any) -> None:
        results[key] = value
        progress.update(1, last=key)  # the rate measured so far, all workers included, gives the time left

    if workers <= 1:
        for task in tasks:
            done(task.key, task.fn(*task.args))
        return results
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(threads_per_worker,)
    ) as pool:
        pending: dict[Future, str] = {pool.submit(t.fn, *t.args): t.key for t in tasks}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                key = pending.pop(future)
                try:
                    value = future.result()
                except BaseException as err:
                    for other in pending:
                        other.cancel()
                    if isinstance(err, VjepaError):
                        raise
                    raise TaskFailed(f"{what} {key} failed: {type(err).__name__}: {err}") from err
                done(key, value)
    return {t.key: results[t.key] for t in tasks}
