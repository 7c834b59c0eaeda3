"""Joining the torchrun process group, also for workers that torchrun restarted (``--max-restarts``).

torchrun's agent hosts one TCPStore for the whole job (``TORCHELASTIC_USE_AGENT_STORE=True``, the default of the
c10d rendezvous since torch 2.5) and hands every generation of workers it starts the same MASTER_ADDR and
MASTER_PORT. The keys written by a generation that was killed stay there: gloo's listening address of every
rank, NCCL's unique id. A restarted worker that reads a peer's key before the restarted peer has overwritten it
gets the address of a dead process: "Connection refused" then "Gloo connectFullMesh failed", or a wait that
never ends. Each generation therefore builds its process group in a key namespace of its own.

``TORCHELASTIC_RESTART_COUNT`` cannot name the generation: each agent counts only its own restarts, and an agent
whose workers are restarted because another node failed or joined does not count that restart (pytorch issue
135712), so the nodes of one generation can disagree. Rank 0 instead draws a new token at every start, and
each other rank takes the token only once rank 0 has acknowledged a random nonce of its own under that token:
a token left by a dead generation is never acknowledged, because the rank 0 that drew it is gone.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

import torch.distributed as dist

POLL_SECONDS = 0.1
TIMEOUT = timedelta(minutes=30)  # torch's default process-group timeout for gloo


def join_process_group(backend: str, rank: int, world_size: int, timeout: timedelta = TIMEOUT) -> None:
    """``dist.init_process_group`` from torchrun's environment; in a store namespace of this generation of workers
    when the store is the agent's, which outlives the workers it restarts.

    Args:
        backend: ``gloo`` or ``nccl``.
        rank: this worker's global rank (``RANK``).
        world_size: number of workers (``WORLD_SIZE``).
        timeout: how long to wait for the other ranks while agreeing on the namespace.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend=backend)  # rank 0 hosts a new store for each generation
        return
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent_store = dist.TCPStore(addr, port, world_size, is_master=False, timeout=timeout)
    handshake = dist.PrefixStore("vjepa/process_group", agent_store)
    token = generation_token(handshake, rank, world_size, timeout)
    store = dist.PrefixStore(f"{token}/group", handshake)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)


def generation_token(store: dist.Store, rank: int, world_size: int, timeout: timedelta) -> str:
    """A token that all ranks started together share and that no earlier generation used.

    Rank 0 publishes a new token, then acknowledges each rank's hello written under that token. Another rank
    reads the published token (perhaps a dead generation's), says hello with its nonce under it, and follows
    the published token until its nonce is acknowledged.

    Args:
        store: the store shared with the other ranks (and with earlier generations).
        rank: this worker's global rank.
        world_size: number of workers.
        timeout: how long a rank other than 0 waits to be acknowledged (rank 0 waits up to the store's timeout
            for each hello).
    """
    if rank == 0:
        token = uuid.uuid4().hex
        store.set("token", token)
        for other in range(1, world_size):
            hello = f"{token}/hello/{other}"
            store.wait([hello])
            store.set(f"{token}/welcome/{store.get(hello).decode()}", "1")
        return token
    nonce, token = uuid.uuid4().hex, ""
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        published = store.get("token").decode()  # waits for the first generation's rank 0
        if published != token:
            token = published
            store.set(f"{token}/hello/{rank}", nonce)
        if store.check([f"{token}/welcome/{nonce}"]):
            return token
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: rank 0 did not acknowledge this worker within {timeout}")
        time.sleep(POLL_SECONDS)
