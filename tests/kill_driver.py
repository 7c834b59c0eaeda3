"""Run a tiny pretraining and kill -9 this very process at a chosen write (for the crash-gap tests).

Usage: ``python kill_driver.py RUN_DIR export|kept OVERRIDES_JSON``

- ``export``: the final export's weights file is half written, then SIGKILL;
- ``kept``: ``latest.pt`` of a kept step is written, then the kept ``step_XXXXXXX.pt`` is half written, then
  SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import vjepa.io as vio
import vjepa.pretrain.state as state
from pretrain_helpers import tiny_config
from vjepa.pretrain.loop import pretrain


def _die(partial: Path) -> None:
    partial.write_bytes(b"\0" * 1000)  # what a killed write leaves: a temporary file, cut short
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    run_dir, where, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if where == "export":
        vio.save_file = lambda tensors, path, metadata=None: _die(Path(path))  # every safetensors write
    elif where == "kept":
        real = state.atomic_write

        def dying_kept(path, write):
            real(path, (lambda tmp: _die(tmp)) if Path(path).name.startswith("step_") else write)

        state.atomic_write = dying_kept
    else:
        raise SystemExit(f"unknown kill point {where!r}")
    pretrain(tiny_config(overrides), Path(run_dir))
    raise SystemExit("the kill point was never reached")


if __name__ == "__main__":
    main()
