"""How the models are spread over the processes of a run: ``runtime.strategy`` ``ddp`` or ``fsdp``.

``ddp`` (the default) keeps a full replica of every model on each process and averages gradients
(:class:`torch.nn.parallel.DistributedDataParallel`). ``fsdp`` shards them with PyTorch's FSDP2
(:func:`torch.distributed.fsdp.fully_shard`): every transformer block of the encoder, the predictor and the
target encoder is one unit (its parameters are all-gathered just before it runs and freed after), then each of
the three models, then the objective as the root. Each process keeps ``1 / world_size`` of every parameter,
gradient and AdamW moment, so the models of the paper and of V-JEPA 2 fit at useful batch sizes.

What stays the same under ``fsdp``: the maths of a step (gradients are averaged over ranks by a
reduce-scatter instead of an all-reduce), the optimizer (AdamW works on the local shards element-wise), the
EMA update (:meth:`JEPAObjective.update_target` runs ``torch._foreach_*`` on the sharded parameters: each rank
updates its own shard of the target from its own shard of the encoder, with no communication, because the
two models are sharded alike), the losses, metrics and monitors (computed on the activations, which are never
sharded). On CUDA with ``precision: bf16`` the models compute with bf16 copies of the parameters and each
block takes bf16 inputs (:class:`MixedPrecisionPolicy`; gradients are reduced in fp32 and the sharded master
weights stay fp32), under the same autocast as single-process training, which keeps LayerNorm in fp32; the
clips reach the models in fp32. So under bf16 the two strategies differ by bf16 rounding (the residual stream
at block boundaries), not only by summation order. On CPU parameters stay fp32 and autocast alone decides.

Whatever the objective holds as ``target_encoder`` is sharded like the encoder: the EMA copy, a ``frozen``
teacher, or nothing (pixel targets, an ``online`` teacher).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.nn.parallel import DistributedDataParallel

try:  # public since torch 2.6; torch 2.4 and 2.5 ship FSDP2 and DTensor under their first, private names
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
except ImportError:  # pragma: no cover - torch < 2.6
    from torch.distributed._composable.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
try:
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - torch < 2.5
    from torch.distributed._tensor import DTensor

from vjepa.errors import ConfigError
from vjepa.pretrain.config import RuntimeConfig
from vjepa.runtime import Runtime

# The oldest torch with which vjepa's FSDP tests pass (2-rank gloo runs against one process, sharded
# checkpoints, resume): 2.7.1, 2.8.0, 2.9.1 and 2.10.0 pass; 2.7 and 2.8 only with the gloo remedy of
# ``averaging_sums`` below. 2.4.1 and 2.6.0 make CUDA-only stream calls on the CPU and lack DCP's ``no_dist``.
FSDP_MIN_TORCH = (2, 7)
FSDP_MIN_TORCH_NAME = ".".join(map(str, FSDP_MIN_TORCH))


def torch_version() -> tuple[int, int]:
    """The installed torch's (major, minor), e.g. ``(2, 13)`` for ``2.13.0+cpu``."""
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def fsdp_supported() -> bool:
    """Whether the installed torch is at least :data:`FSDP_MIN_TORCH`."""
    return torch_version() >= FSDP_MIN_TORCH


def check_fsdp_support(what: str) -> None:
    """Refuse ``what`` (``runtime.strategy=fsdp``, or reading a sharded checkpoint) on a torch older than
    :data:`FSDP_MIN_TORCH`, with a message that names it; the rest of vjepa runs on torch >= 2.4."""
    if not fsdp_supported():
        need = FSDP_MIN_TORCH_NAME
        raise ConfigError(
            f"{what} needs torch >= {need} (vjepa's FSDP and sharded checkpoints are tested from {need} on); "
            f"this is torch {torch.__version__}. Upgrade torch, or use runtime.strategy=ddp (single-file "
            "checkpoints)"
        )


@dataclass
class Sharding:
    """What :func:`shard_objective` did, and what is needed to undo it for an export.

    Args:
        template: a copy of the unsharded objective whose tensors live on the ``meta`` device (no memory);
            :func:`full_objective` fills it with the gathered weights.
    """

    template: nn.Module


def prepare_objective(
    objective: nn.Module, config: RuntimeConfig, runtime: Runtime, *, shard: bool | None = None
) -> tuple[nn.Module, Sharding | None]:
    """Activation checkpointing, ``torch.compile`` and placement, before the optimizer is built.

    ``ddp`` (and any single process) moves the objective to the device; ``fsdp`` on several processes
    shards it (the shards land on the device). Returns the objective and, when sharded, its :class:`Sharding`.

    Args:
        objective: the freshly built objective (on the CPU).
        config: the run's runtime section.
        runtime: device and process group.
        shard: override the rule above (the benchmark shards on a process group of one).
    """
    if config.activation_checkpointing:
        objective.encoder.grad_checkpointing = True
        objective.predictor.grad_checkpointing = True
    if shard is None:
        shard = config.strategy == "fsdp" and runtime.distributed
    if shard:
        sharding = shard_objective(objective, runtime, mixed_bf16=config.precision == "bf16")
        if config.compile:
            for block in _blocks(objective):
                block.compile()  # per block, as FSDP2 is meant to be compiled (dynamo skips its hooks)
        return objective, sharding
    objective = objective.to(runtime.device)
    if config.compile:
        for module in (objective.encoder, objective.predictor, objective.target_encoder):
            if module is not None:
                module.compile()
    return objective, None


# Our only buffers are the fixed sin-cos position tables, equal on every rank: DDP need not broadcast them
# before each forward. torch 2.13 calls the switch ``forward_sync_buffers`` and warns on every run when given
# the old name, the only one torch 2.4 knows.
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def wrap_for_training(objective: nn.Module, runtime: Runtime, *, ddp: bool | None = None) -> nn.Module:
    """What ``train_step`` calls for the forward: DDP around an unsharded objective on several processes
    (``ddp=True``: on any process group, even of one), otherwise the objective itself."""
    if is_sharded(objective) or not (runtime.distributed if ddp is None else ddp):
        return objective
    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(objective, device_ids=device_ids, **_NO_BUFFER_SYNC)


def shard_objective(objective: nn.Module, runtime: Runtime, mixed_bf16: bool) -> Sharding:
    """Apply ``fully_shard`` per transformer block, per model, then to the objective (the root).

    Every rank must hold the same initial weights (the same seed builds the same models), since each keeps
    its own slice of them.

    Args:
        objective: the unsharded objective, on the CPU or the device.
        runtime: the process group's device and size.
        mixed_bf16: compute with bf16 parameters (CUDA only; see the module docstring).
    """
    template = meta_copy(objective)
    mesh = init_device_mesh(runtime.device.type, (runtime.world_size,))
    block_policy = outer_policy = MixedPrecisionPolicy()
    if mixed_bf16 and bf16_parameters(runtime.device):
        block_policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        # The models and the root leave their inputs as they are: the clips reach the patch embedding (where
        # autocast rounds them, as under ddp) and the pixel targets in fp32. Blocks take bf16 inputs.
        outer_policy = replace(block_policy, cast_forward_inputs=False)
    # Our modules return fresh tensors and nothing writes into them in place; FSDP's generic warning about
    # views of outputs would otherwise print once per module.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    for block in _blocks(objective):
        fully_shard(block, mesh=mesh, mp_policy=block_policy)
    for model in (objective.encoder, objective.predictor, objective.target_encoder):
        if model is not None:
            fully_shard(model, mesh=mesh, mp_policy=outer_policy)
    fully_shard(objective, mesh=mesh, mp_policy=outer_policy)
    if averaging_sums(mesh.get_group()):
        _divide_reduced_gradients(objective, runtime.world_size)
    return Sharding(template)


def averaging_sums(group: dist.ProcessGroup) -> bool:
    """Whether ``group``'s reduce-scatter with ``ReduceOp.AVG`` returns the sum instead of the mean.

    FSDP2 averages fp32 gradients over the ranks with exactly that collective. Before torch 2.9, gloo (the
    CPU backend) silently summed instead (pytorch/pytorch#162338): with torch 2.7 and 2.8 every gradient came
    out ``world_size`` times too large. The group itself is asked (one tiny collective on every rank), not
    the version number. NCCL (CUDA) averages correctly and is not asked.
    """
    world = group.size()
    if world == 1 or dist.get_backend(group) != "gloo":
        return False
    out = torch.zeros(1)
    dist.reduce_scatter_tensor(out, torch.ones(world), op=dist.ReduceOp.AVG, group=group)
    return out.item() != 1.0


def _divide_reduced_gradients(objective: nn.Module, world_size: int) -> None:
    """The remedy for :func:`averaging_sums`: every FSDP unit divides its summed gradient shard by the world
    size. FSDP calls the hook on each reduce-scatter output before it becomes the shard's ``.grad``
    (``set_all_reduce_hook``, torch >= 2.7: with 1-D sharding it runs right after the reduce-scatter). FSDP
    asks for ``ReduceOp.AVG`` when it reduces in fp32 or bf16; vjepa reduces in fp32 (fp16, which FSDP sums
    and divides itself, is never used)."""
    for module in objective.modules():
        if isinstance(module, FSDPModule):
            module.set_all_reduce_hook(lambda reduced: reduced.div_(world_size))


def bf16_parameters(device: torch.device) -> bool:
    """Whether ``fsdp`` with ``precision: bf16`` computes with bf16 copies of the parameters on ``device``.

    CUDA only: CPU autocast keeps LayerNorm in its input's dtype (CUDA autocast runs it in fp32), so on the
    CPU the policy would also compute every norm in bf16.
    ``tests/fsdp_bf16_driver.py`` turns it on for the CPU to run the policy's code path without a GPU.
    """
    return device.type == "cuda"


def _blocks(objective: nn.Module) -> Iterator[nn.Module]:
    """The transformer blocks of the encoder, the target encoder and the predictor."""
    yield from objective.encoder.blocks
    if objective.target_encoder is not None:
        yield from objective.target_encoder.blocks
    yield from objective.predictor.predictor_blocks


def is_sharded(module: nn.Module) -> bool:
    """Whether ``fully_shard`` was applied to ``module``."""
    return isinstance(module, FSDPModule)


def meta_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters and buffers are on the ``meta`` device (shapes only)."""
    memo: dict[int, Tensor] = {}
    for t in itertools.chain(module.parameters(), module.buffers()):
        empty = torch.empty_like(t, device="meta")
        memo[id(t)] = (
            nn.Parameter(empty, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else empty
        )
    return copy.deepcopy(module, memo)


def full_objective(objective: nn.Module, sharding: Sharding | None, runtime: Runtime) -> nn.Module | None:
    """The objective with full weights on the CPU, for an export: ``objective`` itself when it is not
    sharded; otherwise (a collective: every rank calls it) a plain copy on rank 0 and None elsewhere."""
    if sharding is None:
        return objective
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(objective, options=options)  # full tensors on rank 0, empty elsewhere
    if not runtime.is_main:
        return None
    plain = copy.deepcopy(sharding.template).to_empty(device="cpu")
    plain.load_state_dict(state, strict=True)
    return plain


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Within the block, backward passes reduce gradients over ranks only when ``enabled`` (off for every
    micro-batch of an accumulated step but the last)."""
    if enabled or not (isinstance(model, DistributedDataParallel) or is_sharded(model)):
        yield
    elif isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    else:
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)


def plain_tensor(value: Tensor) -> Tensor:
    """A DTensor's full value (e.g. a gradient norm computed over sharded gradients); other tensors as
    they are."""
    return value.full_tensor() if isinstance(value, DTensor) else value
