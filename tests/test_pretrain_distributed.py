"""DDP under torchrun (2 CPU processes, gloo) against one process with the same global batch.

Causal masks are identical for every sample, so both runs see exactly the same clips (rank r takes draws
r, r+2, ... of the same epoch order) and the same masks. The only differences are floating-point summation
orders: a batch of 4 against two batches of 2 whose gradients gloo averages. In fp32 those are ~1e-7
relative per operation and AdamW passes them on to the update without amplification (except for gradient
entries at the noise floor, whose normalized updates can differ by up to 2 * lr). Measured over these 4
steps: losses equal to 1e-7 relative, weights to 5e-6 absolute; the test allows 1e-5 and 1e-4 (lr = 1e-3), far
below what a real difference (a wrong gradient average, a sample seen twice, unsynced ranks) produces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.distributed as dist

from pretrain_helpers import TINY_CLI as COMMON
from vjepa.pretrain.distributed import wrap_for_training
from vjepa.pretrain.metrics import read_metrics
from vjepa.pretrain.state import load_training_state
from vjepa.runtime import Runtime


@pytest.mark.slow
def test_two_ranks_stay_identical_and_match_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "vjepa", "pretrain", "tiny_cpu", *COMMON, "--set", "data.batch_size=2",
         "--run-dir", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    # Every checkpoint compared the two ranks' weight digests bit for bit before writing.
    assert "step 2: weights identical on 2 ranks" in ddp.stdout
    assert "step 4: weights identical on 2 ranks" in ddp.stdout
    single = subprocess.run(
        [sys.executable, "-m", "vjepa", "pretrain", "tiny_cpu", *COMMON, "--set", "data.batch_size=4",
         "--run-dir", str(tmp_path / "single")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr

    losses_ddp = [r["loss"] for r in read_metrics(tmp_path / "ddp/metrics.jsonl")]
    losses_one = [r["loss"] for r in read_metrics(tmp_path / "single/metrics.jsonl")]
    assert len(losses_ddp) == len(losses_one) == 4
    assert losses_ddp == pytest.approx(losses_one, rel=1e-5)
    a = load_training_state(tmp_path / "ddp/checkpoints/latest.pt")
    b = load_training_state(tmp_path / "single/checkpoints/latest.pt")
    assert a["world_size"] == 2 and b["world_size"] == 1
    for part in ("encoder", "predictor", "target_encoder"):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=0, atol=1e-4, msg=f"{part}.{key}")


def test_ddp_wrapper_prints_no_deprecation_warning():
    """torch 2.13 deprecated DDP's ``broadcast_buffers``: every DDP run printed a FutureWarning."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        module = torch.nn.Linear(3, 2)
        module.register_buffer("table", torch.zeros(2))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            wrapped = wrap_for_training(module, Runtime(torch.device("cpu")), ddp=True)
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
        wrapped(torch.ones(1, 3)).sum().backward()  # a step runs with the buffer left unsynced
    finally:
        dist.destroy_process_group()
