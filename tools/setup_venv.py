"""Create or refresh the project's virtual environment, or do nothing when it is up to date.

The Makefile runs it before every command (after checking that python3 is >= 3.10):

    python3 tools/setup_venv.py --venv .venv --torch-spec 'torch==2.13.0'

1. If the venv's python does not run or has no pip, (re)create the venv with `python3 -m venv`.
2. If the install stamp (VENV/vjepa-setup.json) does not match pyproject.toml, the torch spec and the venv's
   Python version: upgrade pip, `pip install TORCH_SPEC`, `pip install -e '.[test]'`, then write the stamp.

An up-to-date venv costs one start of its python and prints nothing. Every failure ends with one line saying
what to do, and exit status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: pyproject.toml, and where pip runs
STAMP = "vjepa-setup.json"
# prints the venv python's version; fails when pip is missing (a venv made with --without-pip or half-made)
PROBE = "import importlib.util, sys; assert importlib.util.find_spec('pip'); print(sys.version.split()[0])"
WHY = {"pyproject": "pyproject.toml changed", "torch_spec": "TORCH_SPEC changed", "python": "Python changed"}


class SetupError(Exception):
    """A step failed; the message is the one line the user sees."""


def venv_version(venv: Path) -> str | None:
    """The venv python's version, or None when the venv is missing, its python does not run or has no pip."""
    python = venv / "bin" / "python"
    if not python.exists():  # also a dangling link: the interpreter it was made from is gone
        return None
    try:
        probe = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return probe.stdout.strip() if probe.returncode == 0 else None


def create_venv(venv: Path) -> None:
    if importlib.util.find_spec("ensurepip") is None:
        raise SetupError(
            f"{sys.executable} cannot create virtual environments (no ensurepip module): install it "
            f"(Debian/Ubuntu: sudo apt install python3-venv, or python{sys.version_info[0]}.{sys.version_info[1]}"
            "-venv for this version), then rerun"
        )
    if venv.exists():
        if not (venv / "pyvenv.cfg").is_file():
            raise SetupError(
                f"{venv} exists and is not a virtual environment: move it away, or pass VENV=DIR"
            )
        print(
            f"vjepa setup: {venv} is broken (its python does not run or has no pip): recreating it",
            flush=True,
        )
        shutil.rmtree(venv)
    cmd = [sys.executable, "-m", "venv", str(venv)]
    print(f"vjepa setup: creating {venv}: {shlex.join(cmd)}", flush=True)
    made = subprocess.run(cmd, capture_output=True, text=True)
    if made.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)  # a half-made venv would look usable to the next run
        lines = (made.stdout + made.stderr).strip().splitlines() or ["no output"]
        raise SetupError(f"creating {venv} failed ({lines[-1].strip()}); run by hand: {shlex.join(cmd)}")


def wanted_stamp(torch_spec: str, python_version: str) -> dict[str, str]:
    pyproject = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return {"pyproject": pyproject, "torch_spec": torch_spec, "python": python_version}


def read_stamp(venv: Path) -> dict[str, str] | None:
    try:
        return json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):  # missing (never installed, or interrupted) or unreadable: install again
        return None


def install(venv: Path, torch_spec: str) -> None:
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install"]
    torch_args = shlex.split(torch_spec)
    steps = [
        ("upgrading pip", [*pip, "-q", "--upgrade", "pip"], ""),
        (
            "installing torch",
            [*pip, *torch_args],
            f" (TORCH_SPEC={shlex.quote(torch_spec)}: pick one that exists for this Python and platform,"
            " e.g. TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu')",
        ),
        ("installing vjepa with its test extras", [*pip, "-e", ".[test]"], ""),
    ]
    for what, cmd, hint in steps:
        print(f"vjepa setup: {what}: {shlex.join(cmd)}", flush=True)
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise SetupError(f"{what} failed{hint}; see pip's messages above; run by hand: {shlex.join(cmd)}")


def setup(venv: Path, torch_spec: str) -> None:
    version = venv_version(venv)
    if version is None:
        create_venv(venv)
        version = venv_version(venv)
        if version is None:
            raise SetupError(f"the new {venv} has no working python with pip; remove it and rerun")
    wanted = wanted_stamp(torch_spec, version)
    stamp = read_stamp(venv)
    if stamp == wanted:
        return
    why = (
        "no finished install recorded"
        if stamp is None
        else ", ".join(WHY[k] for k in WHY if stamp.get(k) != wanted[k])
    )
    print(f"vjepa setup: installing into {venv} ({why})", flush=True)
    (venv / STAMP).unlink(missing_ok=True)  # a half-done install must not pass for the previous one
    install(venv, torch_spec)
    tmp = venv / (STAMP + ".tmp")
    tmp.write_text(json.dumps(wanted, indent=1) + "\n")
    tmp.replace(venv / STAMP)
    print(f"vjepa setup: {venv} is ready", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=".venv", help="venv folder, relative to the repository root")
    parser.add_argument("--torch-spec", required=True, help="pip arguments for torch, e.g. 'torch==2.13.0'")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    try:
        setup(Path(args.venv), args.torch_spec)
    except SetupError as err:
        print(f"vjepa setup: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vjepa setup: interrupted; the next run installs again", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
