"""SIGTERM / SIGUSR1 stop a run after the step it is in, with a checkpoint from which --resume continues exactly;
under torchrun every rank stops after the same step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from pretrain_helpers import TINY_CLI, needs_fsdp
from vjepa.pretrain.metrics import read_metrics
from vjepa.pretrain.rundir import inspect_run_dir
from vjepa.pretrain.saving import checkpoint_step
from vjepa.pretrain.state import load_training_state
from vjepa.pretrain.stopping import STOP_SIGNALS, StopSignals
from vjepa.runtime import Runtime

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")

STEPS = 12
# The tiny run, 12 steps long, with no periodic checkpoint before the end: the stop writes the one there is.
COMMON = [*TINY_CLI, "--set", f"optimization.ipe={STEPS}", "--set", "logging.checkpoint_every=100"]
COMMON += ["--set", "logging.export=false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run / "metrics.jsonl")]


def run_and_signal(cmd: list[str], after_line: str, send) -> tuple[int, str, str]:
    """Start ``cmd``, call ``send(process)`` once a stdout line starts with ``after_line``; (code, out, err).
    A run still going after 240 s (ranks that disagree deadlock) is killed, and the test fails."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True
    )
    with proc:  # closes the pipes
        watchdog = threading.Timer(240, _kill_all, (proc.pid,))
        watchdog.start()
        err_lines: list[str] = []
        reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        out_lines, sent = [], False
        for line in proc.stdout:  # type: ignore[union-attr]
            out_lines.append(line)
            if not sent and line.startswith(after_line):
                send(proc)
                sent = True
        code = proc.wait()
        watchdog.cancel()
        reader.join(10)
    assert code != -signal.SIGKILL, "killed by the watchdog after 240 s:\n" + "".join(out_lines + err_lines)
    assert sent, "".join(out_lines + err_lines)
    return code, "".join(out_lines), "".join(err_lines)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> list[float]:
    run = tmp_path_factory.mktemp("straight") / "run"
    cmd = [sys.executable, "-m", "vjepa", "pretrain", "tiny_cpu", *COMMON, "--set", "data.batch_size=4"]
    cmd += ["--run-dir", str(run)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr
    return losses(run)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_sigterm_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(straight, tmp_path, workers):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "vjepa", "pretrain", "tiny_cpu", *COMMON, "--set", "data.batch_size=4"]
    cmd += ["--set", f"data.num_workers={workers}", "--run-dir", str(run)]
    # With loader workers the signal goes to the whole process group, as a scheduler sends it.
    send = (
        (lambda p: os.killpg(p.pid, signal.SIGTERM)) if workers else (lambda p: p.send_signal(signal.SIGTERM))
    )
    code, out, err = run_and_signal(cmd, "step 3/", send)
    assert code == 128 + signal.SIGTERM, err
    stopped = load_training_state(run / "checkpoints/latest.pt")["step"]
    assert 4 <= stopped < STEPS  # no periodic checkpoint is due before the end: this one is the stop's
    assert f"vjepa pretrain: stopped by SIGTERM after step {stopped} of {STEPS}; the last checkpoint:" in err
    assert "--resume" in err and "Traceback" not in err
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert losses(run) == straight  # every step, exactly, as if never stopped


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", pytest.param("fsdp", marks=needs_fsdp)])
def test_under_torchrun_a_signal_to_one_rank_stops_both_after_the_same_step(straight, tmp_path, strategy):
    run = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = torchrun + ["-m", "vjepa", "pretrain", "tiny_cpu", *COMMON, "--set", "data.batch_size=2"]
    cmd += ["--set", f"runtime.strategy={strategy}", "--run-dir", str(run)]

    def signal_rank_1(proc: subprocess.Popen) -> None:
        for pid in _children(proc.pid):
            if b"RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                os.kill(pid, signal.SIGUSR1)
                return
        raise AssertionError("rank 1 not found")

    code, out, err = run_and_signal(cmd, "step 3/", signal_rank_1)
    assert code != 0  # torchrun reports its workers' 138 as a failure
    stopped = checkpoint_step(inspect_run_dir(run).checkpoint)  # fsdp: the folder step_00000NN
    assert 4 <= stopped < STEPS
    # Both ranks stopped after that step (rank 0 was never signalled) and said so.
    assert err.count(f"stopped by SIGUSR1 after step {stopped} of {STEPS}") == 2, err
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert losses(run) == pytest.approx(straight, rel=1e-5)  # 2 x 2 clips against 4: summation order only


def _kill_all(pid: int) -> None:
    for child in _children(pid):  # torchrun's workers, whatever their process group
        os.kill(child, signal.SIGKILL)
    os.killpg(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    kids = []
    for task in tasks.iterdir():
        text = (task / "children").read_text() if (task / "children").exists() else ""
        kids += [int(k) for k in text.split()]
    return kids


def test_handlers_are_installed_only_while_active_and_only_in_the_main_thread() -> None:
    before = [signal.getsignal(s) for s in STOP_SIGNALS]
    stop = StopSignals(Runtime(device=torch.device("cpu")))
    with stop:
        os.kill(os.getpid(), signal.SIGUSR1)  # recorded, not fatal
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested() == signal.SIGUSR1  # the first one counts
    assert [signal.getsignal(s) for s in STOP_SIGNALS] == before
    elsewhere: list[object] = []

    def in_a_thread() -> None:
        with StopSignals(Runtime(device=torch.device("cpu"))) as s:
            elsewhere.append(s.requested())

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    assert elsewhere == [None] and [signal.getsignal(s) for s in STOP_SIGNALS] == before
