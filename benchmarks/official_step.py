"""Our training step against the official one, on the same weights and batches: time (alternated in one
process) and results (losses and weights after every step).

The official step (``app/vjepa/train.py`` of facebookresearch/jepa, as ``shared/reference`` describes it line
by line) is restated here in plain torch on copies of our trainer's modules, without any of our optimizations:

- every mask setting runs the context encoder from the clip, so the Conv3d patch embedding runs once per mask
  setting (``MultiMaskWrapper``), plus once for the target encoder;
- ``apply_masks`` gathers with an index repeated over the feature dimension;
- the predictor broadcasts its mask token to ``[B, N, d]`` and gathers it, and gathers the position table
  repeated over the batch;
- the variance regulariser is computed and added with weight 0 (so it is in the backward pass);
- ``torch.optim.AdamW`` with PyTorch's defaults (on CPU: the per-parameter loop), the official four groups;
- after the optimizer step the per-parameter gradient norms (``grad_logger``) and the mean absolute AdamW
  moments (``adamw_logger``) are read as Python floats, as the official loop logs them;
- the EMA update is the official per-parameter loop ``p_k.mul_(m).add_((1 - m) * p_q)``.

Precision: ``fp32``, or ``bf16`` under ``torch.autocast`` on the step's device; on CUDA, bf16 also goes through
the official ``GradScaler`` (a power-of-two loss scale, so the gradients after unscaling are the same). (The
official code enters ``torch.cuda.amp.autocast``, which does nothing on CPU: there its bf16 setting runs the
fp32 step.)

Both steps get the same schedule values, start from the same weights and see the same batches, so their losses
and weights must stay equal to float rounding: the table reports the largest relative loss difference over the
timed steps and the largest weight difference of the target encoder at the end.

Examples::

    python benchmarks/official_step.py --threads 1 --precision fp32                  # the issue's setting
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/official_step.py --threads 1
    python benchmarks/official_step.py --threads 1 --precision fp32 bf16 --rounds 8
"""

from __future__ import annotations

from vjepa.threads import set_thread_env_defaults

set_thread_env_defaults()  # as the vjepa command does, before torch loads (OMP_WAIT_POLICY)

import argparse  # noqa: E402
import copy  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from contextlib import nullcontext  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from train_step import print_precision_header  # noqa: E402  (benchmarks/train_step.py)
from trainer import (  # noqa: E402  (benchmarks/trainer.py)
    COMPARISON_SIZES,
    add_size_arguments,
    batch_pool,
    sizes_from,
    step_config,
    step_trainer,
)
from vjepa.masks import MaskedBatch  # noqa: E402
from vjepa.optim import param_groups, set_lr_and_wd  # noqa: E402
from vjepa.pretrain.setup import Trainer  # noqa: E402
from vjepa.pretrain.step import train_step  # noqa: E402
from vjepa.runtime import Runtime, resolve_device  # noqa: E402

# ------------------------------------------------------------------------------------ the official step


def apply_masks(x: Tensor, index: Tensor) -> Tensor:  # [B, N, D], [B, K] -> [B, K, D]
    return torch.gather(x, 1, index.unsqueeze(-1).repeat(1, 1, x.size(-1)))


def block(b: nn.Module, x: Tensor) -> Tensor:
    """The official ``Block``: pre-norm attention (fused qkv, SDPA) and GELU MLP."""
    B, N, C = x.shape
    a = b.attn
    y = F.layer_norm(x, (C,), b.norm1.weight, b.norm1.bias, b.norm1.eps)
    qkv = F.linear(y, a.qkv.weight, a.qkv.bias).reshape(B, N, 3, a.num_heads, C // a.num_heads)
    qkv = qkv.permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    x = x + F.linear(y.transpose(1, 2).reshape(B, N, C), a.proj.weight, a.proj.bias)
    y = F.layer_norm(x, (C,), b.norm2.weight, b.norm2.bias, b.norm2.eps)
    y = F.gelu(F.linear(y, b.mlp.fc1.weight, b.mlp.fc1.bias))
    return x + F.linear(y, b.mlp.fc2.weight, b.mlp.fc2.bias)


def encoder(enc: nn.Module, clips: Tensor, mask: Tensor | None = None) -> Tensor:
    """The official ``VisionTransformer.forward``: Conv3d patch embedding, positions, masks, blocks, norm."""
    x = enc.patch_embed.proj(clips).flatten(2).transpose(1, 2)  # [B, N, D]
    x = x + enc.pos_embed
    if mask is not None:
        x = apply_masks(x, mask)
    for b in enc.blocks:
        x = block(b, x)
    return F.layer_norm(x, (x.shape[-1],), enc.norm.weight, enc.norm.bias, enc.norm.eps)


def predictor(pred: nn.Module, ctxt: Tensor, mask_ctxt: Tensor, mask_tgt: Tensor, mask_index: int) -> Tensor:
    """The official ``VisionTransformerPredictor.forward`` with mask tokens."""
    B = ctxt.shape[0]
    x = F.linear(ctxt, pred.predictor_embed.weight, pred.predictor_embed.bias)
    pos = pred.predictor_pos_embed.repeat(B, 1, 1)  # [B, N, d]
    x = x + apply_masks(pos, mask_ctxt)
    n_ctxt = x.shape[1]
    tokens = pred.mask_tokens[mask_index % len(pred.mask_tokens)].repeat(B, pos.shape[1], 1)  # [B, N, d]
    x = torch.cat([x, apply_masks(tokens, mask_tgt) + apply_masks(pos, mask_tgt)], dim=1)
    for b in pred.predictor_blocks:
        x = block(b, x)
    n = pred.predictor_norm
    x = F.layer_norm(x, (x.shape[-1],), n.weight, n.bias, n.eps)[:, n_ctxt:]
    return F.linear(x, pred.predictor_proj.weight, pred.predictor_proj.bias)


class OfficialStep:
    """The official train step on copies of ``trainer``'s encoder, target encoder and predictor."""

    def __init__(self, trainer: Trainer) -> None:
        obj = trainer.objective
        self.encoder = copy.deepcopy(obj.encoder)
        self.target = copy.deepcopy(obj.target_encoder)
        self.predictor = copy.deepcopy(obj.predictor)
        self.precision = trainer.precision
        self.schedules = trainer.schedules
        opt = trainer.optimizer.defaults
        groups = param_groups(self.encoder, [self.predictor])  # the official init_opt's four groups
        # PyTorch's defaults otherwise (no foreach or fused kernel: the per-parameter loop on CPU)
        self.optimizer = torch.optim.AdamW(groups, betas=opt["betas"], eps=opt["eps"])
        cuda_bf16 = self.precision == "bf16" and trainer.runtime.device.type == "cuda"
        # the official code makes a GradScaler whenever it trains in mixed precision
        self.scaler = torch.amp.GradScaler("cuda") if cuda_bf16 else None

    def __call__(self, batch: MaskedBatch, step: int) -> float:
        s = self.schedules
        lr, wd, m = s.lr(step), s.weight_decay(step), s.momentum(step)
        set_lr_and_wd(self.optimizer, lr, wd)
        clips, masks = batch.clips, batch.masks
        device = clips.device.type
        amp = torch.autocast(device, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with amp:
            with torch.no_grad():
                h = self.target_encoder_features(clips)
            hs = [apply_masks(h, mk.target) for mk in masks]
            zs = [
                predictor(self.predictor, encoder(self.encoder, clips, mk.context), mk.context, mk.target, i)
                for i, mk in enumerate(masks)
            ]
            loss_jepa = sum(torch.mean(torch.abs(z - t)) for z, t in zip(zs, hs, strict=True)) / len(masks)
            pstd = sum(torch.sqrt(z.var(dim=1) + 0.0001) for z in zs) / len(zs)
            loss_reg = torch.mean(F.relu(1.0 - pstd))
        loss = loss_jepa + 0.0 * loss_reg
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if s.clipping(step):
            torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), s.config.clip_grad)
            torch.nn.utils.clip_grad_norm_(self.predictor.parameters(), s.config.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self._log_gradients(self.encoder)
        self._log_gradients(self.predictor)
        self.optimizer.zero_grad()
        self._log_adamw()
        with torch.no_grad():
            for q, k in zip(self.encoder.parameters(), self.target.parameters(), strict=True):
                k.data.mul_(m).add_((1.0 - m) * q.detach().data)
        return float(loss.detach())

    def target_encoder_features(self, clips: Tensor) -> Tensor:
        h = encoder(self.target, clips)
        return F.layer_norm(h, (h.size(-1),))

    @staticmethod
    def _log_gradients(module: nn.Module) -> list[float]:
        return [
            float(torch.norm(p.grad.data))
            for n, p in module.named_parameters()
            if p.grad is not None and not (n.endswith(".bias") or len(p.shape) == 1)
        ]

    def _log_adamw(self) -> list[float]:
        out = []
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                state = self.optimizer.state.get(p, {})
                if "exp_avg" in state:
                    out += [float(state["exp_avg"].abs().mean()), float(state["exp_avg_sq"].abs().mean())]
        return out


# ----------------------------------------------------------------------------------------- comparison


def compare(args: argparse.Namespace, precision: str, device: torch.device) -> dict:
    """Alternate ``rounds`` x (``per_round`` official steps, the same steps ours) from the same weights."""
    sizes = sizes_from(args)
    total = args.rounds * args.per_round + args.warmup
    config = step_config(sizes, total, [f"runtime.device={device.type}", f"runtime.precision={precision}"])
    ours = step_trainer(config, Runtime(device))
    official = OfficialStep(ours)
    pool = [b.to(device) for b in batch_pool(config, ours)]
    times: dict[str, list[float]] = {"official": [], "ours": []}
    losses: dict[str, list[float]] = {"official": [], "ours": []}
    runs = {
        "official": lambda batch, step: official(batch, step),
        "ours": lambda batch, step: train_step(ours, [batch], step).loss,
    }
    order = [(0, args.warmup, False)] + [
        (args.warmup + r * args.per_round, args.per_round, True) for r in range(args.rounds)
    ]
    for start, count, timed in order:
        for name, run in runs.items():
            for step in range(start, start + count):
                _sync(device)
                t = time.perf_counter()
                loss = run(pool[step % len(pool)], step)
                _sync(device)
                if timed:
                    times[name].append(time.perf_counter() - t)
                losses[name].append(loss)
    rel = max(abs(a - b) / abs(a) for a, b in zip(losses["official"], losses["ours"], strict=True))
    target = ours.objective.target_encoder.state_dict()
    weight_diff = max((target[n] - p).abs().max().item() for n, p in official.target.state_dict().items())
    return {
        "official": statistics.median(times["official"]),
        "ours": statistics.median(times["ours"]),
        "loss_rel": rel,
        "weight_diff": weight_diff,
        "last_loss": losses["ours"][-1],
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    add_size_arguments(p, COMPARISON_SIZES)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (the issue's comparison: 1)")
    p.add_argument("--rounds", type=int, default=5, help="alternations of the two steps")
    p.add_argument("--per-round", type=int, default=3, help="steps of each per round (cycling 3 batches)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each first")
    args = p.parse_args()

    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"# device: {device.type} ({name}), threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"load average at start {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"# {args.model}, clips {args.num_frames}x{args.resolution}x{args.resolution}, batch {args.batch}, "
          f"predictor depth {args.pred_depth} width {args.pred_width}, paper masks; medians of "
          f"{args.rounds} x {args.per_round} steps each, alternated")  # fmt: skip
    print_precision_header(device)
    print(
        "| precision | official (s/step) | ours (s/step) | speedup | max rel. loss diff | max target weight diff |"
    )
    print("|---|---|---|---|---|---|")
    for precision in args.precision:
        r = compare(args, precision, device)
        print(f"| {precision} | {r['official']:.3f} | {r['ours']:.3f} | {r['official'] / r['ours']:.2f}x | "
              f"{r['loss_rel']:.1e} | {r['weight_diff']:.1e} |", flush=True)  # fmt: skip
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
