"""Checkpoints with bad values are refused naming the tensor; run folders load wherever a checkpoint does;
kill -9 at the export and between the latest and the kept checkpoint loses nothing (the resumed run
finishes what the killed one did not, reports the last real loss and removes the temporaries)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bad_inputs import poisoned_state
from pretrain_helpers import tiny_config
from vjepa.checkpoint import CheckpointError, load_pretrained, load_strict, save_pretrained
from vjepa.cli import main
from vjepa.models import VideoEncoder
from vjepa.models.registry import EncoderConfig
from vjepa.pretrain.loop import pretrain
from vjepa.pretrain.state import load_training_state

TESTS = Path(__file__).parent
CFG = EncoderConfig(embed_dim=32, depth=1, num_heads=4, num_frames=8, resolution=32)
KEY = "blocks.0.attn.qkv.weight"


def _vjepa(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as code:
        main(list(argv))
    printed = capsys.readouterr()
    return int(code.value.code), printed.out, printed.err


@pytest.fixture()
def ours(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_pretrained(tmp_path / "ckpt", {"target_encoder": VideoEncoder(CFG)}, CFG)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("nan", f"'{KEY}' holds 1 non-finite value\\(s\\) \\(NaN or infinity\\)"),
        ("inf", f"'{KEY}' holds 1 non-finite value"),
        ("int32", f"'{KEY}' has dtype torch.int32, not a floating-point type .*refused rather than cast"),
    ],
)
def test_bad_values_in_our_format_are_refused_naming_the_tensor(ours, kind, message) -> None:
    weights = ours / "model.safetensors"
    flat = load_file(weights)
    state = {k.partition(".")[2]: v for k, v in flat.items()}
    save_file({f"target_encoder.{k}": v for k, v in poisoned_state(state, KEY, kind).items()}, weights)
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(ours)


@pytest.mark.parametrize("kind", ["nan", "int32"])
def test_bad_values_in_official_checkpoints_are_refused(official_fixture, tmp_path, kind) -> None:
    checkpoint = dict(official_fixture["checkpoint"])
    key = next(k for k in checkpoint["target_encoder"] if k.endswith("blocks.0.mlp.fc1.weight"))
    checkpoint["target_encoder"] = poisoned_state(checkpoint["target_encoder"], key, kind)
    path = tmp_path / "poisoned.pth.tar"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"\['target_encoder'\]: 'blocks.0.mlp.fc1.weight'"):
        load_pretrained(path, num_heads=4)


def test_load_strict_refuses_nan_in_training_and_probe_states() -> None:
    model = torch.nn.Linear(3, 2)
    state = poisoned_state(model.state_dict(), "weight", "nan")
    with pytest.raises(CheckpointError, match="'weight' holds 1 non-finite"):
        load_strict(model, state, "state.pt")


def test_extract_with_nan_weights_writes_nothing(ours, tmp_path, capsys) -> None:
    weights = ours / "model.safetensors"
    flat = load_file(weights)
    flat[f"target_encoder.{KEY}"].view(-1)[0] = float("nan")
    save_file(flat, weights)
    (tmp_path / "v.txt").write_text("/none.mp4\n")
    out = tmp_path / "features"
    code, _, err = _vjepa(capsys, "extract", str(tmp_path / "v.txt"), "--checkpoint", str(ours),
                          "--encoder", "target_encoder", "--out", str(out))  # fmt: skip
    assert code == 2 and "non-finite" in err and err.count("\n") == 1 and not out.exists()


# -------------------------------------------------------------------------------------- run folders


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("pretrain") / "run"
    pretrain(tiny_config(["optimization.epochs=1", "optimization.ipe=2", "logging.export=true"]), run)
    return run


def test_a_run_folder_loads_wherever_a_checkpoint_does(run_folder, tmp_path, capsys) -> None:
    loaded = load_pretrained(run_folder)
    assert loaded.meta["source"] == str(run_folder / "export") and loaded.meta["run_dir"] == str(run_folder)
    assert "is a pretraining run folder: loading its export" in capsys.readouterr().err
    code, out, err = _vjepa(
        capsys, "encode", "--checkpoint", str(run_folder), "--frames", "8", "--size", "48"
    )
    assert code == 0, err
    (tmp_path / "none.txt").write_text(f"{tmp_path}/none.mp4\n")
    code, out, err = _vjepa(capsys, "extract", str(tmp_path / "none.txt"), "--checkpoint", str(run_folder),
                            "--encoder", "target_encoder", "--out", str(tmp_path / "f"), "--frames", "8",
                            "--resolution", "48")  # fmt: skip
    assert code == 1 and "missing file" in out and f"of {run_folder / 'export'}" in out  # it names the export
    from vjepa.probe.config import EvalConfig
    from vjepa.probe.loop import frozen_encoder

    cfg = EvalConfig()
    cfg.encoder.checkpoint = str(run_folder)
    cfg.data.num_frames, cfg.data.resolution = 8, 48
    encoder, _ = frozen_encoder(cfg, torch.device("cpu"))
    assert encoder.config.embed_dim == 192


def test_a_run_folder_without_export_names_its_latest_checkpoint(run_folder, tmp_path) -> None:
    copy = tmp_path / "unfinished"
    (copy / "checkpoints").mkdir(parents=True)
    (copy / "config.yaml").write_text((run_folder / "config.yaml").read_text())
    (copy / "checkpoints/latest.pt").write_bytes((run_folder / "checkpoints/latest.pt").read_bytes())
    with pytest.raises(CheckpointError, match=r"without a complete export .*checkpoints/latest\.pt instead"):
        load_pretrained(copy)
    assert load_pretrained(copy / "checkpoints/latest.pt").encoder().config.embed_dim == 192


def test_wrong_things_given_as_checkpoints_are_named_for_what_they_are(run_folder, ours, tmp_path, capsys):
    code, _, err = _vjepa(capsys, "convert", str(run_folder), str(tmp_path / "x"))
    assert code == 2 and "a folder, not a checkpoint file (a pretraining run folder" in err
    code, _, err = _vjepa(capsys, "convert", str(ours), str(tmp_path / "x"))
    assert code == 2 and "already in vjepa's format" in err
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = _vjepa(capsys, "convert", str(fifo), str(tmp_path / "x"))
    assert code == 2 and "not a regular file" in err
    code, _, err = _vjepa(capsys, "extract", str(fifo), "--checkpoint", str(ours), "--encoder", "encoder",
                          "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "not a regular file or folder" in err
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "v.mp4").write_bytes(b"\0" * 100)
    code, _, err = _vjepa(capsys, "extract", str(tmp_path / "v.mp4"), "--checkpoint", str(ours), "--encoder",
                          "target_encoder", "--out", str(tmp_path / "a_file"))  # fmt: skip
    assert code == 2 and "a_file: exists and is not a folder" in err and "Errno" not in err
    (tmp_path / "empty.csv").write_text("\n")
    code, _, err = _vjepa(capsys, "extract", str(tmp_path / "empty.csv"), "--checkpoint", str(ours),
                          "--encoder", "target_encoder", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "empty.csv: the index lists no files" in err
    code, _, err = _vjepa(capsys, "extract", str(tmp_path / "v.mp4"), "--checkpoint", str(ours), "--encoder",
                          "target_encoder", "--out", str(tmp_path / "o"), "--num-frames", "7", "--resolution", "100")  # fmt: skip
    assert code == 2 and "--num-frames 7 is not a multiple of the tubelet size 2" in err


@pytest.mark.parametrize("what", ["empty", "folder", "noise"])
def test_masks_on_a_bad_video_is_one_line(tmp_path, capsys, what) -> None:
    video = tmp_path / "v.mp4"
    if what == "empty":
        video.write_bytes(b"")
    elif what == "folder":
        video.mkdir()
    else:
        video.write_bytes(os.urandom(5000))
    code, _, err = _vjepa(capsys, "masks", "--video", str(video), "--out", str(tmp_path / "m.png"))
    assert code == 2 and err.count("\n") == 1 and str(video) in err
    assert {"empty": "empty file", "folder": "a folder", "noise": "cannot open"}[what] in err


# ----------------------------------------------------------------------------------- kill -9 gaps


def _killed_run(run: Path, where: str, overrides: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(TESTS / "kill_driver.py"), str(run), where, json.dumps(overrides)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def _temporaries(run: Path) -> list[Path]:
    return [p for p in run.rglob(".*.tmp")]


@pytest.mark.slow
def test_kill_during_the_export_then_resume_finishes_it(tmp_path, capsys) -> None:
    overrides = ["optimization.epochs=1", "logging.export=true"]  # 5 steps; latest.pt after step 5
    run = tmp_path / "run"
    _killed_run(run, "export", overrides)
    assert [p.stat().st_size for p in _temporaries(run)] == [1000]  # the half-written export
    assert not (run / "export/model.safetensors").exists()
    state = load_training_state(run / "checkpoints/latest.pt")
    assert state["step"] == 5

    result = pretrain(tiny_config(overrides), run, resume=True)
    out = capsys.readouterr().out
    assert (result.start_step, result.end_step) == (5, 5)
    assert math.isfinite(result.last_loss) and result.last_loss == state["loss"]
    assert f"(last loss {state['loss']:.4f})" in out and "nan" not in out
    assert _temporaries(run) == [] and "removed" in out
    exported = load_pretrained(run / "export")
    assert exported.meta["steps"] == 5
    for key, value in state["target_encoder"].items():
        assert torch.equal(exported.models["target_encoder"].state_dict()[key], value)


@pytest.mark.slow
def test_kill_between_latest_and_kept_checkpoint_loses_nothing(tmp_path, capsys) -> None:
    overrides = ["optimization.epochs=2", "logging.checkpoint_every=5", "logging.keep_every=5"]
    run = tmp_path / "run"
    _killed_run(run, "kept", overrides)
    latest = run / "checkpoints/latest.pt"
    assert load_training_state(latest)["step"] == 5
    assert not (run / "checkpoints/step_0000005.pt").exists() and len(_temporaries(run)) == 1
    at_kill = latest.read_bytes()

    result = pretrain(tiny_config(overrides), run, resume=True)
    assert (result.start_step, result.end_step) == (5, 10)
    assert (run / "checkpoints/step_0000005.pt").read_bytes() == at_kill  # exactly the state of step 5
    assert load_training_state(run / "checkpoints/step_0000010.pt")["step"] == 10
    assert _temporaries(run) == []
    assert "the kept checkpoint the last session was killed before writing" in capsys.readouterr().out
