"""The README's commands: the Python example runs, the quick-start commands are what the Makefile runs, CI
runs exactly the README's test command, and the demo arguments it shows exist."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from vjepa.cli import build_parser

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")  # what a parent make passes down
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def bash_blocks() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    return [[line.strip() for line in block.splitlines() if line.strip()] for block in blocks]


def command_after(lines: list[str], comment: str) -> str:
    """The command line that follows the comment line starting with `comment`."""
    (i,) = [i for i, line in enumerate(lines) if line.startswith(comment)]
    return lines[i + 1]


def make_dry_run(*args: str) -> list[str]:
    """The commands `make ARGS...` would run (make -n runs nothing)."""
    # not the command-line variables (ARGS=...) of a `make test` running this test
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARS}
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.rstrip() for line in out.stdout.splitlines()]


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python example"
    exec(compile(blocks[0], str(README), "exec"), {})
    assert "torch.Size" in capsys.readouterr().out


def test_ci_runs_the_readme_test_command_and_ruff():
    quick_start = bash_blocks()[0]
    assert command_after(quick_start, "# the tests") == "make test"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci and "make lint" in ci


@needs_make
def test_readme_make_commands_run_the_same_commands_as_the_pip_route():
    quick_start, own_env = bash_blocks()[:2]
    assert command_after(quick_start, "# the main job") == "make demo"
    assert make_dry_run("demo")[-1].endswith("/bin/vjepa demo")
    assert "vjepa demo" in own_env
    assert make_dry_run("test")[-1].endswith("/bin/python -m pytest -q")
    assert "python -m pytest -q" in own_env
    lint = make_dry_run("lint")
    assert lint[-2].endswith("/bin/ruff check .") and lint[-1].endswith("/bin/ruff format --check .")


@needs_make
def test_readme_make_arguments_pass_through_and_exist():
    text = README.read_text()
    for target, args in re.findall(r'make (demo|test) ARGS="([^"]*)"', text):
        assert make_dry_run(target, f"ARGS={args}")[-1].endswith(
            f"{target if target == 'demo' else '-q'} {args}"
        )
    demo_args = re.findall(r'make demo ARGS="([^"]*)"', text)
    assert demo_args, "README.md shows no demo arguments"
    for args in demo_args:
        build_parser().parse_args(["demo", *shlex.split(args)])  # exits (fails the test) on an unknown flag
    for target in set(re.findall(r"`make (\w+)", text)):
        make_dry_run(target)  # every target the README names exists
