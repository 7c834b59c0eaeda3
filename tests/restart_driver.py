"""A torchrun worker that joins the process group through ``vjepa.runtime.setup`` and all-reduces once. On the
first attempt rank 1 then dies with SIGKILL, so that ``torchrun --max-restarts`` restarts both workers; on the
restart, rank ``DELAYED_RANK`` waits 3 s before joining, so that the other rank reads the store first and meets
whatever the killed attempt left there (gloo's addresses of the dead workers).

Usage: ``torchrun --nproc_per_node=2 --max-restarts=1 restart_driver.py DELAYED_RANK``
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torch
import torch.distributed as dist

from vjepa.runtime import setup, teardown


def main() -> None:
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    rank = int(os.environ["RANK"])
    if attempt > 0 and rank == int(sys.argv[1]):
        time.sleep(3)
    runtime = setup("cpu", threads=1)
    total = torch.ones(1)
    dist.all_reduce(total)
    print(f"attempt {attempt} rank {runtime.rank}: all-reduce {total.item():.0f}", flush=True)
    if attempt == 0 and rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.barrier()
    teardown()


if __name__ == "__main__":
    main()
