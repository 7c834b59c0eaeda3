"""Hostile configs and index files: every one is refused (or, when it is valid, read as meant) with one line
naming the file and the line or key, before any model is built or any file is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vjepa.cli import main
from vjepa.config import ConfigError, load_config, parse_yaml, read_yaml
from vjepa.data.index import IndexFormatError, VideoRecord, load_mixed_index, read_csv_index, read_path_list
from vjepa.errors import VjepaError
from vjepa.pretrain import loop, setup
from vjepa.pretrain.config import PretrainConfig, load_run_config
from vjepa.probe.config import EvalConfig


def _vjepa(capsys, *argv: str) -> tuple[int, str]:
    """Run the CLI in-process: (exit code, stderr). An uncaught exception (a traceback) fails the test."""
    with pytest.raises(SystemExit) as code:
        main(list(argv))
    return int(code.value.code), capsys.readouterr().err


# ------------------------------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimization.lr=.nan", "optimization.lr must be a finite number, got nan"),
        ("optimization.lr=-0.001", "optimization.lr must be > 0"),
        ("optimization.lr=.inf", "optimization.lr must be a finite number"),
        ("optimization.final_lr=-1e-6", "optimization.final_lr must be >= 0"),
        ("optimization.weight_decay=nan", "optimization.weight_decay must be a finite number"),
        ("optimization.betas=[0.9, 1.5]", "optimization.betas[1] must be < 1"),
        ("optimization.eps=0", "optimization.eps must be > 0"),
        ("optimization.epochs=100000000000000000000", "optimization.epochs must fit in 64 bits"),
        ("data.num_frames=7", "data.num_frames (7) must be a multiple of model.tubelet_size (2)"),
        ("data.resolution=100", "data.resolution (100) must be a multiple of the patch size (16"),
        ("model.pred_embed_dim=100", "model.pred_embed_dim (100) must be a multiple of the predictor's head"),
        ("data.random_resize_scale=[0.0, 1.0]", "data.random_resize_scale[0] must be > 0"),
        ("data.random_resize_scale=[0.9, 0.3]", "data.random_resize_scale must be [low, high]"),
        ("data.dataset_weights=[-1]", "data.dataset_weights[0] must be >= 0"),
        ("data.max_short_side=0", "data.max_short_side must be >= 1, 'auto' or null"),
        ("masks.kind=random_tube", None),
        ("masks.random_tube_ratios=[1.5]", "masks.random_tube_ratios[0] must be < 1"),
        ("runtime.seed=-3", "runtime.seed must be >= 0"),
        ("data.batch_size=0", "data.batch_size must be >= 1"),
    ],
)
def test_invalid_numbers_are_refused_naming_the_key(tmp_path, override: str, message: str | None) -> None:
    overrides = ["data.datasets=[x.csv]", "data.dataset_weights=[1]", override]
    if message is None:
        load_config(PretrainConfig, None, overrides)  # valid
        return
    with pytest.raises(ConfigError, match="^config: " + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):  # fmt: skip
        load_config(PretrainConfig, None, overrides)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimization.lr=[1e-3, .nan]", "optimization.lr[1] must be a finite number"),
        ("optimization.lr=[-1e-3]", "optimization.lr[0] must be > 0"),
        ("probe.knn_temperature=0", "probe.knn_temperature must be > 0"),
        ("data.crop_scale=[0, 1]", "data.crop_scale[0] must be > 0"),
        ("cache.max_gb=-1", "cache.max_gb must be > 0"),
        ("seed=-1", "seed must be >= 0"),
    ],
)
def test_invalid_eval_numbers_are_refused_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(EvalConfig, None, [override])


def test_invalid_values_on_the_command_line_are_one_line(capsys, tmp_path) -> None:
    code, err = _vjepa(
        capsys, "pretrain", "tiny_cpu", "--set", "optimization.lr=.nan", "--run-dir", str(tmp_path)
    )
    assert code == 2 and err.count("\n") == 1 and "optimization.lr must be a finite number" in err


# ---------------------------------------------------------------------------------------- YAML bombs


def test_duplicate_keys_name_both_lines(tmp_path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("optimization:\n  lr: 1.0e-3\n  epochs: 2\n  lr: 5.0e-4\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml:4: duplicate key 'lr' \(first given on line 2\)"):
        read_yaml(path)
    # the same key in two different sections is fine; a merge key may be overridden
    assert parse_yaml("a: {lr: 1}\nb: {lr: 2}\n", "x") == {"a": {"lr": 1}, "b": {"lr": 2}}
    assert parse_yaml("base: &b {x: 1, y: 2}\nrun:\n  <<: *b\n  y: 3\n", "x")["run"] == {"x": 1, "y": 3}


def test_alias_bomb_is_refused_without_expanding_it(tmp_path) -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for k in range(1, 9):  # 9^9 = 387 million strings once expanded
        prev, cur = chr(ord("a") + k - 1), chr(ord("a") + k)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"bomb\.yaml:\d+: aliases expand the document past 100000 values"):
        read_yaml(path)
    with pytest.raises(ConfigError, match="a recursive alias"):
        parse_yaml("a: &a [*a]\n", "x")


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path) -> None:
    for depth in (100, 20000):
        path = tmp_path / f"deep{depth}.yaml"
        path.write_text("data: " + "[" * depth + "]" * depth + "\n")
        with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
            read_yaml(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
            r"c\.yaml:1: not UTF-8 text \(byte 0x89 at offset 0\)",
        ),
        (b"data:\n  datasets: [caf\xe9.csv]\n", r"c\.yaml:2: not UTF-8 text \(byte 0xe9 at offset 22\)"),
        (b"data:\x00\n", r"c\.yaml:1: invalid YAML: special characters are not allowed"),
        (b"- 1\n- 2\n", "the top level must be a mapping"),
        (b"a: [1,\n", r"c\.yaml:2:1: invalid YAML"),
        (b"!!python/object/apply:os.system ['echo hacked']\n", "could not determine a constructor"),
    ],
)
def test_bad_config_files_are_one_line_naming_the_file(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        read_yaml(path)
    assert "\n" not in str(info.value)


def test_bom_and_folder_configs(tmp_path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffoptimization:\n  lr: 2.0e-4\n".encode())
    assert read_yaml(path) == {"optimization": {"lr": 2.0e-4}}
    with pytest.raises(ConfigError, match="a folder, not a config file"):
        read_yaml(tmp_path)


# --------------------------------------------------------------------------- validation before work


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
def test_empty_config_fails_on_the_data_before_building_a_model(tmp_path, monkeypatch, content) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(content)
    config, run_dir = load_run_config(str(path), ["runtime.device=cpu"], tmp_path / "run", False)

    def no_model(_config):
        raise AssertionError("a model was built before the data was checked")

    monkeypatch.setattr(setup, "build_objective", no_model)
    with pytest.raises(ConfigError, match="data.datasets is empty"):
        loop.pretrain(config, run_dir)
    assert not run_dir.exists()


def test_failed_start_leaves_nothing_that_blocks_the_corrected_run(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    small = [
        "--set", "data.batch_size=2", "--set", "optimization.epochs=1", "--set", "optimization.ipe=1",
        "--set", "data.num_frames=8", "--set", "data.resolution=48", "--set", "model.pred_depth=1",
        "--set", "logging.tensorboard=false", "--set", "runtime.threads=1", "--set", "runtime.device=cpu",
        "--set", "data.synthetic_videos=4", "--set", "data.synthetic_resolution=48", "--run-dir", str(run),
    ]  # fmt: skip
    missing = tmp_path / "missing.csv"
    code, err = _vjepa(capsys, "pretrain", "tiny_cpu", "--set", "data.source=csv",
                       "--set", f"data.datasets=[{missing}]", *small)  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert f"data.datasets[0]: {missing}: the index file does not exist" in err
    assert not run.exists() or not any(run.iterdir())
    code, err = _vjepa(capsys, "pretrain", "tiny_cpu", *small)  # the corrected command is not refused
    assert code == 0, err
    assert (run / "config.yaml").is_file()


def test_eval_names_the_key_of_a_missing_index(tmp_path, capsys) -> None:
    code, err = _vjepa(capsys, "eval", "synthetic_motion", "--set", f"data.train={tmp_path}/nope.csv",
                       "--set", f"data.val={tmp_path}/nope.csv", "--set", f"output_dir={tmp_path}/out")  # fmt: skip
    assert code == 2 and "data.train" in err and "nope.csv: no such index file" in err
    assert err.count("\n") == 1


# ------------------------------------------------------------------------------------------ indexes


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"/a.mp4 1\n/b\xff.mp4 2\n", r"i\.csv:2: not UTF-8 text \(byte 0xff"),
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}", r"i\.csv:1: not UTF-8 text \(byte 0x93"),
        (b"/a.mp4 1\n/b.mp4 99999999999999999999\n", r"i\.csv:2: label 99999999999999999999 does not fit"),
        (b"/a.mp4 1\n/b.mp4 -9223372036854775809\n", r"i\.csv:2: label .* does not fit in 64 bits"),
    ],
)
def test_bad_index_files_name_the_file_and_line(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "i.csv"
    path.write_bytes(content)
    with pytest.raises(IndexFormatError, match=message) as info:
        read_csv_index(path)
    assert "\n" not in str(info.value)


def test_npy_file_given_as_an_index(tmp_path) -> None:
    path = tmp_path / "features.npy"
    np.save(path, np.zeros(4, dtype=np.float32))
    with pytest.raises(IndexFormatError, match=r"features\.npy:1: not UTF-8 text"):
        read_path_list(path)


def test_bom_quotes_and_int64_labels_are_read_as_meant(tmp_path) -> None:
    path = tmp_path / "i.csv"
    text = '/v/a.mp4 1\n"/v/my clip.mp4" 2\n\'/v/b c.mp4\' 3\n"/v/say ""hi"".mp4" 4\n/v/z.mp4 9223372036854775807\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert read_csv_index(path) == [
        VideoRecord("/v/a.mp4", 1),
        VideoRecord("/v/my clip.mp4", 2),
        VideoRecord("/v/b c.mp4", 3),
        VideoRecord('/v/say "hi".mp4', 4),
        VideoRecord("/v/z.mp4", 2**63 - 1),
    ]
    listing = tmp_path / "l.txt"
    listing.write_bytes(b'\xef\xbb\xbf"/v/my clip.mp4"\n')
    assert read_path_list(listing) == [VideoRecord("/v/my clip.mp4", 0)]


def test_a_megabyte_line_is_shortened_in_the_message(tmp_path) -> None:
    path = tmp_path / "i.csv"
    path.write_text("/a.mp4 1\n/" + "p" * 2**20 + ".mp4 label\n")
    with pytest.raises(IndexFormatError) as info:
        read_csv_index(path)
    assert "i.csv:2:" in str(info.value) and len(str(info.value)) < 1000


def test_mixed_index_errors_name_the_config_key(tmp_path) -> None:
    (tmp_path / "i.csv").write_text("/a.mp4 1\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(
        IndexFormatError, match=r"^data\.datasets\[1\]: .*empty\.csv: the index lists no files"
    ):
        load_mixed_index([tmp_path / "i.csv", empty], keys=["data.datasets[0]", "data.datasets[1]"])


def test_every_user_error_is_a_vjepa_error() -> None:
    from vjepa.checkpoint import CheckpointError
    from vjepa.config import InvalidValue
    from vjepa.data.errors import TooManyFailuresError, VideoDecodeError, VideoTooShortError
    from vjepa.data.index import IndexNotFoundError
    from vjepa.data.workers import WorkerDied
    from vjepa.errors import InvalidArgument, OutOfMemory
    from vjepa.io import FormatError
    from vjepa.pretrain.loop import TrainingDiverged
    from vjepa.pretrain.rundir import RunDirError
    from vjepa.probe.data import LabelError
    from vjepa.probe.features import CacheError
    from vjepa.probe.selection import ProbeNotTrainedError

    for cls in (ConfigError, IndexFormatError, IndexNotFoundError, VideoDecodeError, VideoTooShortError,
                CheckpointError, RunDirError, CacheError, InvalidValue, InvalidArgument, FormatError,
                LabelError, ProbeNotTrainedError, TooManyFailuresError, TrainingDiverged, WorkerDied,
                OutOfMemory):  # fmt: skip
        assert issubclass(cls, VjepaError)
    # Not a ValueError: the CLI catches VjepaError only, so a ValueError (a bug) keeps its traceback.
    assert not issubclass(VjepaError, ValueError)


def test_path_display_escapes_and_shortens() -> None:
    from vjepa.errors import shown

    assert shown("a\x00b\nc") == "a\\x00b\\nc"
    assert shown("é/ü.mp4") == "é/ü.mp4"
    long = shown("/" + "d" * 10_000)
    assert len(long) < 300 and "chars)" in long
    assert Path(shown("/x/y.mp4")).name == "y.mp4"


def test_out_of_memory_in_eval_or_extract_is_one_line(monkeypatch, capsys) -> None:
    import torch

    import vjepa.cli as cli

    def extract(args) -> int:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB\nmore details")

    monkeypatch.setattr(cli, "_extract", extract)
    with pytest.raises(SystemExit) as done:
        main(["extract", "x.mp4", "--out", "o", "--checkpoint", "c", "--encoder", "encoder"])
    assert done.value.code == 2
    assert capsys.readouterr().err == (
        "vjepa extract: error: out of cuda memory (CUDA out of memory. Tried to allocate 8.00 GiB); "
        "use a smaller batch (--batch-size, optimization.batch_size)\n"
    )

    def cpu_refused(args) -> int:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory"
        )

    monkeypatch.setattr(cli, "_extract", cpu_refused)
    with pytest.raises(SystemExit):
        main(["extract", "x.mp4", "--out", "o", "--checkpoint", "c", "--encoder", "encoder"])
    assert capsys.readouterr().err.startswith("vjepa extract: error: out of cpu memory ([enforce fail")


@pytest.mark.parametrize("kind", ["worker", "memory"])
def test_pretraining_stopped_by_a_dead_worker_or_memory_exits_like_a_diverged_run(
    kind, tmp_path, monkeypatch, capsys
):
    from vjepa.data.workers import WorkerDied
    from vjepa.errors import OutOfMemory

    def stopped(*args, **kwargs):
        error = WorkerDied if kind == "worker" else OutOfMemory
        raise error("... the run stopped at step 7. The last checkpoint: latest.pt (resumes at step 5)")

    monkeypatch.setattr(loop, "pretrain", stopped)
    with pytest.raises(SystemExit) as done:
        main(["pretrain", "tiny_cpu", "--run-dir", str(tmp_path / "run")])
    assert done.value.code == 1  # as for a NaN loss or too many bad videos: the run started, then stopped
    assert capsys.readouterr().err == (
        "vjepa pretrain: stopped: ... the run stopped at step 7. The last checkpoint: latest.pt (resumes at step 5)\n"
    )
