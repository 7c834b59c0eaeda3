"""The set-up behind `make demo` / `make test` (tools/setup_venv.py and the Makefile's Python check).

A real install takes minutes, so pip is faked: a venv made without pip gets a `pip` package that logs its
arguments and fails for `torch==0.0.0`, as the real one does for a version that does not exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv as venv_module
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FAKE_PIP = """\
import sys
from pathlib import Path
with open(Path(sys.prefix) / "pip-calls.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if "torch==0.0.0" in sys.argv:
    print("ERROR: No matching distribution found for torch==0.0.0", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the set-up script beside a pyproject.toml, and a venv there whose pip is fake."""
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "setup_venv.py", tmp_path / "tools")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    venv_module.create(tmp_path / ".venv", with_pip=False)
    (site,) = (tmp_path / ".venv" / "lib").glob("python*/site-packages")
    (site / "pip").mkdir()
    (site / "pip" / "__init__.py").write_text("")
    (site / "pip" / "__main__.py").write_text(FAKE_PIP)
    return tmp_path


def run_setup(project: Path, torch_spec: str = "torch==2.13.0", **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(project / "tools" / "setup_venv.py"), "--torch-spec", torch_spec]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def pip_calls(project: Path) -> list[str]:
    log = project / ".venv" / "pip-calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_installs_once_then_only_when_pyproject_or_torch_spec_change(project):
    first = run_setup(project)
    assert first.returncode == 0, first.stderr
    assert pip_calls(project) == ["install -q --upgrade pip", "install torch==2.13.0", "install -e .[test]"]

    again = run_setup(project)  # up to date: no pip, no output
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert len(pip_calls(project)) == 3

    (project / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["numpy"]\n')
    changed = run_setup(project)
    assert changed.returncode == 0 and "(pyproject.toml changed)" in changed.stdout
    assert len(pip_calls(project)) == 6

    spec = "torch==2.5.1 --index-url https://download.pytorch.org/whl/cpu"  # several pip arguments
    changed = run_setup(project, spec)
    assert changed.returncode == 0 and "(TORCH_SPEC changed)" in changed.stdout
    assert pip_calls(project)[7] == "install torch==2.5.1 --index-url https://download.pytorch.org/whl/cpu"


def test_failed_torch_install_is_one_line_naming_the_spec_and_the_command(project):
    assert run_setup(project).returncode == 0
    failed = run_setup(project, "torch==0.0.0")
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("vjepa setup: error: installing torch failed (TORCH_SPEC=torch==0.0.0")
    assert last.endswith("run by hand: .venv/bin/python -m pip install torch==0.0.0")
    assert pip_calls(project)[-1] == "install torch==0.0.0"  # stopped there: the project was not installed
    assert not (project / ".venv" / "vjepa-setup.json").exists()  # so the next run installs again

    assert run_setup(project).returncode == 0  # the previous spec again: not taken as still installed
    assert pip_calls(project)[-2:] == ["install torch==2.13.0", "install -e .[test]"]
    assert (project / ".venv" / "vjepa-setup.json").exists()


def test_missing_ensurepip_names_the_debian_package(project, tmp_path_factory):
    """Debian/Ubuntu without python3-venv: the interpreter has no ensurepip, so no venv can get pip."""
    shutil.rmtree(project / ".venv")
    hide = tmp_path_factory.mktemp("hide_ensurepip")
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['ensurepip'] = None\n")
    failed = run_setup(project, PYTHONPATH=str(hide))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    (line,) = failed.stderr.strip().splitlines()
    assert "no ensurepip module" in line and "sudo apt install python3-venv" in line
    assert not (project / ".venv").exists()


def test_a_folder_that_is_not_a_venv_is_never_deleted(project):
    shutil.rmtree(project / ".venv")
    (project / ".venv").mkdir()
    (project / ".venv" / "notes.txt").write_text("mine")
    failed = run_setup(project)
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "vjepa setup: error: .venv exists and is not a virtual environment: move it away, or pass VENV=DIR"
    )
    assert (project / ".venv" / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_refuses_an_old_python_in_one_line(tmp_path):
    """The Makefile checks the version before the script runs, so an old python never parses the script."""
    fake = tmp_path / "python3"  # answers like Python 3.8 does: the version, and a failed >= 3.10 check
    fake.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "Python 3.8.10"; exit 0; }\nexit 1\n')
    fake.chmod(0o755)
    # the fake first on PATH, and not the command-line variables (PYTHON=...) of a `make test` running this
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{tmp_path}{os.pathsep}{os.environ['PATH']}"
    failed = subprocess.run(
        ["make", "--no-print-directory", "venv"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert failed.returncode != 0
    first = failed.stderr.splitlines()[0]
    assert first.startswith("vjepa setup: error: Python >= 3.10 is needed; python3 is Python 3.8.10.")
    assert "PYTHON=" in first
