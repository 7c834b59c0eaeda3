"""``vjepa eval`` end to end on the built-in synthetic dataset (tiny encoder, short training)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vjepa.checkpoint import save_pretrained
from vjepa.cli import main
from vjepa.config import load_config
from vjepa.models import VideoEncoder
from vjepa.models.registry import EncoderConfig
from vjepa.probe.checkpoint import load_probe
from vjepa.probe.config import EvalConfig, load_eval_config, shipped_configs
from vjepa.probe.loop import run_eval

NUM_VAL = 11


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from vjepa.data.synthetic import SyntheticSpec, write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    spec = SyntheticSpec(num_frames=8, resolution=32, object_size=12, speeds=(2, 3))
    write_synthetic_dataset(root, seed=0, num_train=24, num_val=NUM_VAL, spec=spec, overwrite=True)
    return root


@pytest.fixture(scope="module")
def random_encoder(tmp_path_factory) -> Path:
    """A randomly initialized tiny encoder in our checkpoint format."""
    torch.manual_seed(0)
    cfg = EncoderConfig(embed_dim=48, depth=2, num_heads=3, num_frames=8, resolution=32)
    out = tmp_path_factory.mktemp("encoder") / "random_tiny"
    return save_pretrained(out, {"target_encoder": VideoEncoder(cfg)}, cfg, meta={"note": "random init"})


def overrides(synthetic: Path, encoder: Path, out: Path, label: str = "motion") -> list[str]:
    """A short run whose heads train on the tiny data (lr 3e-2 and 1e-2, 20 epochs)."""
    return [
        f"encoder.checkpoint={encoder}",
        f"data.train={synthetic / f'train_{label}.csv'}",
        f"data.val={synthetic / f'val_{label}.csv'}",
        "data.num_frames=8",
        "data.resolution=32",
        "optimization.epochs=20",
        "optimization.batch_size=8",
        "optimization.lr=[0.03, 0.01]",
        "optimization.weight_decay=[0.01]",
        "optimization.min_steps=0",
        "device=cpu",
        f"output_dir={out / 'run'}",
        f"cache.dir={synthetic.parent / f'{synthetic.name}_cache'}",  # shared by the module's tests
    ]


def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


def cli_args(args: list[str]) -> list[str]:
    return [a for o in args for a in ("--set", o)]


def test_every_shipped_eval_config_loads():
    names = shipped_configs()
    assert {"synthetic_motion", "synthetic_appearance", "vitl16_k400_16x8x3", "vitl16_in1k"} <= set(names)
    for name in names:
        cfg, path = load_eval_config(name)
        assert isinstance(cfg, EvalConfig) and Path(path).is_file()


def check_outputs(run: Path, num_settings: int) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["results"]) == num_settings
    assert metrics["precision"]["precision"] in ("fp32", "bf16") and metrics["precision"]["reason"]
    for r in metrics["results"]:
        assert r["status"] in ("trained", "not_trained")
        if r["status"] == "trained":
            assert r["num_samples"] == NUM_VAL
            assert 0 <= r["top1"] <= 100 and r["top5"] == 100.0  # 4 classes: top-5 is always right
            assert len(r["confusion"]) == 4 and sum(map(sum, r["confusion"])) == NUM_VAL
        else:
            assert r["top1"] is None and r["confusion"] is None
    (selected,) = metrics["selected"]
    assert selected["status"] == "trained" and selected["name"] == metrics["best"]["1"]
    assert selected["train_top1"] > selected["trained_above"] > selected["chance_top1"]
    assert (run / f"confusion_{selected['name']}.png").is_file()
    assert [p.name for p in (run / "probes").iterdir()] == [selected["name"]]  # the selected probe only
    assert metrics["protocol"]["selection"] == "holdout" and metrics["protocol"]["test_samples"] == NUM_VAL
    assert load_config(EvalConfig, run / "config.yaml").output_dir == str(run)
    return metrics


@pytest.mark.slow
def test_eval_cli_attentive_probe_on_random_encoder(synthetic, random_encoder, tmp_path, capsys):
    args = overrides(synthetic, random_encoder, tmp_path)
    code = run_cli(["eval", "synthetic_motion"] + cli_args(args))
    assert code == 0
    metrics = check_outputs(tmp_path / "run", num_settings=2)
    assert metrics["readout"] == "attentive" and metrics["encoder"]["checkpoint"] == str(random_encoder)
    out = capsys.readouterr().out
    assert "train top-1" in out and f"=> {metrics['best']['1']}: test top-1" in out
    # a finished run is not overwritten
    assert run_cli(["eval", "synthetic_motion"] + cli_args(args)) == 2
    # the cache is reused (no rebuild) by a second run with another readout, and refused when stale
    recipe = load_eval_config("synthetic_motion")[1]
    knn_args = ["probe.kind=knn", "probe.knn_k=5", f"output_dir={tmp_path / 'knn'}"]
    cfg = load_config(EvalConfig, recipe, overrides(synthetic, random_encoder, tmp_path) + knn_args)
    knn = run_eval(cfg)
    assert knn["results"][0]["num_samples"] == NUM_VAL and knn["selected"][0]["status"] == "no_training"
    stale = overrides(synthetic, random_encoder, tmp_path) + [
        "data.frame_step=2",
        f"output_dir={tmp_path / 'stale'}",
    ]
    assert run_cli(["eval", "synthetic_motion"] + cli_args(stale)) == 2


@pytest.mark.slow
def test_heads_that_cannot_learn_are_reported_as_not_trained(synthetic, random_encoder, tmp_path, capsys):
    """At lr 1e-7 no head can fit its training set: no number is reported, and the command fails with advice."""
    args = overrides(synthetic, random_encoder, tmp_path) + [
        "optimization.lr=[1e-7]",
        "optimization.epochs=2",
    ]
    assert run_cli(["eval", "synthetic_motion"] + cli_args(args)) == 1
    err = capsys.readouterr().err
    assert "not trained: no probe head trained for label fraction(s) 1" in err
    assert "optimization.lr" in err and "optimization.epochs" in err and "labels" in err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    (selected,) = metrics["selected"]
    assert selected["status"] == "not_trained" and selected["name"] is None and selected["top1"] is None
    assert all(r["status"] == "not_trained" and r["top1"] is None for r in metrics["results"])
    assert any("did not train" in w for w in metrics["warnings"])
    assert not (tmp_path / "run" / "probes").exists()


@pytest.mark.slow
def test_a_bad_label_fails_before_any_feature_is_computed(synthetic, random_encoder, tmp_path, capsys):
    lines = (synthetic / "train_motion.csv").read_text().splitlines()
    path, _ = lines[4].rsplit(" ", 1)
    lines[4] = f"{path} 4"  # the recipe has 4 classes: 0..3
    bad = tmp_path / "train.csv"
    bad.write_text("\n".join(lines) + "\n")
    args = overrides(synthetic, random_encoder, tmp_path) + [
        f"data.train={bad}",
        f"cache.dir={tmp_path / 'cache'}",
    ]
    assert run_cli(["eval", "synthetic_motion"] + cli_args(args)) == 2
    err = capsys.readouterr().err
    assert f"data.train: {bad}:5: label 4 is outside [0, 4)" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_generic_csv_recipe_counts_classes(synthetic, random_encoder, tmp_path):
    same_features = ["data.frame_step=1", "cache.dtype=float32"]  # as synthetic_motion: the cache is reused
    args = overrides(synthetic, random_encoder, tmp_path) + ["data.num_workers=0"] + same_features
    cfg, source = load_eval_config("video_csv", args)
    assert cfg.data.num_classes == 0 and cfg.data.class_names is None
    report = run_eval(cfg, source)
    assert report["num_classes"] == 4 and report["class_names"] is None
    assert load_config(EvalConfig, tmp_path / "run" / "config.yaml").data.num_classes == 4


@pytest.mark.slow
def test_eval_linear_readout_with_label_fractions_uncached(synthetic, random_encoder, tmp_path):
    cfg = load_config(
        EvalConfig,
        load_eval_config("synthetic_appearance")[1],
        overrides(synthetic, random_encoder, tmp_path, "appearance")
        + ["cache.dir=null", "probe.kind=linear", "label_fractions=[0.5, 1.0]", "optimization.lr=[0.03]"]
        + ["data.num_workers=2"],  # the clips come through worker processes
    )
    report = run_eval(cfg)
    assert [r["fraction"] for r in report["results"]] == [0.5, 1.0]
    trained = [r["train_samples"] for r in report["results"]]
    selection = report["protocol"]["selection_samples"]
    assert trained[1] + selection == 24 and trained[0] < trained[1]
    assert set(report["best"]) == {"0.5", "1"}
    probe = load_probe(tmp_path / "run" / "probes" / report["best"]["1"])
    assert probe.arch.standardize and probe.model.norm.std.min() > 0


@pytest.mark.slow
def test_eval_cli_on_tiny_pretrained_encoder(synthetic, tmp_path):
    """The tiny pretraining recipe (shortened), then the attentive probe on its exported target encoder."""
    short = {
        "optimization.epochs": 1, "optimization.ipe": 3, "data.synthetic_videos": 8, "data.synthetic_resolution": 48,
        "data.resolution": 48, "data.num_frames": 8, "data.synthetic_num_frames": 8, "data.batch_size": 2,
        "model.pred_depth": 1, "runtime.threads": 1, "logging.tensorboard": "false",
        "logging.metrics_format": "csv",
    }  # fmt: skip
    cmd = [sys.executable, "-m", "vjepa", "pretrain", "tiny_cpu", "--run-dir", str(tmp_path / "pretrain")]
    cmd += [a for k, v in short.items() for a in ("--set", f"{k}={v}")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    encoder_dir = tmp_path / "pretrain" / "export"
    args = overrides(synthetic, encoder_dir, tmp_path)
    assert run_cli(["eval", "synthetic_motion"] + cli_args(args)) == 0
    metrics = check_outputs(tmp_path / "run", num_settings=2)
    assert metrics["encoder"]["which"] == "target_encoder"


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="no torchrun",
)
def test_eval_under_torchrun_scores_every_sample_once(synthetic, random_encoder, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    args = overrides(synthetic, random_encoder, tmp_path)
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "vjepa", "eval", "synthetic_motion"]
    cmd += [a for o in args for a in ("--set", o)] + ["--set", "threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = check_outputs(tmp_path / "run", num_settings=2)
    assert metrics["world_size"] == 2


@pytest.mark.slow
def test_eval_on_image_folders_with_augmentation(random_encoder, tmp_path):
    import matplotlib.image
    import numpy as np

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(("dark", "bright")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                base = 40 if c == 0 else 200
                matplotlib.image.imsave(
                    folder / f"{i}.png", rng.integers(base - 30, base + 30, (40, 48, 3), dtype=np.uint8)
                )
    cfg = load_config(
        EvalConfig,
        None,
        [
            f"encoder.checkpoint={random_encoder}",
            "data.kind=image",
            f"data.train={tmp_path / 'train'}",
            f"data.val={tmp_path / 'val'}",
            "data.num_classes=2",
            "data.num_frames=8",
            "data.resolution=32",
            "data.train_augment=true",
            "optimization.epochs=6",
            "optimization.min_steps=0",
            "optimization.batch_size=4",
            "optimization.lr=[0.01]",
            "optimization.weight_decay=[0.01]",
            "selection.split=val",
            "device=cpu",
            f"output_dir={tmp_path / 'run'}",
        ],
    )
    report = run_eval(cfg)
    (result,) = report["results"]
    assert result["num_samples"] == 8 and len(result["history"]) == 6
    assert report["class_names"] == ["bright", "dark"]
    assert (tmp_path / "run" / "metrics.json").is_file()
