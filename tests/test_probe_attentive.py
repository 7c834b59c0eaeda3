"""The attentive probe against the documented maths, official checkpoint loading, and our probe format."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vjepa.checkpoint import CheckpointError
from vjepa.probe.attentive import AttentiveClassifier
from vjepa.probe.checkpoint import ProbeArch, load_probe, save_probe
from vjepa.probe.linear import LinearClassifier

D, HEADS, C = 32, 4, 7


def official_probe_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A probe state dict in the official layout (DDP ``module.`` prefixes), random values."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    block = "module.pooler.cross_attention_block."
    return {
        "module.pooler.query_tokens": r(1, 1, D),
        block + "norm1.weight": 1 + r(D),
        block + "norm1.bias": r(D),
        block + "xattn.q.weight": r(D, D),
        block + "xattn.q.bias": r(D),
        block + "xattn.kv.weight": r(2 * D, D),
        block + "xattn.kv.bias": r(2 * D),
        block + "xattn.proj.weight": r(D, D),
        block + "xattn.proj.bias": r(D),
        block + "norm2.weight": 1 + r(D),
        block + "norm2.bias": r(D),
        block + "mlp.fc1.weight": r(4 * D, D),
        block + "mlp.fc1.bias": r(4 * D),
        block + "mlp.fc2.weight": r(D, 4 * D),
        block + "mlp.fc2.bias": r(D),
        "module.linear.weight": r(C, D),
        "module.linear.bias": r(C),
    }


def documented_logits(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The probe written out from the spec (§6.1): q <- q + xattn(q, LN1(x)); q <- q + MLP(LN2(q));
    logits = linear(q). LayerNorm eps 1e-5, queries not normalized, proj NOT applied. x: [B, N, D]."""
    p = {k.removeprefix("module.").removeprefix("pooler.cross_attention_block."): v for k, v in sd.items()}
    b, n, _ = x.shape
    dh = D // HEADS
    q = p["pooler.query_tokens"].expand(b, 1, D)
    xn = F.layer_norm(x, (D,), p["norm1.weight"], p["norm1.bias"], eps=1e-5)
    qh = (q @ p["xattn.q.weight"].T + p["xattn.q.bias"]).view(b, 1, HEADS, dh).transpose(1, 2)
    kv = xn @ p["xattn.kv.weight"].T + p["xattn.kv.bias"]  # [B, N, 2D]: keys first, then values
    k = kv[..., :D].reshape(b, n, HEADS, dh).transpose(1, 2)
    v = kv[..., D:].reshape(b, n, HEADS, dh).transpose(1, 2)
    attn = torch.softmax(qh @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # [B, H, 1, N]
    q = q + (attn @ v).transpose(1, 2).reshape(b, 1, D)
    h = F.layer_norm(q, (D,), p["norm2.weight"], p["norm2.bias"], eps=1e-5)
    h = F.gelu(h @ p["mlp.fc1.weight"].T + p["mlp.fc1.bias"]) @ p["mlp.fc2.weight"].T + p["mlp.fc2.bias"]
    q = q + h
    return q[:, 0] @ p["linear.weight"].T + p["linear.bias"]


@pytest.fixture()
def official_probe_file(tmp_path):
    path = tmp_path / "k400-probe.pth.tar"
    torch.save(
        {"classifier": official_probe_state(), "opt": {}, "scaler": None, "epoch": 20, "lr": 1e-3}, path
    )
    return path


def test_official_probe_loads_and_matches_documented_maths(official_probe_file):
    probe = load_probe(official_probe_file, num_heads=HEADS)
    assert probe.arch == ProbeArch("attentive", D, C, HEADS, 4.0)
    x = torch.randn(3, 20, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = probe.model(x)
    expected = documented_logits(official_probe_state(), x)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_proj_is_not_applied(official_probe_file):
    probe = load_probe(official_probe_file, num_heads=HEADS).model
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        before = probe(x)
        probe.pooler.cross_attention_block.xattn.proj.weight.normal_(0, 5.0)
        probe.pooler.cross_attention_block.xattn.proj.bias.fill_(3.0)
        after = probe(x)
    torch.testing.assert_close(before, after, atol=0, rtol=0)


def test_official_probe_loading_is_strict(tmp_path):
    sd = official_probe_state()
    del sd["module.pooler.cross_attention_block.xattn.proj.weight"]
    path = tmp_path / "missing.pth.tar"
    torch.save({"classifier": sd}, path)
    with pytest.raises(CheckpointError, match="xattn.proj.weight"):
        load_probe(path, num_heads=HEADS)
    sd = official_probe_state()
    sd["module.pooler.extra"] = torch.zeros(1)
    torch.save({"classifier": sd}, path)
    with pytest.raises(CheckpointError, match="pooler.extra"):
        load_probe(path, num_heads=HEADS)
    torch.save({"classifier": official_probe_state()}, path)
    with pytest.raises(CheckpointError, match="divisible"):
        load_probe(path, num_heads=5)


def test_parameter_names_count_and_init():
    torch.manual_seed(0)
    d, c = 256, 10
    probe = AttentiveClassifier(d, 8, c)
    assert set(probe.state_dict()) == {k.removeprefix("module.") for k in official_probe_state()}
    assert sum(p.numel() for p in probe.parameters()) == 12 * d * d + 14 * d + d * c + c
    blk = probe.pooler.cross_attention_block
    assert blk.norm1.eps == blk.norm2.eps == 1e-5
    assert abs(probe.pooler.query_tokens.std().item() - 0.02) < 0.01
    assert abs(blk.xattn.q.weight.std().item() - 0.02) < 0.002
    assert abs(blk.mlp.fc2.weight.std().item() - 0.02 / math.sqrt(2)) < 0.002
    assert abs(blk.xattn.proj.weight.std().item() - 0.02 / math.sqrt(2)) < 0.002
    assert torch.all(blk.xattn.q.bias == 0)
    # ``linear`` keeps PyTorch's default init: uniform in +-1/sqrt(D), far wider than N(0, 0.02)
    bound = 1 / math.sqrt(d)
    assert probe.linear.weight.abs().max().item() <= bound
    assert probe.linear.weight.std().item() > 0.5 * bound / math.sqrt(3)
    assert probe.linear.bias.abs().max().item() > 0


def test_our_probe_format_round_trips(tmp_path):
    for arch in (ProbeArch("attentive", D, C, HEADS), ProbeArch("linear", D, C)):
        model = arch.build()
        out = save_probe(tmp_path / arch.kind, arch, model, {"top1": 12.5})
        loaded = load_probe(out)
        assert loaded.arch == arch and loaded.meta["top1"] == 12.5
        x = torch.randn(2, 5, D)
        torch.testing.assert_close(loaded.model(x), model.eval()(x))


def test_linear_probe_averages_tokens():
    probe = LinearClassifier(D, C)
    x = torch.randn(2, 6, D)
    torch.testing.assert_close(probe(x), probe.linear(x.mean(1)))
