"""DataLoader workers start from a fork server (a lock another thread of ours holds cannot hang them), and a
worker that dies stops the command with one line (in pretraining: naming the last checkpoint)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from vjepa.data.draws import DrawKey, as_draw_key
from vjepa.data.loader import make_loader
from vjepa.data.workers import WorkerDied, worker_context
from vjepa.errors import InvalidArgument, VjepaError

pytestmark = pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="no fork server on this platform"
)

_LOCK = threading.Lock()  # a lock that a thread of the test process holds while the workers start


class LockingDataset(Dataset):
    """Each sample takes `_LOCK` (as code that logs, allocates or decodes takes its library's locks) and
    reports the worker's parent process."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, key: DrawKey) -> torch.Tensor:
        with _LOCK:
            return torch.tensor([as_draw_key(key).index, os.getppid()])


def cat(samples: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(samples)  # [B, 2]: record index, worker's parent pid


class DyingAt(Dataset):
    """`base`'s samples; the worker process that is asked for draw `draw` or later kills itself (as the
    out-of-memory killer would). Never in the test process itself."""

    def __init__(self, base: Any, draw: int) -> None:
        self.base, self.draw = base, draw

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: DrawKey) -> Any:
        if as_draw_key(key).draw >= self.draw and torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.base[key]


def first_batches(stream, timeout: float = 60.0) -> list[torch.Tensor]:
    """The stream's batches of one epoch, read in a thread so that a hung worker fails the test after
    `timeout` seconds instead of hanging the suite."""
    out: list[torch.Tensor] = []
    reader = threading.Thread(target=lambda: out.extend(stream), daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), f"no epoch within {timeout} s: a worker hung"
    return out


def test_workers_start_from_a_fork_server_while_another_thread_holds_a_lock() -> None:
    holder_ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _LOCK:
            holder_ready.set()
            release.wait()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    holder_ready.wait()
    try:
        # Forked from this process, a worker would inherit _LOCK held and wait for it forever.
        stream = make_loader(LockingDataset(), batch_size=4, collate_fn=cat, seed=0, num_workers=2)
        batches = first_batches(stream)
    finally:
        release.set()
        holder.join()
    assert sorted(torch.cat(batches)[:, 0].tolist()) == list(range(8))
    parents = set(torch.cat(batches)[:, 1].tolist())
    assert os.getpid() not in parents  # the workers' parent is the fork server, not this process


def test_the_fork_start_method_is_still_available_on_request() -> None:
    stream = make_loader(
        LockingDataset(), batch_size=4, collate_fn=cat, seed=0, num_workers=1, worker_start="fork"
    )
    batches = first_batches(stream)
    assert set(torch.cat(batches)[:, 1].tolist()) == {os.getpid()}


@pytest.mark.filterwarnings("ignore:Got pickle error")  # torch's own hint, before our error
def test_an_unpicklable_collate_function_gets_a_clear_error() -> None:
    def local_collate(samples: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(samples)

    stream = make_loader(LockingDataset(), batch_size=4, collate_fn=local_collate, seed=0, num_workers=1)
    with pytest.raises(VjepaError, match="picklable.*module level"):
        next(iter(stream))
    serial = make_loader(LockingDataset(), batch_size=4, collate_fn=local_collate, seed=0)
    assert len(list(serial)) == 2  # in this process nothing is pickled


def test_unknown_start_method_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="start method 'threads'"):
        worker_context("threads")  # type: ignore[arg-type]
    assert worker_context().get_start_method() == "forkserver"  # type: ignore[union-attr]


def test_a_worker_that_dies_is_named_as_such() -> None:
    stream = make_loader(DyingAt(LockingDataset(), 4), batch_size=4, collate_fn=cat, seed=0, num_workers=1)
    with pytest.raises(WorkerDied, match=r"worker process died \(DataLoader worker .*fewer workers"):
        list(stream)


def test_pretraining_stops_on_a_dead_worker_naming_the_intact_checkpoint(tmp_path, monkeypatch) -> None:
    import vjepa.pretrain.data as pretrain_data
    from pretrain_helpers import tiny_config
    from vjepa.pretrain.loop import pretrain
    from vjepa.pretrain.state import load_training_state

    real_build = pretrain_data.build_dataset
    batch = 4
    monkeypatch.setattr(pretrain_data, "build_dataset", lambda *a: DyingAt(real_build(*a), 6 * batch))
    config = tiny_config(["data.num_workers=1", "logging.checkpoint_every=2"])
    with pytest.raises(
        WorkerDied, match=r"died.*stopped at step [2-5]\. .*latest\.pt \(resumes at step [24]\)"
    ):
        pretrain(config, tmp_path / "run")
    assert load_training_state(tmp_path / "run/checkpoints/latest.pt")["step"] in (2, 4)


def test_the_cli_reports_a_dead_worker_in_one_line(monkeypatch, capsys) -> None:
    import vjepa.cli as cli

    def extract(args: Any) -> int:  # torch's error, as its SIGCHLD handler raises it mid-encoding
        raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Killed. ")

    monkeypatch.setattr(cli, "_extract", extract)
    with pytest.raises(SystemExit) as done:
        cli.main(["extract", "x.mp4", "--out", "o", "--checkpoint", "c", "--encoder", "encoder"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vjepa extract: error: a data loader worker process died (DataLoader worker")
    assert "Traceback" not in err

    def bug(args: Any) -> int:
        raise RuntimeError("shape mismatch")  # any other RuntimeError keeps its traceback

    monkeypatch.setattr(cli, "_extract", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        cli.main(["extract", "x.mp4", "--out", "o", "--checkpoint", "c", "--encoder", "encoder"])
