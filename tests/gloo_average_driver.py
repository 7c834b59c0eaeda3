"""FSDP's gradient average over 2 gloo ranks, as ``shard_objective`` sets it up: a bias-free Linear sharded
with ``fully_shard``, each rank feeding its own input, and the remedy of ``averaging_sums`` applied where the
process group needs it (``force``: applied regardless). Rank 0 prints JSON: whether the group sums where
asked to average, and the full gradient of the weight.

Usage: ``torchrun --nproc_per_node=2 gloo_average_driver.py [force]``
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh

import vjepa.pretrain.distributed as distributed


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    mesh = init_device_mesh("cpu", (world,))
    distributed.fully_shard(model, mesh=mesh)
    sums = distributed.averaging_sums(mesh.get_group())
    if sums or sys.argv[1:] == ["force"]:
        distributed._divide_reduced_gradients(model, world)
    model(torch.full((1, 4), float(rank + 1))).sum().backward()  # d/dW = the input, in every row
    grad = model[0].weight.grad.full_tensor()
    if rank == 0:
        print(json.dumps({"averaging_sums": sums, "grad": grad.tolist()}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
