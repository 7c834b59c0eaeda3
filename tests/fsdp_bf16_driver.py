"""``vjepa pretrain`` (the CLI, under torchrun) with FSDP's bf16 parameter policy, which is meant for CUDA only,
turned on for the CPU: the code path of ``runtime.strategy=fsdp`` + ``runtime.precision=bf16`` on GPUs, run
without one. Rank 0 prints how many modules ``fully_shard`` gave a bf16 parameter dtype, so the test can tell
that the policy was applied.

Usage: ``torchrun --nproc_per_node=2 fsdp_bf16_driver.py <vjepa pretrain arguments>``
"""

from __future__ import annotations

import os
import sys

import torch

import vjepa.pretrain.distributed as distributed
from vjepa.cli import main


def main_with_bf16_parameters() -> None:
    real_fully_shard = distributed.fully_shard
    bf16_modules = []

    def counting_fully_shard(module, **kwargs):
        if kwargs["mp_policy"].param_dtype == torch.bfloat16:
            bf16_modules.append(type(module).__name__)
        return real_fully_shard(module, **kwargs)

    distributed.fully_shard = counting_fully_shard
    distributed.bf16_parameters = lambda device: True
    try:
        main(["pretrain", *sys.argv[1:]])  # exits
    finally:
        if os.environ.get("RANK", "0") == "0":
            print(f"bf16 parameter policy on {len(bf16_modules)} modules", flush=True)


if __name__ == "__main__":
    main_with_bf16_parameters()
