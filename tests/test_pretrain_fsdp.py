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

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

import vjepa.pretrain.distributed as distributed
from pretrain_helpers import needs_fsdp
from vjepa.masks import MaskPair
from vjepa.models import EncoderConfig, VideoEncoder, build_predictor
from vjepa.pretrain.config import load_pretrain_config
from vjepa.pretrain.metrics import read_metrics
from vjepa.pretrain.objective import JEPAObjective, normalized_tubelets
from vjepa.pretrain.setup import build_objective
from vjepa.pretrain.sharded import committed_checkpoints, read_sharded_state
from vjepa.runtime import Runtime, seed_everything

pytestmark = needs_fsdp
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


@pytest.mark.slow
def test_bf16_parameter_policy_trains_like_one_bf16_process(tmp_path):
    """FSDP's bf16 parameter policy (CUDA's ``fsdp`` + ``precision: bf16``; forced onto the CPU by
    fsdp_bf16_driver.py) against one process under the same bf16 autocast with fp32 weights.

    The policy rounds each block's parameters and input to bf16 where autocast rounds only matmul inputs, so
    the two differ by bf16 rounding, not by summation order. Measured over these 4 steps: losses within 3.8e-4
    relative; each exported tensor's difference at most 0.19 of how far it moved from its initial value (the
    whole model: 0.09; one process in fp32 against one in bf16: 0.05). The test allows 2e-3 and 0.5; a shard
    left out of an update, or updated twice, moves by 1 or more. Master weights and exports stay fp32, and
    resume is exact."""
    bf16 = ["--set", "runtime.precision=bf16"]
    fsdp, single, resumed = tmp_path / "fsdp", tmp_path / "single", tmp_path / "resumed"
    done = _run([*TORCHRUN, str(HERE / "fsdp_bf16_driver.py"), "tiny_cpu", *COMMON, *bf16,
                 "--set", "runtime.strategy=fsdp", "--set", "data.batch_size=2", "--run-dir", str(fsdp)])  # fmt: skip
    blocks = 12 + 12 + 1  # encoder, target encoder, predictor (tiny_cpu, pred_depth 1)
    assert f"bf16 parameter policy on {blocks + 4} modules" in done.stdout  # + the 3 models and the root
    _run([sys.executable, "-m", "vjepa", "pretrain", "tiny_cpu", *COMMON, *bf16, "--set", "data.batch_size=4",
          "--run-dir", str(single)])  # fmt: skip

    a, b = _losses(fsdp), _losses(single)
    assert sorted(a) == sorted(b) == [0, 1, 2, 3]
    assert [a[s] for s in range(4)] == pytest.approx([b[s] for s in range(4)], rel=2e-3)
    ea, eb = _export(fsdp), _export(single)
    overrides = [value for flag, value in zip(COMMON[::2], COMMON[1::2], strict=True) if flag == "--set"]
    config = load_pretrain_config("tiny_cpu", overrides)
    seed_everything(config.runtime.seed)
    initial = build_objective(config).state_dict()
    assert set(ea) == set(eb) and set(eb) <= set(initial)
    for key in eb:
        assert ea[key].dtype == torch.float32, key
        moved = (eb[key] - initial[key]).norm()
        assert (ea[key] - eb[key]).norm() <= 0.5 * moved, key
    saved = FileSystemReader(fsdp / "checkpoints/step_0000004").read_metadata().state_dict_metadata
    tensors = {k: v.properties.dtype for k, v in saved.items() if isinstance(v, TensorStorageMetadata)}
    assert sum(k.startswith("model.") for k in tensors) == len(eb)
    assert set(tensors.values()) == {torch.float32}  # master weights and AdamW moments

    # Resume from the step-2 checkpoint under the same policy: bit for bit.
    shutil.copytree(fsdp, resumed)
    shutil.rmtree(resumed / "checkpoints/step_0000004")
    shutil.rmtree(resumed / "export")
    again = _run([*TORCHRUN, str(HERE / "fsdp_bf16_driver.py"), "--resume", "--run-dir", str(resumed)])
    assert "at step 2" in again.stdout and f"bf16 parameter policy on {blocks + 4} modules" in again.stdout
    assert _losses(resumed) == _losses(fsdp)
    er = _export(resumed)
    assert all(torch.equal(er[k], ea[k]) for k in ea)


@pytest.mark.parametrize("force", [False, True])
def test_gradients_are_averaged_over_gloo_ranks_on_every_torch(force):
    """FSDP averages gradients with a reduce-scatter asking for ``ReduceOp.AVG``; gloo summed instead before
    torch 2.9 (measured: torch 2.7.1 and 2.8.0 return 3 for AVG of 1 and 2, 2.13.0 returns 1.5), so the 2-rank
    run trained with twice the gradient. ``shard_objective`` asks the group and, where it sums, divides
    every reduced shard itself. Ranks feed inputs of 1s and 2s: the average gradient is 1.5 everywhere, on
    any torch. Forcing the remedy where gloo already averages halves it: the hook really runs."""
    done = _run([*TORCHRUN, str(HERE / "gloo_average_driver.py"), *(["force"] if force else [])])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    halved = force and not result["averaging_sums"]
    assert result["grad"] == [[0.75 if halved else 1.5] * 4] * 2


def test_bf16_parameter_policy_keeps_clips_and_pixel_targets_fp32(monkeypatch):
    """Under the bf16 parameter policy only the blocks take bf16 inputs: the clips reach the objective and
    the models as they are, so pixel targets are the exact normalized pixels (a process group of one)."""
    monkeypatch.setattr(distributed, "bf16_parameters", lambda device: True)
    torch.manual_seed(0)
    encoder = VideoEncoder(EncoderConfig(embed_dim=32, depth=2, num_heads=2, num_frames=4, resolution=32))
    predictor = build_predictor(encoder, predictor_embed_dim=16, depth=1, num_heads=2)
    objective = JEPAObjective(encoder, predictor, None, target="pixels")
    clips = torch.randn(2, 3, 4, 32, 32)
    masks = [MaskPair(torch.arange(4).expand(2, 4), torch.arange(4, 8).expand(2, 4))]
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        distributed.shard_objective(objective, Runtime(torch.device("cpu")), mixed_bf16=True)
        seen = []
        qkv = objective.encoder.blocks[0].attn.qkv
        qkv.register_forward_hook(lambda module, args, out: seen.append((args[0].dtype, module.weight.dtype)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = objective(clips, masks)
        assert seen == [(torch.bfloat16, torch.bfloat16)]  # the policy holds inside the blocks
    finally:
        dist.destroy_process_group()
    expected = normalized_tubelets(clips, 2, 16)[:, 4:8]  # [B, K_tgt, t*p*p*C]
    torch.testing.assert_close(out.targets[0], expected, rtol=0, atol=0)
