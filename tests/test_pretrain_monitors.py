"""Collapse monitors: healthy features pass quietly; a sustained collapse raises one actionable warning per
episode, never at the first point; a real tiny run stays quiet and a forced collapse of its targets warns."""

from __future__ import annotations

import torch

from pretrain_helpers import tiny_config
from vjepa.pretrain.monitors import PATIENCE, CollapseMonitor, rankme


def test_rankme_counts_effective_directions():
    g = torch.Generator().manual_seed(0)
    assert abs(rankme(torch.eye(16)) - 16) < 1e-3
    full = rankme(torch.randn(256, 32, generator=g))
    assert 25 < full <= 32
    rank2 = torch.randn(256, 2, generator=g) @ torch.randn(2, 32, generator=g)
    assert rankme(rank2) < 2.5


def healthy_point(monitor: CollapseMonitor, g: torch.Generator, step: int):
    monitor.observe(torch.randn(8, 32, generator=g))
    targets = [torch.randn(4, 10, 32, generator=g)]
    return monitor.evaluate(targets, [0.01 * torch.randn_like(t) for t in targets], step)  # a young predictor


def collapsed_point(monitor: CollapseMonitor, g: torch.Generator, step: int, constant: torch.Tensor):
    monitor.observe(constant.expand(8, 32) + 1e-4 * torch.randn(8, 32, generator=g))
    targets = [constant.expand(4, 10, 32) + 1e-4 * torch.randn(4, 10, 32, generator=g)]
    return monitor.evaluate(targets, [torch.zeros(4, 10, 32)], step)


def test_healthy_features_give_no_warning_even_with_a_small_prediction_std():
    g = torch.Generator().manual_seed(0)
    monitor = CollapseMonitor(window=64)
    stats = [healthy_point(monitor, g, step) for step in range(0, 200, 10)]
    assert all(s.warnings == [] for s in stats)
    last = stats[-1]
    assert last.rankme_max == 32 and last.rankme > 20 and 0.8 < last.target_std_mean < 1.2
    assert last.pred_std_ratio < 0.05  # recorded, not warned about


def test_sustained_collapse_warns_once_per_episode_with_advice():
    g = torch.Generator().manual_seed(0)
    constant = torch.randn(1, 32, generator=g)
    monitor = CollapseMonitor(window=16)
    for step in range(0, 50, 10):
        healthy_point(monitor, g, step)
    warnings = [collapsed_point(monitor, g, step, constant).warnings for step in range(50, 150, 10)]
    fired = [i for i, w in enumerate(warnings) if w]
    assert fired == [PATIENCE - 1]  # sustained for PATIENCE points, then once only
    text = warnings[PATIENCE - 1][0]
    assert "representation collapse since step 50" in text and "RankMe" in text and "target std" in text
    assert "optimization.lr" in text and "optimization.ema" in text and "objective.regularizer" in text
    for step in range(150, 150 + 10 * PATIENCE, 10):  # recovery re-arms the monitor
        assert healthy_point(monitor, g, step).warnings == []
    again = [collapsed_point(monitor, g, step, constant).warnings for step in range(300, 400, 10)]
    assert [i for i, w in enumerate(again) if w] == [PATIENCE - 1]


def test_collapse_from_the_start_warns_but_not_at_step_0():
    g = torch.Generator().manual_seed(0)
    constant = torch.randn(1, 32, generator=g)
    monitor = CollapseMonitor(window=16)
    first = collapsed_point(monitor, g, 0, constant)
    assert first.warnings == [] and first.target_std_mean < 0.01
    later = [collapsed_point(monitor, g, step, constant).warnings for step in range(5, 5 * PATIENCE, 5)]
    assert later[-1] and not any(later[:-1])


def test_a_rank_drop_relative_to_the_best_value_is_a_sign():
    g = torch.Generator().manual_seed(0)
    monitor = CollapseMonitor(window=64)
    for step in range(0, 80, 10):
        healthy_point(monitor, g, step)  # RankMe about 25 of 32
    basis = torch.randn(4, 32, generator=g)
    fired = []
    for step in range(80, 80 + 10 * PATIENCE * 3, 10):  # 4 directions: RankMe about 4, above the floor of 2
        monitor.observe(torch.randn(8, 4, generator=g) @ basis)
        targets = [torch.randn(4, 10, 32, generator=g)]
        fired.append(bool(monitor.evaluate(targets, targets, step).warnings))
    assert any(fired) and sum(fired) == 1


def test_window_keeps_the_most_recent_rows():
    monitor = CollapseMonitor(window=16)
    for i in range(10):
        monitor.observe(torch.full((8, 4), float(i)))
    rows = torch.cat(list(monitor.pooled))
    assert rows.shape[0] == 16 and rows[0, 0] == 8 and rows[-1, 0] == 9


def run_tiny(tmp_path, capsys) -> str:
    from vjepa.pretrain.loop import pretrain

    # ema_horizon: an 8-step run with the EMA's default start would (rightly) warn that its target stays
    # mostly the initialisation; these tests are about the collapse monitor alone.
    overrides = ["optimization.epochs=2", "optimization.ipe=4", "logging.monitor_every=2"]
    config = tiny_config([*overrides, "optimization.ema_horizon=0.25"])
    pretrain(config, tmp_path / "run")
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_a_healthy_tiny_run_does_not_warn(tmp_path, capsys):
    out = run_tiny(tmp_path, capsys)
    assert "done: 8 steps" in out
    assert "collapse" not in out and "WARNING" not in out


def test_a_forced_collapse_of_the_targets_warns_once(tmp_path, capsys, monkeypatch):
    from vjepa.pretrain.objective import JEPAObjective

    original = JEPAObjective.target_features

    def constant_targets(self, clips):  # every clip and every token gets the same target
        h = original(self, clips)
        return torch.zeros_like(h) + torch.linspace(-1, 1, h.shape[-1], device=h.device)

    monkeypatch.setattr(JEPAObjective, "target_features", constant_targets)
    out = run_tiny(tmp_path, capsys)
    assert out.count("representation collapse") == 1
    line = next(x for x in out.splitlines() if "representation collapse" in x)
    assert "WARNING step 4:" in line and "since step 0" in line and "objective.regularizer" in line
