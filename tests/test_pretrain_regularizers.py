"""Anti-collapse regularisers: values and gradients against direct computations, and their wiring into the
objective and the training loop (``none`` leaves the paper's step bit for bit)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from pretrain_helpers import make_trainer, tiny_config
from vjepa.config import ConfigError
from vjepa.grid import TokenGrid
from vjepa.masks import PAPER_SETTINGS, MultiBlockMasks
from vjepa.models import EncoderConfig, VideoEncoder, build_predictor
from vjepa.pretrain.config import RegularizerConfig
from vjepa.pretrain.loop import pretrain, train_step
from vjepa.pretrain.objective import JEPAObjective
from vjepa.pretrain.regularizers import (
    centred_by_position,
    epps_pulley,
    regularization_terms,
    sigreg,
    variance_covariance,
)


def direct_epps_pulley(x: np.ndarray, t_max: float = 5.0, knots: int = 17) -> np.ndarray:
    """The statistic of each column, written out with complex exponentials over the symmetric grid."""
    t = np.linspace(-t_max, t_max, 2 * knots - 1)
    dt = t[1] - t[0]
    weights = np.full(len(t), dt)
    weights[[0, -1]] = dt / 2  # trapezoid on [-t_max, t_max]
    ecf = np.exp(1j * x[:, :, None] * t).mean(axis=0)  # [P, K']
    gauss = np.exp(-(t**2) / 2)
    return x.shape[0] * (np.abs(ecf - gauss) ** 2 * gauss * weights).sum(axis=1)


def test_epps_pulley_matches_a_direct_computation():
    x = torch.randn(200, 5, dtype=torch.float64) * torch.tensor(
        [1.0, 0.5, 2.0, 1.0, 1.0], dtype=torch.float64
    )
    ours = epps_pulley(x).numpy()
    np.testing.assert_allclose(ours, direct_epps_pulley(x.numpy()), rtol=1e-10)


def test_epps_pulley_is_near_zero_for_normal_samples_and_large_otherwise():
    torch.manual_seed(0)
    normal = epps_pulley(torch.randn(4096, 16)).mean()
    constant = epps_pulley(torch.zeros(4096, 16)).mean()
    scaled = epps_pulley(3 * torch.randn(4096, 16)).mean()
    # under the null E[T] = integral (1 - phi^2) phi dt = sqrt(2 pi) - sqrt(2 pi / 3) = 1.06, whatever M
    assert abs(normal - 1.06) < 0.3
    assert constant > 100 * normal and scaled > 100 * normal


def test_epps_pulley_gradient_matches_finite_differences():
    x = torch.randn(12, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: epps_pulley(v, knots=9), (x,))


def test_sigreg_prefers_an_isotropic_gaussian_and_reuses_directions_per_seed():
    torch.manual_seed(0)
    iso = torch.randn(1024, 32)
    collapsed = torch.randn(1024, 1) * torch.ones(1, 32)  # every dimension the same: one direction
    assert sigreg(iso, seed=3) < 2.0 and sigreg(collapsed, seed=3) > 50 * sigreg(iso, seed=3)
    assert sigreg(iso, seed=3) == sigreg(iso, seed=3)
    assert sigreg(iso, seed=3) != sigreg(iso, seed=4)


def test_variance_hinge_is_zero_when_every_std_reaches_gamma():
    torch.manual_seed(0)
    z = (3 * torch.randn(256, 8)).requires_grad_(True)
    vc = variance_covariance(z, gamma=1.0)
    assert vc.variance == 0
    vc.variance.backward()
    assert torch.count_nonzero(z.grad) == 0


def test_variance_and_covariance_match_numpy():
    torch.manual_seed(1)
    z = torch.randn(64, 6, dtype=torch.float64) @ torch.randn(6, 6, dtype=torch.float64) * 0.3
    vc = variance_covariance(z, gamma=1.0, eps=1e-4)
    cov = np.cov(z.numpy(), rowvar=False)
    std = np.sqrt(np.diag(cov) + 1e-4)
    off = cov - np.diag(np.diag(cov))
    assert float(vc.variance) == pytest.approx(np.maximum(0.0, 1.0 - std).mean(), rel=1e-10)
    assert float(vc.covariance) == pytest.approx((off**2).sum() / 6, rel=1e-10)


def test_variance_covariance_gradient_matches_finite_differences():
    z = (0.3 * torch.randn(10, 3, dtype=torch.float64)).requires_grad_(True)

    def both(v):
        vc = variance_covariance(v)
        return vc.variance + vc.covariance

    assert torch.autograd.gradcheck(both, (z,))


def test_terms_cover_each_part_and_none_adds_nothing():
    contexts = [torch.randn(2, 5, 4), torch.randn(2, 3, 4)]
    predictions = [torch.randn(2, 7, 4), torch.randn(2, 9, 4)]
    assert regularization_terms(RegularizerConfig(), contexts, predictions, 0) == {}
    for on in ("context", "pooled", "predictions"):
        vc = regularization_terms(RegularizerConfig("vc", on, 2.0, 0.5), contexts, predictions, 0)
        assert set(vc) == {"reg_variance", "reg_covariance"}
        sig = regularization_terms(RegularizerConfig("sigreg", on, 0.1, slices=8), contexts, predictions, 0)
        assert set(sig) == {"reg_sigreg"} and math.isfinite(float(sig["reg_sigreg"]))
    pooled = torch.cat([c.mean(1) for c in contexts])
    expected = 2.0 * variance_covariance(pooled).variance
    got = regularization_terms(RegularizerConfig("vc", "pooled", 2.0, 0.5), contexts, predictions, 0)
    torch.testing.assert_close(got["reg_variance"], expected)


def test_position_only_tokens_cannot_satisfy_the_centred_regularisers():
    torch.manual_seed(0)
    table = torch.randn(16, 8) * 3  # a position embedding: every clip maps to it (collapse)
    index = torch.stack([torch.randperm(16)[:10] for _ in range(32)])  # [B, K] each clip's visible tokens
    collapsed = table[index]  # [B, K, D]
    z = centred_by_position(collapsed, index, 16)
    assert torch.allclose(z, torch.zeros_like(z), atol=1e-5)  # nothing left once positions are removed
    spec = RegularizerConfig("vc", "context", 1.0, 0.0)
    centred = regularization_terms(spec, [collapsed], [collapsed], 0, [(index, index)], 16)
    plain = regularization_terms(spec, [collapsed], [collapsed], 0)
    assert centred["reg_variance"] > 0.98 and plain["reg_variance"] < 0.01  # the loophole is closed
    # content that varies across clips at each position passes
    varied = collapsed + 2 * torch.randn_like(collapsed)
    ok = regularization_terms(spec, [varied], [varied], 0, [(index, index)], 16)
    assert ok["reg_variance"] < 0.05


def test_centring_uses_the_unbiased_within_position_variance():
    torch.manual_seed(1)
    index = torch.tensor([[0, 1], [0, 2], [0, 1], [3, 2]])  # position 3 seen once: dropped
    tokens = torch.randn(4, 2, 3, dtype=torch.float64)
    z = centred_by_position(tokens, index, 4)
    assert z.shape == (7, 3)
    at0 = tokens[:, 0][index[:, 0] == 0]  # the three tokens at position 0
    expected = (at0 - at0.mean(0)) * math.sqrt(3 / 2)
    kept = index.reshape(-1)[index.reshape(-1) != 3]  # the positions of z's rows, in order
    torch.testing.assert_close(z[kept == 0], expected)


def _objective(**kwargs) -> JEPAObjective:
    torch.manual_seed(0)
    encoder = VideoEncoder(EncoderConfig(embed_dim=32, depth=2, num_heads=2, num_frames=4, resolution=64))
    predictor = build_predictor(encoder, predictor_embed_dim=16, depth=1, num_heads=2)
    teacher = None if kwargs.get("teacher") == "online" else copy.deepcopy(encoder)
    return JEPAObjective(encoder, predictor, teacher, **kwargs)


def _masks():
    rng = np.random.default_rng(0)
    return [MultiBlockMasks(TokenGrid(2, 4, 4), s)(3, rng) for s in PAPER_SETTINGS]


def test_none_is_bit_identical_to_the_plain_objective_and_to_its_direct_computation():
    clips = torch.randn(3, 3, 4, 64, 64)
    plain, with_none = _objective(), _objective(regularizer=RegularizerConfig("none"))
    a, b = plain(clips, _masks()), with_none(clips, _masks(), step=7)
    assert torch.equal(a.loss, b.loss) and not b.terms
    # the paper's loss, written out: L1 between the predictor's outputs and the layer-normed teacher features
    with torch.no_grad():
        h = torch.nn.functional.layer_norm(plain.target_encoder(clips), (32,))
    losses = []
    for i, m in enumerate(_masks()):
        z = plain.encoder(clips, m.context)
        p = plain.predictor(z, m.context, m.target, mask_index=i, grid=plain.encoder.grid_for(clips))
        t = torch.gather(h, 1, m.target[..., None].expand(-1, -1, 32))
        losses.append(torch.mean(torch.abs(p - t)))
    assert torch.equal(a.loss, (torch.zeros(()) + losses[0] + losses[1]) / 2)


def test_regularised_loss_is_prediction_loss_plus_terms_and_trains_the_encoder():
    objective = _objective(regularizer=RegularizerConfig("vc", "pooled", 1.0, 0.04))
    out = objective(torch.randn(3, 3, 4, 64, 64), _masks())
    total = out.prediction_loss + out.terms["reg_variance"] + out.terms["reg_covariance"]
    torch.testing.assert_close(out.loss.detach(), total)
    out.loss.backward()
    assert all(p.grad is not None for p in objective.encoder.parameters())


def test_online_teacher_passes_gradients_through_the_targets_and_frozen_never_moves():
    online = _objective(teacher="online", regularizer=RegularizerConfig("sigreg", slices=8))
    assert online.target_encoder is None
    clips = torch.randn(2, 3, 4, 64, 64)
    assert online.target_features(clips).requires_grad
    frozen = _objective(teacher="frozen")
    before = [p.clone() for p in frozen.target_encoder.parameters()]
    with torch.no_grad():
        for p in frozen.encoder.parameters():
            p.add_(1.0)
    frozen.update_target(0.5)
    assert all(torch.equal(a, b) for a, b in zip(before, frozen.target_encoder.parameters(), strict=True))


def test_config_refuses_online_without_regulariser_and_pixels_with_a_teacher():
    with pytest.raises(ConfigError, match="needs a regularizer"):
        tiny_config(["objective.teacher=online"])
    with pytest.raises(ConfigError, match="no teacher"):
        tiny_config(["objective.target=pixels", "objective.teacher=frozen"])
    with pytest.raises(ConfigError, match="weight"):
        tiny_config(["objective.regularizer.kind=vc", "objective.regularizer.weight=-1"])


@pytest.mark.parametrize(
    "overrides",
    [
        ["objective.regularizer.kind=vc", "objective.regularizer.applies_to=pooled"],
        [
            "objective.regularizer.kind=sigreg",
            "objective.regularizer.slices=16",
            "objective.regularizer.weight=0.05",
        ],
        [
            "objective.teacher=online",
            "objective.regularizer.kind=sigreg",
            "objective.regularizer.applies_to=predictions",
        ],
        ["objective.teacher=frozen", "objective.regularizer.kind=vc", "objective.target=features"],
        ["objective.target=pixels", "objective.regularizer.kind=vc"],
    ],
)
def test_a_few_training_steps_log_finite_terms(tmp_path, overrides):
    config = tiny_config(["optimization.epochs=1", "optimization.ipe=3", *overrides])
    trainer, batches = make_trainer(config)
    result = train_step(trainer, [next(batches)], 0)
    assert result.terms and all(math.isfinite(v) for v in result.terms.values())
    assert result.loss == pytest.approx(result.prediction_loss + sum(result.terms.values()), rel=1e-5)
    pretrain(config, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(k in rows[-1] for k in result.terms) and "loss_prediction" in rows[-1]


def test_salt_recipes_chain_a_pixel_teacher_into_a_frozen_student(tmp_path):
    """The shipped SALT stages: stage 1 (pixel targets) exports an encoder; stage 2 loads it as its frozen
    teacher, which no training step moves, and exports only what it trained."""
    from vjepa.checkpoint import load_pretrained
    from vjepa.pretrain.config import load_run_config

    small = [
        "data.synthetic_videos=8", "data.synthetic_resolution=64", "data.resolution=64", "data.synthetic_num_frames=4",
        "data.num_frames=4", "data.batch_size=2", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
        "model.pred_embed_dim=16", "model.pred_depth=1", "optimization.epochs=1", "optimization.ipe=2",
        "optimization.warmup=0", "runtime.precision=fp32", "logging.tensorboard=false",
    ]  # fmt: skip
    config, run = load_run_config("tiny_cpu_salt_pixels", small, tmp_path / "pixels", False)
    assert config.objective.target == "pixels"
    pretrain(config, run)
    teacher = load_pretrained(run / "export").encoder("encoder").state_dict()
    student_set = [*small, f"objective.teacher_checkpoint={run / 'export'}"]
    config, run = load_run_config("tiny_cpu_salt_student", student_set, tmp_path / "student", False)
    assert config.objective.teacher == "frozen"
    trainer, batches = make_trainer(config)
    train_step(trainer, [next(batches)], 0)
    target = trainer.objective.target_encoder.state_dict()
    assert all(torch.equal(target[k], teacher[k]) for k in teacher)
    pretrain(config, run)
    exported = load_pretrained(run / "export")
    assert "target_encoder" not in exported.models and exported.meta["teacher"] == "frozen"
