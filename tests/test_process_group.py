"""Joining the process group when torchrun restarts workers (``--max-restarts``): the agent's store keeps the
keys of the killed workers, and the restarted ones must not read them (vjepa.process_group)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

from vjepa.process_group import generation_token

HERE = Path(__file__).parent
TIMEOUT = timedelta(seconds=20)


def _tokens(port: int, ranks: list[int], world_size: int) -> dict[int, str]:
    """generation_token of each rank in ``ranks`` (one thread each, started in that order)."""
    tokens: dict[int, str] = {}

    def worker(rank: int) -> None:
        client = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=TIMEOUT)
        tokens[rank] = generation_token(client, rank, world_size, TIMEOUT)

    threads = [threading.Thread(target=worker, args=(rank,)) for rank in ranks]
    for thread in threads:
        thread.start()
        thread.join(timeout=0.3)  # the later ranks start after the earlier ones have read the store
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == len(ranks)
    return tokens


def test_each_generation_agrees_on_a_new_token():
    server = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=TIMEOUT)
    first = _tokens(server.port, [0, 1, 2], world_size=3)
    assert len(set(first.values())) == 1
    # The restart: the other ranks start before rank 0 and find the first generation's token in the store.
    second = _tokens(server.port, [2, 1, 0], world_size=3)
    assert len(set(second.values())) == 1
    assert second[0] != first[0]


@pytest.mark.slow
@pytest.mark.parametrize("delayed_rank", [0, 1])
def test_restarted_workers_join_a_new_process_group(tmp_path, delayed_rank):
    """Without a namespace per generation, the rank that joins first reads the killed rank's gloo address and
    fails ("Connection refused", then "Gloo connectFullMesh failed") or hangs."""
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts=1",
         str(HERE / "restart_driver.py"), str(delayed_rank)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in (0, 1):
        assert f"attempt 1 rank {rank}: all-reduce 2" in done.stdout
