"""The schedules reproduce the official schedulers: the values of the reference spec's Appendix A."""

from __future__ import annotations

import math

import pytest

from vjepa.pretrain.config import load_pretrain_config
from vjepa.pretrain.schedules import Schedules


@pytest.fixture(scope="module")
def paper() -> Schedules:
    return Schedules(load_pretrain_config("vitl16").optimization)


# (official counter s, value) with the iteration = s - 1. Full-precision values of the official formulas:
# warmup 12,000 steps, cosine over 112,500 - 12,000 = 100,500 steps, WD cosine over 112,500 steps.
LR = [(1, 2.0003541666666668e-4), (6000, 4.125e-4), (12000, 6.25e-4), (45000, 4.732039483766307e-4),
      (90000, 7.504222442956086e-5)]  # fmt: skip
WD = [(1, 0.04000000007018384), (45000, 0.16437694101250946), (90000, 0.36562305898749053)]


@pytest.mark.parametrize(("s", "value"), LR)
def test_lr_matches_appendix_a(paper, s, value):
    assert abs(paper.lr(s - 1) - value) < 1e-9


@pytest.mark.parametrize(("s", "value"), WD)
def test_weight_decay_matches_appendix_a(paper, s, value):
    assert abs(paper.weight_decay(s - 1) - value) < 1e-9


def test_rounded_spec_values(paper):
    # The spec prints these rounded; our values agree to the printed digits.
    assert paper.lr(0) == pytest.approx(2.000354e-4, abs=1e-10)
    assert paper.lr(89999) == pytest.approx(7.5042e-5, abs=1e-9)
    assert paper.weight_decay(89999) == pytest.approx(0.36562, abs=1e-5)
    assert paper.momentum(0) == 0.998
    assert paper.momentum(89999) == pytest.approx(0.99960, abs=1e-5)
    assert abs(paper.momentum(89999) - (0.998 + 89999 * 0.002 / 112500)) < 1e-12


def test_final_values_are_never_reached_with_ipe_scale(paper):
    assert paper.config.total_steps == 90000
    assert paper.config.schedule_steps == 112500
    assert paper.lr(89999) > 7e-5 > paper.config.final_lr
    assert paper.momentum(89999) < 1.0


def test_clipping_starts_after_the_warmup_epochs(paper):
    # The official code clips once the 0-based epoch exceeds warmup = 40: from iteration 41 * 300.
    assert not paper.clipping(12299)
    assert paper.clipping(12300)


def test_schedules_are_pure_functions_of_the_step(paper):
    assert [paper.lr(k) for k in (5, 50000, 5)] == [paper.lr(5), paper.lr(50000), paper.lr(5)]


def test_ema_horizon_sets_the_start_momentum_from_the_run_length():
    from vjepa.pretrain.config import OptimizationConfig
    from vjepa.pretrain.schedules import Schedules

    c = OptimizationConfig(epochs=10, ipe=30, ipe_scale=1.0, ema=(0.998, 1.0), ema_horizon=0.05)
    s = Schedules(c)
    assert s.start_momentum == pytest.approx(1 - 1 / (0.05 * 300))
    assert s.momentum(0) == s.start_momentum and s.momentum(150) == pytest.approx((s.start_momentum + 1) / 2)
    assert Schedules(OptimizationConfig(ema=(0.998, 1.0))).start_momentum == 0.998  # unset: ema[0]


def test_initial_weight_share_is_the_product_of_the_momenta():
    from vjepa.pretrain.config import OptimizationConfig
    from vjepa.pretrain.schedules import Schedules

    s = Schedules(OptimizationConfig(epochs=10, ipe=22, ipe_scale=1.25, ema=(0.998, 1.0)))
    assert s.initial_weight_share(220) == pytest.approx(
        math.prod(s.momentum(k) for k in range(220)), rel=1e-12
    )
    assert (
        0.75 < s.initial_weight_share(220) < 0.8
    )  # the old demo's target encoder: mostly its initial weights
    short = Schedules(OptimizationConfig(epochs=10, ipe=30, ipe_scale=1.0, ema_horizon=0.05))
    assert short.initial_weight_share(300) < 1e-3
