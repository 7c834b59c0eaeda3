"""FSDP2 (``runtime.strategy=fsdp``) under torchrun (2 CPU processes, gloo) against one process, sharded
checkpoints, a kill -9 in the middle of a checkpoint write, and resume onto 1 and 2 processes.

As in test_pretrain_distributed.py, causal masks are the same for every sample, so 2 ranks x 2 clips and
1 process x 4 clips see exactly the same clips and masks (two mask settings here, so every block runs twice
per forward). The only differences are floating-point summation orders: the gradient of 4 clips against the
average of two 2-clip gradients (reduce-scatter), and the gradient norm summed per shard then over ranks.
These are ~1e-7 relative per operation and AdamW passes them on to the weights without amplification (an
entry whose gradient is at the noise floor can move by up to 2 * lr in the worst case). Measured over these
4 steps (clipping active from step 0): losses equal to 1.4e-7 relative, exported weights to 4e-6 absolute.
The tests allow 1e-5 and 1e-4 (lr = 1e-3): far below what a real difference produces (a gradient averaged
over the wrong count, a shard updated twice or not at all, an EMA mixing shards).

Resume on the world size that wrote the checkpoint is exact: the losses after the kill and the final weights
are bit-identical to those of the run that was never killed (the resumed session also turns activation
checkpointing on, which recomputes the same operations).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vjepa.pretrain.metrics import read_metrics
from vjepa.pretrain.sharded import committed_checkpoints, read_sharded_state

HERE = Path(__file__).parent
COMMON = [
    "--set", "masks.kind=causal", "--set", "masks.causal_context_fractions=[0.5,0.75]",
    "--set", "optimization.epochs=1", "--set", "optimization.ipe=4", "--set", "optimization.warmup=0",
    "--set", "optimization.lr=1e-3", "--set", "optimization.clip_grad=0.5",
    "--set", "data.synthetic_videos=16", "--set", "data.synthetic_resolution=48", "--set", "data.resolution=48",
    "--set", "data.num_frames=8", "--set", "data.synthetic_num_frames=8", "--set", "model.pred_depth=1",
    "--set", "runtime.precision=fp32", "--set", "logging.log_every=1", "--set", "logging.checkpoint_every=2",
    "--set", "logging.keep_every=2", "--set", "runtime.threads=1", "--set", "logging.tensorboard=false",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _run(args: list[str], ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=ENV, cwd=HERE)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _losses(run_dir: Path) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in read_metrics(run_dir / "metrics.jsonl")}


def _export(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "export/model.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Four steps three ways: FSDP on 2 ranks, one process (the default strategy), and FSDP on 2 ranks killed
    with SIGKILL (rank 1) while writing the checkpoint of step 4."""
    root = tmp_path_factory.mktemp("fsdp")
    fsdp = [*COMMON, "--set", "runtime.strategy=fsdp", "--set", "data.batch_size=2"]
    _run([*TORCHRUN, "-m", "vjepa", "pretrain", "tiny_cpu", *fsdp, "--run-dir", str(root / "fsdp")])
    _run([sys.executable, "-m", "vjepa", "pretrain", "tiny_cpu", *COMMON, "--set", "data.batch_size=4",
          "--run-dir", str(root / "single")])  # fmt: skip
    killed = _run(
        [
            *TORCHRUN,
            str(HERE / "fsdp_kill_driver.py"),
            "4",
            "tiny_cpu",
            *fsdp,
            "--run-dir",
            str(root / "killed"),
        ],
        ok=False,
    )
    assert killed.returncode != 0, killed.stdout + killed.stderr
    shutil.copytree(root / "killed", root / "killed_pristine")  # for the resumes onto other world sizes
    return {
        "fsdp": root / "fsdp",
        "single": root / "single",
        "killed": root / "killed",
        "killed_pristine": root / "killed_pristine",
    }


@pytest.mark.slow
def test_two_fsdp_ranks_match_one_process(runs):
    a, b = _losses(runs["fsdp"]), _losses(runs["single"])
    assert sorted(a) == sorted(b) == [0, 1, 2, 3]
    assert [a[s] for s in range(4)] == pytest.approx([b[s] for s in range(4)], rel=1e-5)
    ea, eb = _export(runs["fsdp"]), _export(runs["single"])
    assert set(ea) == set(eb) and any(k.startswith("target_encoder.") for k in ea)
    for key in ea:
        torch.testing.assert_close(ea[key], eb[key], rtol=0, atol=1e-4, msg=key)
    # Every rank wrote its own shard file; the kept checkpoint of step 2 and the latest (step 4) remain.
    steps = [step for step, _ in committed_checkpoints(runs["fsdp"] / "checkpoints")]
    assert steps == [2, 4]
    folder = runs["fsdp"] / "checkpoints/step_0000004"
    assert sorted(p.name for p in folder.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    state = read_sharded_state(folder)
    assert (state["step"], state["world_size"], len(state["rng"])) == (4, 2, 2)


@pytest.mark.slow
def test_kill_mid_save_then_exact_resume_on_two_ranks(runs):
    killed = runs["killed"]
    checkpoints = killed / "checkpoints"
    # The half-written step 4 is a .partial folder; the committed step 2 is intact and is what resume uses.
    assert [step for step, _ in committed_checkpoints(checkpoints)] == [2]
    assert (checkpoints / ".step_0000004.partial/__1_0.distcp").is_file()

    # Resumed with activation checkpointing (a change resume allows): FSDP's all-gathers rerun in the
    # recomputation, and the numbers must not move by one bit.
    resumed = _run([*TORCHRUN, "-m", "vjepa", "pretrain", "--resume", "--run-dir", str(killed),
                    "--set", "runtime.activation_checkpointing=true"])  # fmt: skip
    assert "resuming" in resumed.stdout and "at step 2" in resumed.stdout
    assert "removed" in resumed.stdout and ".step_0000004.partial" in resumed.stdout
    assert not (checkpoints / ".step_0000004.partial").exists()
    assert _losses(killed) == _losses(runs["fsdp"])  # bit for bit
    ea, eb = _export(killed), _export(runs["fsdp"])
    assert all(torch.equal(ea[k], eb[k]) for k in eb)


@pytest.mark.slow
def test_resume_onto_one_process(runs, tmp_path):
    """The 2-rank checkpoint of step 2 continued by one process (unsharded; same global batch of 4)."""
    run = tmp_path / "onto1"
    shutil.copytree(runs["killed_pristine"], run)
    done = _run([sys.executable, "-m", "vjepa", "pretrain", "--resume", "--run-dir", str(run),
                 "--set", "data.batch_size=4"])  # fmt: skip
    assert "at step 2" in done.stdout and "continuing on 1 with batch_size 4 at sample 8" in done.stdout
    a, b = _losses(run), _losses(runs["fsdp"])
    assert [a[s] for s in range(4)] == pytest.approx([b[s] for s in range(4)], rel=1e-5)
    ea, eb = _export(run), _export(runs["fsdp"])
    for key in eb:
        torch.testing.assert_close(ea[key], eb[key], rtol=0, atol=1e-4, msg=key)
    assert read_sharded_state(run / "checkpoints/step_0000004")["world_size"] == 1


@pytest.mark.slow
def test_single_file_checkpoint_resumes_sharded_on_two_ranks(runs, tmp_path):
    """The one-process run's kept step-2 file continued by 2 FSDP ranks (format, strategy and world size
    all change)."""
    run = tmp_path / "onto2"
    shutil.copytree(runs["single"], run)
    shutil.rmtree(run / "export")
    os.replace(run / "checkpoints/step_0000002.pt", run / "checkpoints/latest.pt")
    done = _run([*TORCHRUN, "-m", "vjepa", "pretrain", "--resume", "--run-dir", str(run),
                 "--set", "runtime.strategy=fsdp", "--set", "data.batch_size=2"])  # fmt: skip
    assert "at step 2" in done.stdout
    a, b = _losses(run), _losses(runs["single"])
    assert [a[s] for s in range(4)] == pytest.approx([b[s] for s in range(4)], rel=1e-5)
    ea, eb = _export(run), _export(runs["single"])
    for key in eb:
        torch.testing.assert_close(ea[key], eb[key], rtol=0, atol=1e-4, msg=key)


@pytest.mark.slow
def test_torchrun_max_restarts_resumes_by_itself(runs, tmp_path):
    """The documented multi-node command: torchrun --max-restarts with --resume. The first attempt dies in the
    middle of a checkpoint write; torchrun restarts both workers, which continue from the last committed
    checkpoint; the one command ends with the run complete, bit-identical to the run never killed."""
    run = tmp_path / "restarted"
    fsdp = [*COMMON, "--set", "runtime.strategy=fsdp", "--set", "data.batch_size=2"]
    done = _run([*TORCHRUN, "--max-restarts=1", str(HERE / "fsdp_kill_driver.py"), "4", "tiny_cpu", *fsdp,
                 "--run-dir", str(run), "--resume"])  # fmt: skip
    assert "at step 2" in done.stdout and ".step_0000004.partial" in done.stdout
    assert _losses(run) == _losses(runs["fsdp"])
    ea, eb = _export(run), _export(runs["fsdp"])
    assert all(torch.equal(ea[k], eb[k]) for k in eb)
