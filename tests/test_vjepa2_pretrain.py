"""V-JEPA 2 training: the schedules of the official configs, the tiny CPU recipe (main stage, then the
higher-resolution cooldown stage started from its weights), and the 4-block probe / extraction on V-JEPA 2
encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vjepa.checkpoint import load_pretrained
from vjepa.cli import main
from vjepa.config import apply_overrides, from_dict
from vjepa.optim import linear_decay_lr, warmup_cosine_lr, wsd_lr
from vjepa.pretrain.config import OptimizationConfig, PretrainConfig, load_pretrain_config
from vjepa.pretrain.loop import pretrain
from vjepa.pretrain.schedules import Schedules
from vjepa.pretrain.setup import build_objective, model_parts
from vjepa.pretrain.state import load_training_state
from vjepa.pretrain.warm_start import warm_start

HF_MODEL = Path(__file__).parent / "data" / "vjepa2" / "hf_model"


def test_main_stage_is_warmup_then_constant():
    """Official vitg16 pretrain-256px-16f: warmup 40 epochs of 300 from 1e-4 to 5.25e-4, then a cosine
    towards final_lr == lr, i.e. constant; weight decay and EMA constant."""
    cfg = load_pretrain_config("vjepa2_vitg16").optimization
    s = Schedules(cfg)
    assert cfg.warmup_steps == 12_000 and cfg.total_steps == 240_000 and cfg.clip_grad is None
    assert s.lr(0) == pytest.approx(1e-4 + (1 / 12_000) * 4.25e-4)
    assert s.lr(5_999) == pytest.approx(1e-4 + 0.5 * 4.25e-4)
    for step in (11_999, 12_000, 100_000, 239_999):
        assert s.lr(step) == 5.25e-4
        assert s.weight_decay(step) == 0.04 and s.momentum(step) == 0.99925


def test_cooldown_is_the_official_linear_decay():
    """Official cooldown-*-64f: LinearDecaySchedule from 5.25e-4 to 1e-6 over int(1.25 * 40 * 300) = 15,000
    counter steps; the run stops after 12,000 (at 1.058e-4)."""
    cfg = load_pretrain_config("vjepa2_vitl16_cooldown").optimization
    s = Schedules(cfg)
    assert cfg.total_steps == 12_000 and cfg.schedule_steps == 15_000
    assert s.lr(0) == pytest.approx(5.25e-4 + (1 / 15_000) * (1e-6 - 5.25e-4))
    assert s.lr(11_999) == pytest.approx(5.25e-4 + 0.8 * (1e-6 - 5.25e-4))
    assert s.lr(11_999) == pytest.approx(1.0581e-4, rel=1e-4)
    assert linear_decay_lr(14_999, ref_lr=1.0, final_lr=0.0, total_steps=15_000) == 0.0


def test_wsd_schedule():
    kw = dict(start_lr=0.0, ref_lr=1.0, final_lr=0.1, warmup_steps=10, decay_steps=20, total_steps=100)
    assert wsd_lr(0, **kw) == pytest.approx(0.1)  # counter 1 of a 10-step warmup
    assert wsd_lr(9, **kw) == 1.0 and wsd_lr(78, **kw) == 1.0  # stable until counter 80
    assert wsd_lr(79, **kw) == pytest.approx(1.0) and wsd_lr(89, **kw) == pytest.approx(0.55)
    assert wsd_lr(99, **kw) == pytest.approx(0.1)
    cfg = OptimizationConfig(epochs=10, ipe=10, ipe_scale=1.0, warmup=1, cooldown=2, lr_schedule="wsd")
    assert Schedules(cfg).lr(99) == pytest.approx(cfg.final_lr)
    with pytest.raises(ValueError, match="cooldown"):
        OptimizationConfig(lr_schedule="wsd")
    with pytest.raises(ValueError, match="cooldown"):
        OptimizationConfig(cooldown=2.0)


def test_vjepa1_schedule_is_unchanged():
    cfg = load_pretrain_config("vitl16").optimization
    assert cfg.lr_schedule == "warmup_cosine"
    s = Schedules(cfg)
    for step in (0, 5_000, 12_000, 50_000, 89_999):
        expected = warmup_cosine_lr(
            step, start_lr=2e-4, ref_lr=6.25e-4, final_lr=1e-6, warmup_steps=12_000, total_steps=112_500
        )
        assert s.lr(step) == expected


def test_vjepa2_recipes_build_the_released_architectures():
    for name, heads, size, frames in (
        ("vjepa2_vitl16", 16, 256, 16),
        ("vjepa2_vitg16_cooldown_384", 22, 384, 64),
    ):
        cfg = load_pretrain_config(name)
        assert cfg.data.resolution == size and cfg.data.num_frames == frames
        with torch.device("meta"):
            objective = build_objective(cfg)
        enc, pred = objective.encoder.config, objective.predictor.config
        assert enc.positions == pred.positions == "rope" and enc.num_heads == heads
        assert (pred.num_heads, pred.num_mask_tokens, pred.predictor_embed_dim) == (12, 1, 384)


SHORT = [
    "optimization.epochs=1",
    "optimization.ipe=3",
    "data.synthetic_videos=8",
    "data.batch_size=2",
    "model.pred_depth=1",
    "logging.tensorboard=false",
    "logging.progress_bar=false",
    "runtime.threads=1",
    "runtime.precision=fp32",
]


def recipe(name: str, overrides: list[str]) -> PretrainConfig:
    from vjepa.config import read_yaml
    from vjepa.pretrain.config import resolve_recipe

    return from_dict(PretrainConfig, apply_overrides(read_yaml(resolve_recipe(name)), overrides), source=name)


def test_tiny_vjepa2_recipe_then_its_higher_resolution_cooldown(tmp_path):
    main_run, cool_run = tmp_path / "main", tmp_path / "cooldown"
    done = pretrain(recipe("vjepa2_tiny_cpu", SHORT), main_run)
    assert done.end_step == 3 and np.isfinite(done.last_loss)
    exported = load_pretrained(main_run / "export")
    assert exported.encoder_config.positions == "rope" and exported.predictor_config.num_mask_tokens == 1

    latest = main_run / "checkpoints" / "latest.pt"
    cool = recipe("vjepa2_tiny_cpu_cooldown", [*SHORT, f"model.init_from={latest}"])
    assert (cool.data.resolution, cool.data.num_frames) == (96, 16)  # main stage: 64 px, 8 frames
    objective = build_objective(cool)
    report = warm_start(model_parts(objective), latest)
    assert len(report) == 3
    saved = load_training_state(latest)
    for name in ("encoder", "target_encoder", "predictor"):
        state = getattr(objective, name).state_dict()
        assert all(torch.equal(v, saved[name][k]) for k, v in state.items())

    done = pretrain(cool, cool_run)
    assert done.start_step == 0 and done.end_step == 3 and np.isfinite(done.last_loss)
    rows = [json.loads(line) for line in (cool_run / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if "lr" in r]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 1e-3  # linear decay from 1e-3


def test_extract_and_encode_on_a_vjepa2_hf_folder(tmp_path, capsys):
    from test_extract import decode_all, to_clip, write_mp4

    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "a.mp4", np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8))
    out = tmp_path / "feats"
    argv = ["extract", str(videos), "--checkpoint", str(HF_MODEL), "--encoder", "target_encoder"]
    argv += ["--out", str(out), "--frames", "4", "--frame-step", "2", "--resolution", "32", "--crop", "full"]
    argv += ["--precision", "fp32"]  # compared with the fp32 encoder below (auto may pick bf16)
    with pytest.raises(SystemExit) as done:
        main([*argv, "--device", "cpu"])
    assert done.value.code == 0
    saved = load_file(out / "a.safetensors")
    encoder = load_pretrained(HF_MODEL).encoder()
    frames = decode_all(videos / "a.mp4")
    clips = torch.stack([to_clip(frames[idx.numpy()]) for idx in saved["frame_indices"]])
    with torch.no_grad():
        torch.testing.assert_close(saved["features"], encoder(clips), atol=1e-5, rtol=1e-4)
    with pytest.raises(SystemExit) as done:
        main(["encode", "--checkpoint", str(HF_MODEL), "--frames", "4", "--size", "48", "--batch-size", "1"])
    assert done.value.code == 0 and "tokens (1, 72, 48)" in capsys.readouterr().out


def test_eval_trains_the_four_block_probe_on_a_vjepa2_encoder(tmp_path):
    from vjepa.data.synthetic import SyntheticSpec, write_synthetic_dataset
    from vjepa.probe.config import load_eval_config
    from vjepa.probe.loop import run_eval

    data = tmp_path / "data"
    spec = SyntheticSpec(num_frames=8, resolution=32, object_size=12, speeds=(2, 3))
    write_synthetic_dataset(data, seed=0, num_train=12, num_val=6, spec=spec, overwrite=True)
    overrides = [
        f"encoder.checkpoint={HF_MODEL}",
        f"data.train={data / 'train_motion.csv'}",
        f"data.val={data / 'val_motion.csv'}",
        "data.num_frames=8",
        "data.resolution=32",
        "probe.num_blocks=4",
        "probe.num_heads=2",
        "optimization.epochs=1",
        "optimization.batch_size=6",
        "device=cpu",
        f"output_dir={tmp_path / 'run'}",
        f"cache.dir={tmp_path / 'cache'}",
    ]
    cfg, path = load_eval_config("synthetic_motion", overrides)
    report = run_eval(cfg, path)
    assert report["results"] and all(0 <= r["top1"] <= 100 for r in report["results"])
    probes = sorted((tmp_path / "run").rglob("config.json"))
    from vjepa.probe.checkpoint import load_probe

    probe = load_probe(probes[0].parent)
    assert probe.arch.depth == 4 and not probe.arch.xattn_proj
    assert any(k.startswith("pooler.blocks.2.") for k in probe.model.state_dict())


def test_runs_started_before_the_v2_keys_existed_still_resume(tmp_path):
    from vjepa.config import to_dict
    from vjepa.pretrain.rundir import check_compatible

    config = recipe("tiny_cpu", [])
    saved = to_dict(config)
    for section, key in (("model", "positions"), ("model", "pred_mask_tokens"), ("model", "init_from")):
        del saved[section][key]
    for key in ("lr_schedule", "cooldown"):
        del saved["optimization"][key]
    check_compatible(saved, config, tmp_path / "config.yaml")  # the new keys at their defaults: no change
