"""The I/O leaf (vjepa.io) and the error contract: user errors are VjepaErrors (one line from the CLI), bugs
keep their tracebacks; every on-disk format carries a versioned header that is checked on read, and files
written before a format had a header still load."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import vjepa.summary
from vjepa.cli import main
from vjepa.errors import InvalidArgument, VjepaError
from vjepa.io import (
    DEMO_RESULTS_FORMAT,
    EXPORT_FORMAT,
    FEATURE_CACHE_FORMAT,
    FORMATS,
    PROBE_RESULTS_FORMAT,
    RUN_FORMAT,
    CheckpointError,
    FileFormat,
    FormatError,
    atomic_write,
    load_safetensors,
    read_json,
    safe_torch_load,
    stale_temporaries,
    write_json,
)
from vjepa.models import build_encoder
from vjepa.pretrain.rundir import HEADER_FILE, check_header, inspect_run_dir, saved_config, write_header


def run_cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code)


# ------------------------------------------------------------------------------------------------- errors


def test_a_vjepa_error_is_not_a_value_error() -> None:
    assert not issubclass(VjepaError, ValueError)
    assert issubclass(InvalidArgument, VjepaError) and issubclass(FormatError, VjepaError)
    assert issubclass(CheckpointError, VjepaError)


def test_the_cli_prints_a_user_error_as_one_line(monkeypatch, capsys) -> None:
    def user_error(**kwargs) -> None:
        raise InvalidArgument("--frames must be >= 1, got 0")

    monkeypatch.setattr(vjepa.summary, "print_model_table", user_error)
    assert run_cli(["models"]) == 2
    err = capsys.readouterr().err
    assert err == "vjepa models: error: --frames must be >= 1, got 0\n"


def test_the_cli_lets_a_bug_raise_with_its_traceback(monkeypatch) -> None:
    def bug(**kwargs) -> None:
        raise ValueError("a bug in vjepa")

    monkeypatch.setattr(vjepa.summary, "print_model_table", bug)
    with pytest.raises(ValueError, match="a bug in vjepa"):
        main(["models"])


def test_a_bug_shows_a_traceback_from_the_command() -> None:
    code = (
        "import vjepa.summary, vjepa.cli\n"
        "def bug(**kwargs):\n    raise KeyError('a bug in vjepa')\n"
        "vjepa.summary.print_model_table = bug\n"
        "vjepa.cli.main(['models'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" in done.stderr and "a bug in vjepa" in done.stderr


def test_bad_command_line_values_are_user_errors(tmp_path, capsys) -> None:
    assert run_cli(["make-data", "synthetic", str(tmp_path / "d"), "--resolution", "4"]) == 2
    assert "resolution >= 8" in capsys.readouterr().err
    assert run_cli(["encode", "--model", "vit_enormous"]) == 2
    assert "unknown model size 'vit_enormous'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ headers


def test_format_names_are_distinct() -> None:
    names = [f.name for f in FORMATS]
    assert len(names) == len(set(names))


def test_a_header_is_written_and_checked(tmp_path) -> None:
    fmt = FileFormat("vjepa-test", 3)
    write_json(tmp_path / "a.json", {"x": 1}, fmt)
    data = json.loads((tmp_path / "a.json").read_text())
    assert data == {"format": "vjepa-test", "format_version": 3, "x": 1}
    assert read_json(tmp_path / "a.json", fmt) == data
    assert fmt.metadata() == {"format": "vjepa-test", "format_version": "3"}


def test_an_unknown_version_is_refused_naming_the_file(tmp_path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"format": PROBE_RESULTS_FORMAT.name, "format_version": 99, "selected": []}))
    with pytest.raises(
        FormatError, match=r"metrics\.json: vjepa-probe-results version 99; this vjepa reads version 1"
    ):
        read_json(path, PROBE_RESULTS_FORMAT)
    current = FileFormat("vjepa-test", 3)  # this vjepa writes version 3; version 2 is an older vjepa's
    with pytest.raises(
        FormatError,
        match=r"a\.json: a vjepa-test file of an older vjepa \(version 2\); this vjepa reads version 3$",
    ):
        current.check({"format": "vjepa-test", "format_version": 2}, "a.json")
    with pytest.raises(
        FormatError, match=r"a\.json: vjepa-test version 0; this vjepa reads version 3 \(a file of a newer"
    ):
        current.check({"format": "vjepa-test", "format_version": 0}, "a.json")  # no vjepa wrote version 0
    path.write_text(json.dumps({"format": "something-else", "format_version": 1}))
    with pytest.raises(
        FormatError, match=r"metrics\.json: format 'something-else', expected 'vjepa-probe-results'"
    ):
        read_json(path, PROBE_RESULTS_FORMAT)
    path.write_text("[1, 2]")
    with pytest.raises(FormatError, match=r"metrics\.json: expected a JSON object"):
        read_json(path, PROBE_RESULTS_FORMAT)
    path.write_text("{not json")
    with pytest.raises(FormatError, match=r"metrics\.json: not valid JSON"):
        read_json(path)


def test_headerless_files_of_older_vjepa_still_load(tmp_path) -> None:
    for fmt in (PROBE_RESULTS_FORMAT, DEMO_RESULTS_FORMAT, RUN_FORMAT):
        path = tmp_path / f"{fmt.name}.json"
        path.write_text(json.dumps({"selected": [{"top1": 50.0}]}))
        assert read_json(path, fmt)["selected"] == [{"top1": 50.0}]
        assert fmt.check({}, path) == 1
    for fmt in (EXPORT_FORMAT, FEATURE_CACHE_FORMAT):  # these always had a header: none means not ours
        with pytest.raises(FormatError, match="format None"):
            fmt.check({}, tmp_path / "x.json")


def test_an_export_of_an_unknown_version_is_refused(tmp_path) -> None:
    from vjepa.checkpoint import load_pretrained, save_pretrained

    encoder = build_encoder("vit_tiny", num_frames=2, resolution=16)
    out = save_pretrained(tmp_path / "ckpt", {"target_encoder": encoder}, encoder.config)
    config = json.loads((out / "config.json").read_text())
    assert (config["format"], config["format_version"]) == ("vjepa", 1)
    load_pretrained(out)
    config["format_version"] = 2
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError, match=r"ckpt/config\.json: vjepa version 2; this vjepa reads version 1"
    ):
        load_pretrained(out)


def test_run_folder_header(tmp_path) -> None:
    (tmp_path / "config.yaml").write_text("{}\n")
    run = inspect_run_dir(tmp_path)
    assert check_header(run) == 1  # a run folder of an older vjepa: no run.json, version 1
    assert saved_config(run) == {}
    write_header(run)
    assert json.loads((tmp_path / HEADER_FILE).read_text()) == {"format": "vjepa-run", "format_version": 1}
    assert check_header(run) == 1
    (tmp_path / HEADER_FILE).write_text(json.dumps({"format": "vjepa-run", "format_version": 7}))
    with pytest.raises(FormatError, match=r"run\.json: vjepa-run version 7"):
        saved_config(run)


# ---------------------------------------------------------------------------------------- writes and loads


def test_atomic_write_leaves_nothing_on_failure_and_stale_files_are_found(tmp_path) -> None:
    def fail(tmp) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "sub" / "f.txt", fail)
    assert list((tmp_path / "sub").iterdir()) == []
    (tmp_path / ".f.txt.abcd1234.tmp").write_text("killed")
    (tmp_path / "user.tmp").write_text("not ours")
    assert [p.name for p in stale_temporaries(tmp_path)] == [".f.txt.abcd1234.tmp"]


def test_safe_loads_name_the_file(tmp_path) -> None:
    path = tmp_path / "obj.pt"
    torch.save({"x": torch.zeros(2), "bad": FileFormat("x", 1)}, path)
    with pytest.raises(CheckpointError, match=r"obj\.pt: refused to load: the file holds a pickled Python"):
        safe_torch_load(path)
    torch.save({"x": torch.zeros(2)}, path)
    assert torch.equal(safe_torch_load(path, mmap=True)["x"], torch.zeros(2))
    with pytest.raises(CheckpointError, match=r": a folder, not a checkpoint file \(hint\)"):
        safe_torch_load(tmp_path, folder_hint=lambda p: " (hint)")
    (tmp_path / "w.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(FormatError, match=r"w\.safetensors: not a readable safetensors file"):
        load_safetensors(tmp_path / "w.safetensors", FormatError)
