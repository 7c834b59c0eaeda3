"""The loop on tiny models: the loss falls, the target stays the EMA of the encoder, resume is exact, a NaN
stops the run and keeps the last checkpoint, run directories are never overwritten."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
import torch

import vjepa.pretrain.loop as loop
from pretrain_helpers import make_trainer, tiny_config
from vjepa.checkpoint import load_pretrained
from vjepa.data.synthetic import SyntheticSpec, write_synthetic_dataset
from vjepa.errors import OutOfMemory
from vjepa.pretrain.loop import (
    TrainingDiverged,
    pretrain,
    train_step,
)
from vjepa.pretrain.metrics import read_metrics
from vjepa.pretrain.objective import JEPAObjective
from vjepa.pretrain.rundir import RunDirError
from vjepa.pretrain.state import load_training_state, rng_state, set_rng_state
from vjepa.progress import Progress


def test_loss_falls_and_target_is_the_ema_of_the_encoder():
    torch.set_num_threads(1)
    config = tiny_config(["optimization.epochs=5", "optimization.lr=2e-3"])
    trainer, batches = make_trainer(config)
    obj: JEPAObjective = trainer.objective
    reference = [p.detach().double().clone() for p in obj.target_encoder.parameters()]
    losses = []
    for step in range(config.optimization.total_steps):
        target_before = [p.detach().clone() for p in obj.target_encoder.parameters()]
        result = train_step(trainer, [next(batches)], step)
        losses.append(result.loss)
        m = result.momentum
        assert m == trainer.schedules.momentum(step)
        online = [p.detach() for p in obj.encoder.parameters()]
        reference = [m * r + (1 - m) * o.double() for r, o in zip(reference, online, strict=True)]
        if step == 7:  # one step against a direct recomputation: target = m * target + (1 - m) * online
            for t, b, o in zip(obj.target_encoder.parameters(), target_before, online, strict=True):
                torch.testing.assert_close(t, m * b + (1 - m) * o, rtol=0, atol=2.4e-7)  # 2 ulp at 1
    for t, r in zip(obj.target_encoder.parameters(), reference, strict=True):
        torch.testing.assert_close(t.double(), r, rtol=0, atol=1e-5)
    assert all(not p.requires_grad for p in obj.target_encoder.parameters())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses


def test_clipping_only_after_warmup_and_gradient_norms_reported():
    config = tiny_config(["optimization.warmup=1", "optimization.clip_grad=1e-3"])
    trainer, batches = make_trainer(config)
    ipe = config.optimization.ipe
    results = [train_step(trainer, [next(batches)], s) for s in (0, 2 * ipe)]
    assert not results[0].clipped and results[1].clipped
    assert results[1].grad_norm_encoder > 1e-3 and results[1].grad_norm_predictor > 1e-3


def test_accumulation_equals_one_big_batch():
    # Causal masks are the same for every sample, so two micro-batches of 2 see exactly the clips and masks
    # of one batch of 4; the gradients then differ only by summation order.
    base = ["masks.kind=causal", "optimization.epochs=1", "optimization.ipe=2"]
    big, big_batches = make_trainer(tiny_config([*base, "data.batch_size=4"]))
    small, small_batches = make_trainer(
        tiny_config([*base, "data.batch_size=2", "optimization.accumulation_steps=2"])
    )
    for step in range(2):
        r_big = train_step(big, [next(big_batches)], step)
        r_small = train_step(small, [next(small_batches), next(small_batches)], step)
        assert r_small.loss == pytest.approx(r_big.loss, rel=1e-5)
    for a, b in zip(big.objective.parameters(), small.objective.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_pixel_target_trains():
    config = tiny_config(["objective.target=pixels", "optimization.epochs=1"])
    trainer, batches = make_trainer(config)
    losses = [train_step(trainer, [next(batches)], s).loss for s in range(5)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert trainer.objective.target_encoder is None


def _losses(run_dir) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in read_metrics(run_dir / "metrics.jsonl")}


def test_kill_and_resume_gives_identical_losses(tmp_path, monkeypatch):
    config = tiny_config(["optimization.epochs=3", "logging.checkpoint_every=5", "logging.keep_every=10"])
    total = config.optimization.total_steps  # 15
    pretrain(config, tmp_path / "straight")
    straight = _losses(tmp_path / "straight")
    assert sorted(straight) == list(range(total))

    real_step = loop.train_step

    def killed_at_step_7(trainer, batches, step):
        if step == 7:
            raise KeyboardInterrupt  # the job dies after step 6; the last checkpoint is after step 4
        return real_step(trainer, batches, step)

    monkeypatch.setattr(loop, "train_step", killed_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config, tmp_path / "killed")
    assert load_training_state(tmp_path / "killed/checkpoints/latest.pt")["step"] == 5
    assert sorted(_losses(tmp_path / "killed")) == list(range(7))  # steps 5, 6 logged, not checkpointed
    monkeypatch.setattr(loop, "train_step", real_step)

    result = pretrain(config, tmp_path / "killed", resume=True)
    assert (result.start_step, result.end_step) == (5, total)
    assert _losses(tmp_path / "killed") == straight  # every step, exactly
    assert (tmp_path / "killed/checkpoints/step_0000010.pt").is_file()
    a = load_training_state(tmp_path / "straight/checkpoints/latest.pt")
    b = load_training_state(tmp_path / "killed/checkpoints/latest.pt")
    for part in ("encoder", "target_encoder", "predictor"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(["optimization.epochs=2", "logging.checkpoint_every=2"])
    real_forward = JEPAObjective.forward
    calls = {"n": 0}

    def poisoned(self, clips, masks, step=0):
        out = real_forward(self, clips, masks, step)
        calls["n"] += 1
        if calls["n"] == 4:  # step 3
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(JEPAObjective, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 3: the loss is nan.*latest\.pt \(resumes at step 2\)"):
        pretrain(config, tmp_path / "run")
    state = load_training_state(tmp_path / "run/checkpoints/latest.pt")
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["encoder"].values())


def test_out_of_memory_stops_with_what_to_change_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(["optimization.epochs=2", "logging.checkpoint_every=2"])
    real_step = loop.train_step

    def step_that_needs_more(trainer, micro, step):
        if step == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(trainer, micro, step)

    monkeypatch.setattr(loop, "train_step", step_that_needs_more)
    with pytest.raises(
        OutOfMemory,
        match=r"out of cpu memory \(CUDA out of memory\. Tried to allocate 2\.00 GiB\); resume with "
        r"`--set runtime\.activation_checkpointing=true`.*stopped at step 3\. .*latest\.pt \(resumes at step 2\)",
    ):
        pretrain(config, tmp_path / "run")
    assert load_training_state(tmp_path / "run/checkpoints/latest.pt")["step"] == 2

    def bug(trainer, micro, step):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")  # a bug keeps its type and traceback

    monkeypatch.setattr(loop, "train_step", bug)
    with pytest.raises(RuntimeError, match="mat1"):
        pretrain(config, tmp_path / "bug")


def test_run_dir_is_never_overwritten(tmp_path):
    config = tiny_config(["optimization.epochs=1", "optimization.ipe=2", "logging.export=true"])
    run = tmp_path / "run"
    pretrain(config, run)
    before = (run / "checkpoints/latest.pt").read_bytes()
    with pytest.raises(RunDirError, match="already holds a run.*--resume"):
        pretrain(config, run)
    assert (run / "checkpoints/latest.pt").read_bytes() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other/notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty but holds no vjepa run"):
        pretrain(config, tmp_path / "other")
    # Files written: the resolved config, metrics, checkpoint, and the export readable by load_pretrained.
    assert "vit_tiny" in (run / "config.yaml").read_text()
    umask = os.umask(0)
    os.umask(umask)
    for written in ("config.yaml", "checkpoints/latest.pt"):
        assert (run / written).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["step"] == 0
    exported = load_pretrained(run / "export")
    assert set(exported.models) == {"encoder", "target_encoder", "predictor"}
    # The training checkpoint is readable as a pretrained checkpoint too (official key layout).
    assert load_pretrained(run / "checkpoints/latest.pt").encoder().config.embed_dim == 192


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_rank_zero_terminals(monkeypatch):
    def progress(enabled: bool = True, bar: bool = True) -> Progress:  # as the loop builds it
        mode = "auto" if bar else "lines"
        return Progress(
            10, "pretraining", unit="step", initial=3, enabled=enabled, mode=mode, lines=False, leave=True
        )

    assert not progress().terminal  # stderr captured by pytest: not a terminal
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert not progress(enabled=False).terminal  # other ranks
    assert not progress(bar=False).terminal  # logging.progress_bar=false
    bar = progress()
    assert bar.terminal
    bar.update(1, loss="0.5", lr="1e-3", clips_s="12.0")
    bar.close()
    text = sys.stderr.getvalue()
    assert "4/10" in text and "loss=0.5" in text and "clips_s=12.0" in text


def test_csv_videos_with_loader_workers(tmp_path):
    files = write_synthetic_dataset(
        tmp_path / "videos",
        num_train=8,
        num_val=1,
        spec=SyntheticSpec(num_frames=8, resolution=48, object_size=16),
    )
    config = tiny_config(
        [
            "data.source=csv",
            f"data.datasets=[{files.csvs['train']}]",
            "data.num_workers=2",
            "data.max_short_side=auto",
            "optimization.epochs=1",
            "optimization.ipe=3",
        ]
    )
    result = pretrain(config, tmp_path / "run")
    assert result.end_step == 3 and result.last_loss > 0
    sessions = json.loads((tmp_path / "run/runtime.json").read_text())
    assert [s["precision"]["precision"] for s in sessions] == ["fp32"] == [result.precision.precision]
    assert sessions[0]["threads"]["intra_op"] == 1 and sessions[0]["start_step"] == 0
    cache_dir = Path(os.environ["VJEPA_CACHE_DIR"]) / "clips"  # data.clip_cache=auto: 8 small videos fit
    assert list(cache_dir.rglob("*.npy"))
    assert (
        load_training_state(tmp_path / "run/checkpoints/latest.pt")["data"]["batches_done"] == 1
    )  # 8 // 4 = 2


def test_activation_checkpointing_changes_nothing_but_memory():
    config = tiny_config(["optimization.epochs=1"])
    plain, batches = make_trainer(config)
    recomputed, _ = make_trainer(config)
    recomputed.objective.encoder.grad_checkpointing = True
    recomputed.objective.predictor.grad_checkpointing = True
    for step in range(2):
        batch = next(batches)
        assert train_step(plain, [batch], step).loss == train_step(recomputed, [batch], step).loss
    for a, b in zip(plain.objective.parameters(), recomputed.objective.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_rng_state_round_trips_and_cuda_states_fit_the_gpus_at_hand(monkeypatch):
    """A checkpoint saved on a machine with more GPUs than the one resuming it (8 -> 4, or a node of another
    size) restores the GPUs this machine has instead of failing on a missing device ordinal."""
    saved = rng_state()
    expected = torch.rand(3)
    torch.rand(5)
    set_rng_state(saved)
    assert torch.equal(torch.rand(3), expected)

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda state, device: restored.append((int(state[0]), device))
    )
    set_rng_state({**saved, "cuda": [torch.tensor([i], dtype=torch.uint8) for i in range(8)]})
    assert restored == [(0, 0), (1, 1)]
