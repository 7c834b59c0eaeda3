"""``vjepa pretrain`` (the CLI, under torchrun) whose rank 1 is killed with SIGKILL while it writes the shards of
the sharded checkpoint of step ``KILL_AT_STEP``: it leaves half a shard file in the ``.partial`` folder and dies;
torchrun then stops rank 0, which is waiting in the checkpoint's collectives. Only the first attempt dies:
workers restarted by ``torchrun --max-restarts`` run normally.

Usage: ``torchrun --nproc_per_node=2 fsdp_kill_driver.py KILL_AT_STEP <vjepa pretrain arguments>``
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from vjepa.cli import main


def main_with_kill() -> None:
    kill_at = f".step_{int(sys.argv[1]):07d}.partial"
    real_save = dcp.save

    def dying_save(state_dict, *, storage_writer, **kwargs):
        folder = Path(str(storage_writer.path))
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"  # torchrun --max-restarts
        if folder.name == kill_at and dist.get_rank() == 1 and first_attempt:
            (folder / "__1_0.distcp").write_bytes(b"\0" * 1000)  # half a shard
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(state_dict, storage_writer=storage_writer, **kwargs)

    dcp.save = dying_save
    sys.exit(main(["pretrain", *sys.argv[2:]]))


if __name__ == "__main__":
    main_with_kill()
