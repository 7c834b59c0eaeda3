"""Grids of probe heads compute exactly what separate probes compute, and train exactly as torch's AdamW
would train each of them on its own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vjepa.probe.attentive import AttentiveClassifier
from vjepa.probe.checkpoint import ProbeArch, load_probe, save_probe
from vjepa.probe.heads import AttentiveGrid, LinearGrid, StackedGrid, make_grid
from vjepa.probe.linear import LinearClassifier
from vjepa.probe.sources import FeatureBatch
from vjepa.probe.training import grid_optimizer, grid_step
from vjepa.runtime import Runtime

CPU = Runtime(torch.device("cpu"))


def perturbed(grid, seed: int = 0):
    """Give every head different weights (a grid starts from copies of one probe)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in grid.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return grid


def test_attentive_grid_equals_separate_probes_in_values_and_gradients():
    torch.manual_seed(0)
    grid = perturbed(AttentiveGrid(AttentiveClassifier(48, 3, 5), 4))
    x = 2 * torch.randn(6, 20, 48) + 1  # [B, N, D], off-centre like real tokens
    out = grid(x)  # [G, B, C]
    assert out.shape == (4, 6, 5)
    labels = torch.randint(0, 5, (6,))
    sum(F.cross_entropy(o, labels) for o in out).backward()
    for g in range(4):
        ref = grid.export(g).train()
        ref_out = ref(x)
        torch.testing.assert_close(out[g], ref_out, atol=1e-5, rtol=1e-5)
        F.cross_entropy(ref_out, labels).backward()
        for (name, p), head_p in zip(ref.named_parameters(), grid.heads[g].parameters(), strict=True):
            if p.grad is None:  # the unused proj
                assert head_p.grad is None and "proj" in name
                continue
            torch.testing.assert_close(head_p.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_vmap_grid_and_linear_grid_match_the_reference_modules():
    torch.manual_seed(0)
    template = AttentiveClassifier(32, 4, 3)
    fast = perturbed(AttentiveGrid(template, 3))
    generic = StackedGrid(template, 3)
    generic.load_state_dict(fast.state_dict())
    x = torch.randn(5, 7, 32)
    torch.testing.assert_close(generic(x), fast(x), atol=1e-5, rtol=1e-5)
    assert torch.equal(generic.heads[1].linear.bias, fast.heads[1].linear.bias)

    linear = perturbed(LinearGrid(LinearClassifier(32, 3, standardize=True), 2))
    linear.set_input_stats(torch.randn(32), torch.rand(32) + 0.5)
    for g in range(2):
        torch.testing.assert_close(linear(x)[g], linear.export(g)(x), atol=1e-5, rtol=1e-5)
    assert isinstance(make_grid(template, 2), AttentiveGrid)
    assert isinstance(make_grid(LinearClassifier(8, 2), 2), LinearGrid)
    assert isinstance(
        make_grid(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2)), 2), StackedGrid
    )


def official_optimizer(model, lr: float, wd: float) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if "bias" not in n and p.ndim != 1]
    rest = [p for n, p in model.named_parameters() if "bias" in n or p.ndim == 1]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )


def test_a_grid_step_trains_each_head_as_its_own_official_optimizer_would():
    torch.manual_seed(0)
    settings = [(3e-3, 0.05), (1e-2, 0.4)]
    grid = AttentiveGrid(AttentiveClassifier(16, 2, 3), len(settings))
    refs = [grid.export(g).train() for g in range(len(settings))]
    opts = [official_optimizer(m, lr, wd) for m, (lr, wd) in zip(refs, settings, strict=True)]
    optimizer = grid_optimizer(grid)
    lr = torch.tensor([s[0] for s in settings])
    wd = torch.tensor([s[1] for s in settings])
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x, y = (
            3 * torch.randn(8, 2, 6, 16, generator=g),
            torch.randint(0, 3, (8,), generator=g),
        )  # [B, V, N, D]
        batch = FeatureBatch(torch.arange(8), x, y, torch.ones(8, dtype=torch.bool))
        sums = grid_step(grid, optimizer, batch, lr, wd, 0.5, "fp32", CPU)
        losses = []
        for m, opt in zip(refs, opts, strict=True):
            opt.zero_grad()
            loss = F.cross_entropy(m(x.flatten(0, 1)), y.repeat_interleave(2))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            opt.step()
            losses.append(loss.item() * 8)
        torch.testing.assert_close(sums[:, 0], torch.tensor(losses), atol=1e-4, rtol=1e-5)
    for k, m in enumerate(refs):
        for (name, p), q in zip(m.named_parameters(), grid.heads[k].parameters(), strict=True):
            torch.testing.assert_close(q.detach(), p.detach(), atol=2e-5, rtol=1e-4, msg=name)


def test_standardized_linear_probe_round_trips(tmp_path):
    arch = ProbeArch("linear", 8, 3, standardize=True)
    grid = perturbed(LinearGrid(arch.build(), 2))
    grid.set_input_stats(torch.arange(8.0), torch.full((8,), 2.0))
    save_probe(tmp_path / "p", arch, grid.export(1))
    loaded = load_probe(tmp_path / "p")
    x = torch.randn(4, 5, 8)
    torch.testing.assert_close(loaded.model(x), grid(x)[1])
    assert torch.equal(loaded.model.norm.mean, torch.arange(8.0))


@pytest.mark.parametrize("num_heads", [0, -1])
def test_a_grid_needs_a_head(num_heads):
    with pytest.raises(ValueError, match="at least one head"):
        LinearGrid(LinearClassifier(4, 2), num_heads)
