"""Collapse monitors: healthy features pass quietly, collapsed ones raise clear warnings."""

from __future__ import annotations

import torch

from vjepa.pretrain.monitors import CollapseMonitor, rankme


def test_rankme_counts_effective_directions():
    g = torch.Generator().manual_seed(0)
    assert abs(rankme(torch.eye(16)) - 16) < 1e-3
    full = rankme(torch.randn(256, 32, generator=g))
    assert 25 < full <= 32
    rank2 = torch.randn(256, 2, generator=g) @ torch.randn(2, 32, generator=g)
    assert rankme(rank2) < 2.5


def test_healthy_features_give_no_warning():
    g = torch.Generator().manual_seed(0)
    monitor = CollapseMonitor(window=64)
    for _ in range(8):
        monitor.observe(torch.randn(8, 32, generator=g))
    targets = [torch.randn(4, 10, 32, generator=g)]
    stats = monitor.evaluate(targets, [t + 0.1 * torch.randn_like(t) for t in targets])
    assert stats.warnings == []
    assert stats.rankme_max == 32 and stats.rankme > 20 and 0.8 < stats.target_std_mean < 1.2


def test_collapse_is_reported():
    g = torch.Generator().manual_seed(0)
    monitor = CollapseMonitor(window=64)
    constant = torch.randn(1, 32, generator=g)
    for _ in range(8):
        monitor.observe(constant.expand(8, 32) + 1e-4 * torch.randn(8, 32, generator=g))
    targets = [constant.expand(4, 10, 32) + 1e-4 * torch.randn(4, 10, 32, generator=g)]
    stats = monitor.evaluate(targets, [torch.zeros(4, 10, 32)])
    text = " | ".join(stats.warnings)
    assert "target features are collapsing" in text
    assert "RankMe" in text
    assert "predictions are collapsing" in text


def test_window_keeps_the_most_recent_rows():
    monitor = CollapseMonitor(window=16)
    for i in range(10):
        monitor.observe(torch.full((8, 4), float(i)))
    rows = torch.cat(list(monitor.pooled))
    assert rows.shape[0] == 16 and rows[0, 0] == 8 and rows[-1, 0] == 9
