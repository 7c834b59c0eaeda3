"""Sharded checkpoints in one process (``runtime.strategy=fsdp`` without torchrun: plain modules, sharded
format), the choice of the latest checkpoint, and the rules of resuming onto another world size."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import vjepa.pretrain.distributed as distributed
import vjepa.pretrain.loop as loop
from pretrain_helpers import needs_fsdp, tiny_config
from vjepa.config import ConfigError, to_dict
from vjepa.pretrain.loop import pretrain
from vjepa.pretrain.metrics import read_metrics
from vjepa.pretrain.resume import _data_state_for, adapt_saved_config
from vjepa.pretrain.rundir import check_compatible, inspect_run_dir
from vjepa.pretrain.sharded import committed_checkpoints, latest_checkpoint, read_sharded_state
from vjepa.runtime import Runtime

CPU = Runtime(torch.device("cpu"))


def _losses(run_dir: Path) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in read_metrics(run_dir / "metrics.jsonl")}


@needs_fsdp
def test_fsdp_strategy_in_one_process_is_the_default_run_with_sharded_checkpoints(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    common = [
        "optimization.epochs=2",
        "logging.checkpoint_every=2",
        "logging.keep_every=4",
        "logging.export=true",
    ]
    pretrain(tiny_config(common), tmp_path / "ddp")
    config = tiny_config([*common, "runtime.strategy=fsdp"])
    real_step = loop.train_step

    def killed_at_step_7(trainer, batches, step):
        if step == 7:
            raise KeyboardInterrupt
        return real_step(trainer, batches, step)

    monkeypatch.setattr(loop, "train_step", killed_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config, tmp_path / "fsdp")
    checkpoints = tmp_path / "fsdp/checkpoints"
    # Steps 2, 4, 6 were written; 2 was removed once 4 was committed, 4 is kept (keep_every), 6 is the latest.
    assert [s for s, _ in committed_checkpoints(checkpoints)] == [4, 6]
    assert not (checkpoints / "latest.pt").exists()
    assert inspect_run_dir(tmp_path / "fsdp").checkpoint == checkpoints / "step_0000006"
    monkeypatch.setattr(loop, "train_step", real_step)

    result = pretrain(config, tmp_path / "fsdp", resume=True)
    assert (result.start_step, result.end_step, result.checkpoint) == (6, 10, checkpoints / "step_0000010")
    assert [s for s, _ in committed_checkpoints(checkpoints)] == [4, 8, 10]
    assert _losses(tmp_path / "fsdp") == _losses(tmp_path / "ddp")  # bit for bit
    from safetensors.torch import load_file

    a = load_file(tmp_path / "fsdp/export/model.safetensors")
    b = load_file(tmp_path / "ddp/export/model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    state = read_sharded_state(checkpoints / "step_0000010")
    assert (state["step"], state["world_size"], state["config"]["runtime"]["strategy"]) == (10, 1, "fsdp")


def test_fsdp_is_refused_by_name_on_an_older_torch(tmp_path, monkeypatch):
    """vjepa runs on torch >= 2.4, its FSDP only from the version on which its FSDP tests pass (see
    FSDP_MIN_TORCH): an older torch gets one clear line before anything is written (for real on such a torch,
    with a pretended version on newer ones)."""
    monkeypatch.setattr(distributed, "torch_version", lambda: (2, 4))
    need = re.escape(distributed.FSDP_MIN_TORCH_NAME)
    with pytest.raises(ConfigError, match=rf"runtime.strategy=fsdp needs torch >= {need} .* this is torch "):
        pretrain(tiny_config(["runtime.strategy=fsdp"]), tmp_path / "new")
    assert not (tmp_path / "new").exists()


@needs_fsdp
def test_resuming_from_a_sharded_checkpoint_is_refused_by_name_on_an_older_torch(tmp_path, monkeypatch):
    """Also when a ``ddp`` session would continue a run from its sharded checkpoint; the checkpoint stays."""
    torch.set_num_threads(1)
    short = ["optimization.epochs=1", "logging.checkpoint_every=5"]
    pretrain(tiny_config([*short, "runtime.strategy=fsdp"]), tmp_path / "sharded")
    checkpoint = tmp_path / "sharded/checkpoints/step_0000005"
    assert inspect_run_dir(tmp_path / "sharded").checkpoint == checkpoint
    monkeypatch.setattr(distributed, "torch_version", lambda: (2, 4))
    with pytest.raises(
        ConfigError, match=re.escape(f"resuming from the sharded checkpoint {checkpoint} needs torch")
    ):
        pretrain(tiny_config([*short, "optimization.epochs=2"]), tmp_path / "sharded", resume=True)
    assert [s for s, _ in committed_checkpoints(checkpoint.parent)] == [5]


def test_latest_is_the_newest_committed_checkpoint_of_either_format(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    assert latest_checkpoint(checkpoints) is None
    torch.save(
        {"format": "vjepa-pretrain", "version": 1, "step": 5, "world_size": 1}, checkpoints / "latest.pt"
    )
    assert latest_checkpoint(checkpoints) == checkpoints / "latest.pt"
    for step in (3, 7):
        folder = checkpoints / f"step_{step:07d}"
        folder.mkdir()
        (folder / ".metadata").write_bytes(b"x")
        torch.save({"format": "vjepa-pretrain-sharded", "version": 1, "step": step}, folder / "state.pt")
    (checkpoints / ".step_0000009.partial").mkdir()  # a write killed mid-way
    (checkpoints / "step_0000011").mkdir()  # no state.pt: never committed
    assert latest_checkpoint(checkpoints) == checkpoints / "step_0000007"
    torch.save(
        {"format": "vjepa-pretrain", "version": 1, "step": 8, "world_size": 1}, checkpoints / "latest.pt"
    )
    assert latest_checkpoint(checkpoints) == checkpoints / "latest.pt"


def _stream(world: int, batch: int, per_epoch: int):
    sampler = SimpleNamespace(world_size=world)
    return SimpleNamespace(sampler=sampler, batch_size=batch, batches_per_epoch=per_epoch)


@pytest.mark.parametrize(
    ("saved", "now", "expected"),
    [
        ((2, 2, 3), (1, 4, 8), (0, 3)),  # 12 clips delivered = 3 batches of 4
        ((2, 2, 3), (4, 2, 2), (0, 2)),  # 12 clips -> the first global batch at or after: 16 (4 skipped)
        ((1, 4, 7), (2, 4, 3), (1, 0)),  # 28 clips: past the end of the epoch on 2 ranks -> next epoch
    ],
)
def test_data_position_moves_to_another_world_size(saved, now, expected):
    world, batch, done = saved
    state = {"epoch": 0, "batches_done": done, "batch_size": batch, "world_size": world, "seed": 0}
    new = _data_state_for(state, _stream(*now), CPU)
    assert (new["epoch"], new["batches_done"]) == expected
    assert (new["world_size"], new["batch_size"]) == now[:2]
    same = _data_state_for(state, _stream(world, batch, 8), CPU)
    assert same is state  # the same world size resumes exactly where it stopped


def test_batch_size_may_change_with_the_world_size_only_to_keep_the_global_batch(capsys):
    saved = to_dict(tiny_config(["data.batch_size=2"]))
    two = Runtime(torch.device("cpu"), rank=0, world_size=2)
    keeping = tiny_config(["data.batch_size=4"])  # 4 x 1 process = 2 x 2 processes
    check_compatible(adapt_saved_config(saved, keeping, 2, CPU), keeping, Path("config.yaml"))
    halving = tiny_config(["data.batch_size=1"])  # 1 x 1 process != 2 x 2
    with pytest.raises(ConfigError, match="data.batch_size"):
        check_compatible(adapt_saved_config(saved, halving, 2, CPU), halving, Path("config.yaml"))
    same = tiny_config(["data.batch_size=2"])  # kept per rank: the global batch halves, with a warning
    check_compatible(adapt_saved_config(saved, same, 2, CPU), same, Path("config.yaml"))
    assert "global batch of 4 clips; on 1 it is 2" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="data.batch_size"):  # same world size: no batch change at all
        check_compatible(adapt_saved_config(saved, keeping, 2, two), keeping, Path("config.yaml"))
